# -*- coding: utf-8 -*-
# MIT licence (see the psu repository)
"""psu_apply on the controller: send `src` (a bundle on the controller) to the
host's temporary folder, then run the module, which places it at `bundle`."""
from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):

    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        super(ActionModule, self).run(tmp, task_vars)
        del tmp
        arguments = dict(self._task.args)
        try:
            source = arguments.get("src")
            if source:
                try:
                    local = self._loader.get_real_file(
                        self._find_needle("files", os.path.expanduser(source)), decrypt=True)
                except Exception as error:
                    raise AnsibleActionFail("psu_apply: src %s: %s" % (source, error))
                if self._connection._shell.tmpdir is None:
                    self._make_tmp_path()
                uploaded = self._connection._shell.join_path(self._connection._shell.tmpdir,
                                                             "bundle.psu")
                self._transfer_file(local, uploaded)
                self._fixup_perms2((self._connection._shell.tmpdir, uploaded))
                arguments["src"] = uploaded
            return self._execute_module(module_name="psu.live.psu_apply", module_args=arguments,
                                        task_vars=task_vars)
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)
