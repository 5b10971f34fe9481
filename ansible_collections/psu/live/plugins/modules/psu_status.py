#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT licence (see the psu repository)
from __future__ import annotations

DOCUMENTATION = r"""
module: psu_status
short_description: The version every DSU process of a host runs
description:
  - Asks every DSU process of the connecting user on the host for its status. Changes nothing.
  - Needs the psu Python package on the host.
version_added: 0.1.0
options:
  program:
    description: Only processes of this program.
    type: str
  runtime_dir:
    description: The psu runtime folder where processes listen.
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: psu authors
"""

EXAMPLES = r"""
- name: What runs where
  psu.live.psu_status:
    program: kvd
  register: kvd_status
"""

RETURN = r"""
processes:
  description: One entry per process (result running, or failed when it did not answer).
  returned: always
  type: list
  elements: dict
versions:
  description: Labels running on this host and how many processes run each.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.psu.live.plugins.module_utils.psu_common import (
    COMMON_OPTIONS, fail_on_error, finish, load_fleet)


def main():
    module = AnsibleModule(argument_spec=dict(**COMMON_OPTIONS), supports_check_mode=True)
    fleet, errors = load_fleet(module)
    try:
        report = fleet.status_all(module.params["program"])
    except errors.PsuError as error:
        fail_on_error(module, error)
    versions = {}
    for row in report.processes:
        if row.result == "running":
            versions[row.to_label] = versions.get(row.to_label, 0) + 1
    finish(module, report, extra=dict(versions=versions))


if __name__ == "__main__":
    main()
