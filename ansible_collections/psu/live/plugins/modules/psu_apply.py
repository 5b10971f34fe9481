#!/usr/bin/python
# -*- coding: utf-8 -*-
# MIT licence (see the psu repository)
from __future__ import annotations

DOCUMENTATION = r"""
module: psu_apply
short_description: Apply a psu bundle to every process of its program on a host
description:
  - Looks at every DSU process of the connecting user on the host (their control
    sockets in the psu runtime folder) and applies the bundle to each one whose
    running build id is the bundle's base; each process is updated all-or-nothing
    by its own runtime.
  - Processes already at the bundle's target are left as they are (not a change);
    processes at any other version are reported as skipped and never touched.
  - Check mode says which processes would be updated, from each process's build id
    and the bundle's base; diff mode shows each process's version before and after
    and the bundle's change report.
  - Needs the psu Python package on the host, for the interpreter Ansible runs there.
version_added: 0.1.0
options:
  bundle:
    description:
      - Path of the bundle on the managed host. It must stay there while processes
        run its code, since a rollback may reload it (the file must keep its checksum).
    type: path
    required: true
  src:
    description:
      - A bundle on the controller. It is copied to O(bundle) on the host when that
        file is missing or differs (a copy counts as a change).
    type: path
  program:
    description: Only processes of this program (default, and required to match, the bundle's).
    type: str
  runtime_dir:
    description:
      - The psu runtime folder where processes listen (default, as the processes do,
        C($PSU_RUNTIME_DIR), else C($XDG_RUNTIME_DIR/psu), else C(/tmp/psu-<uid>)).
    type: path
  fail_on_skipped:
    description: Fail when a process of the program runs another version (it is still not touched).
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
- name: Update every kvd process of the host to v2
  psu.live.psu_apply:
    src: psu-patches/kvd-v1-v2.psu
    bundle: /var/lib/kvd/bundles/kvd-v1-v2.psu
    program: kvd
"""

RETURN = r"""
processes:
  description: One entry per process of the program.
  returned: always
  type: list
  elements: dict
  contains:
    pid:
      description: Process id.
      type: int
    program:
      description: Program name.
      type: str
    result:
      description: >-
        applied, already, would-apply (check mode), skipped (another version),
        failed, gone (exited meanwhile).
      type: str
    from:
      description: Build id it ran when looked at (C(from_label) its label).
      type: str
    to:
      description: Build id it runs now, or would (C(to_label) its label).
      type: str
    error:
      description: psu's error class when it failed (base, load, link, transform, unreachable, ...).
      type: str
    message:
      description: psu's message.
      type: str
summary:
  description: Number of processes per result.
  returned: always
  type: dict
complete:
  description: Every process is at the bundle's target.
  returned: always
  type: bool
bundle:
  description: Path, checksum, program, base and target of the bundle.
  returned: always
  type: dict
copied:
  description: The bundle was copied to the host (or would be, in check mode).
  returned: always
  type: bool
error_class:
  description: psu's error class of the first failure (or skipped, bundle, usage).
  returned: failure
  type: str
"""

import hashlib
import os
import shutil

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.psu.live.plugins.module_utils.psu_common import (
    COMMON_OPTIONS, fail_on_error, finish, load_fleet)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _place(module, source, destination):
    """Copy the uploaded bundle to its place; True when the file there changed."""
    if os.path.isfile(destination) and _sha256(destination) == _sha256(source):
        return False
    if module.check_mode:
        return True
    folder = os.path.dirname(destination)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        partial = destination + ".part"
        shutil.copyfile(source, partial)
        os.chmod(partial, 0o600)
        # a rename, so a process that loaded the old file keeps its inode
        os.replace(partial, destination)
    except OSError as error:
        module.fail_json(msg="cannot place the bundle at %s: %s" % (destination, error),
                         error_class="io")
    return True


def main():
    module = AnsibleModule(
        argument_spec=dict(bundle=dict(type="path", required=True), src=dict(type="path"),
                           fail_on_skipped=dict(type="bool", default=False), **COMMON_OPTIONS),
        supports_check_mode=True)
    fleet, errors = load_fleet(module)
    bundle = module.params["bundle"]
    copied = False
    planned_from = bundle
    if module.params["src"]:
        copied = _place(module, module.params["src"], bundle)
        if module.check_mode and copied:
            planned_from = module.params["src"]    # not placed in check mode: plan from the upload
    try:
        report = fleet.apply_all(planned_from, module.params["program"], check=module.check_mode)
    except errors.PsuError as error:
        fail_on_error(module, error)
    report.bundle.path = bundle     # where it lives on the host, even if planned from the upload
    finish(module, report, fail_on_skipped=module.params["fail_on_skipped"], copied=copied,
           extra=dict(copied=copied))


if __name__ == "__main__":
    main()
