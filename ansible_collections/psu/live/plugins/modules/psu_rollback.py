#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT licence (see the psu repository)
from __future__ import annotations

DOCUMENTATION = r"""
module: psu_rollback
short_description: Undo a psu bundle on every process of a host it updated
description:
  - With O(bundle), every DSU process of its program that runs the bundle's target and
    reached it from the bundle's base goes back to the base; processes at the base are
    left as they are; processes at any other version are reported as skipped, never touched.
    Running it again changes nothing.
  - Without O(bundle), every selected process goes back one update (a second run goes back
    one more; prefer O(bundle)).
  - Needs the psu Python package on the host.
version_added: 0.1.0
options:
  bundle:
    description: The bundle to undo, on the managed host (as given to psu_apply).
    type: path
  program:
    description: Only processes of this program.
    type: str
  runtime_dir:
    description: The psu runtime folder where processes listen.
    type: path
  fail_on_skipped:
    description: Fail when a process runs a version the rollback does not apply to.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: psu authors
"""

EXAMPLES = r"""
- name: Undo kvd v1 -> v2 where it was applied
  psu.live.psu_rollback:
    bundle: /var/lib/kvd/bundles/kvd-v1-v2.psu
"""

RETURN = r"""
processes:
  description: >-
    One entry per process (result rolled-back, already, would-roll-back, nothing,
    skipped, failed, gone).
  returned: always
  type: list
  elements: dict
summary:
  description: Number of processes per result.
  returned: always
  type: dict
error_class:
  description: psu's error class of the first failure.
  returned: failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.psu.live.plugins.module_utils.psu_common import (
    COMMON_OPTIONS, fail_on_error, finish, load_fleet)


def main():
    module = AnsibleModule(
        argument_spec=dict(bundle=dict(type="path"),
                           fail_on_skipped=dict(type="bool", default=False), **COMMON_OPTIONS),
        supports_check_mode=True)
    fleet, errors = load_fleet(module)
    try:
        report = fleet.rollback_all(module.params["bundle"], module.params["program"],
                                    check=module.check_mode)
    except errors.PsuError as error:
        fail_on_error(module, error)
    finish(module, report, fail_on_skipped=module.params["fail_on_skipped"])


if __name__ == "__main__":
    main()
