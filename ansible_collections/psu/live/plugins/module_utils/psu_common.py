# -*- coding: utf-8 -*-
"""What the psu modules share: reaching the `psu` package on the managed host,
and turning its fleet reports (psu.fleet) into Ansible results."""
from __future__ import annotations

import os
import sys

COMMON_OPTIONS = dict(
    program=dict(type="str"),
    runtime_dir=dict(type="path"),
)


def load_fleet(module):
    """psu.fleet and psu.errors from the host's `psu` package, or fail saying where to
    install it."""
    if module.params.get("runtime_dir"):
        # the psu client reads the runtime folder from the environment, as the C runtime does
        os.environ["PSU_RUNTIME_DIR"] = module.params["runtime_dir"]
    try:
        from psu import errors, fleet
    except ImportError as error:
        module.fail_json(msg="the psu Python package is not importable by %s on this host (%s); "
                             "install psu there, or point ansible_python_interpreter at a "
                             "Python that has it" % (sys.executable, error),
                         error_class="missing-psu")
    return fleet, errors


def fail_on_error(module, error):
    """A typed psu error (bad bundle, wrong program) as a task failure."""
    name = type(error).__name__
    error_class = {"BundleError": "bundle", "UsageError": "usage",
                   "ControlError": getattr(error, "error_class", None) or "unreachable"
                   }.get(name, "psu")
    module.fail_json(msg=getattr(error, "message", str(error)), error_class=error_class)


def _version(build_id, label):
    return "%s %s" % (label, (build_id or "?")[:12])


def process_lines(report, after):
    """One line per process: its version before, or after the command (for diff mode)."""
    lines = []
    for row in report.processes:
        if after:
            version = _version(row.to_build_id, row.to_label)
        else:
            version = _version(row.from_build_id, row.from_label)
        if row.result == "failed":
            version += "  (failed: %s)" % row.error
        elif row.result == "skipped":
            version += "  (skipped: another version)"
        lines.append("%s pid %s: %s\n" % (row.program or "?", row.pid, version))
    return "".join(lines)


def diff_of(report, with_report):
    """Diff mode: the versions of the processes before and after, then the bundle's
    change report."""
    diffs = [{"before_header": "processes (%s)" % report.runtime_dir,
              "after_header": "processes (%s)" % report.runtime_dir,
              "before": process_lines(report, after=False),
              "after": process_lines(report, after=True)}]
    if with_report and report.bundle is not None and report.changed and report.bundle.report:
        diffs.append({"prepared": "change report of %s:\n%s\n" % (report.bundle.path,
                                                                  report.bundle.report)})
    return diffs


def finish(module, report, fail_on_skipped=False, copied=False, extra=None):
    """exit_json / fail_json from a fleet report: `changed` only when a process changed
    version (or the bundle was copied); failed with psu's message and error class."""
    data = report.to_json()
    result = dict(changed=report.changed or copied, processes=data["processes"],
                  summary=data["summary"], complete=data["complete"], bundle=data["bundle"],
                  runtime_dir=report.runtime_dir, program=report.program)
    result.update(extra or {})
    if module._diff and report.action != "status":
        result["diff"] = diff_of(report, with_report=report.action == "apply")
    if not report.processes:
        module.warn("no DSU process%s runs on this host (looked in %s)"
                    % (" of " + report.program if report.program else "", report.runtime_dir))
    for row in report.skipped:
        module.warn("pid %s (%s) left alone: %s" % (row.pid, row.program, row.message))
    failed = report.failed
    if failed:
        result["error_class"] = failed[0].error
        result["msg"] = "; ".join("pid %s: (%s) %s" % (row.pid, row.error, row.message)
                                  for row in failed)
        module.fail_json(**result)
    if report.skipped and fail_on_skipped:
        result["error_class"] = "skipped"
        result["msg"] = ("%d process(es) run another version and were left alone"
                         % len(report.skipped))
        module.fail_json(**result)
    counts = ", ".join("%d %s" % (n, r) for r, n in sorted(report.summary().items()))
    result["msg"] = counts or "no processes"
    module.exit_json(**result)
