"""What psu's front ends print for a failure: one renderer for every front end.

The `psu` command (and its `psu patch`), the `psu cc` wrapper and the SCons
adapter all report a library error (errors.PsuError) here, so a user sees the
same lines whichever ran:

    <the report, on stdout, when the error carries one (a refused change set)>
    psu: <message>                 (a C diagnostic: file:line:col: psu: <message>)
    psu: hint: <hint>              (when the error has one)

and the exit code of the error's class (docs/operations.md).
"""
import sys

from .errors import PsuError

PREFIX = "psu: "


def error_lines(error):
    """The lines (without newlines) that report `error` on stderr."""
    if error.located:
        lines = [error.text]
    else:
        lines = [PREFIX + error.text]
    if error.hint:
        lines.append(f"{PREFIX}hint: {error.hint}")
    return lines


def report_error(error, out=None, err=None):
    """Print `error` as every front end does; return its exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    report = getattr(error, "report", "")
    if report:
        out.write(report + "\n")
        out.flush()
    err.write("".join(line + "\n" for line in error_lines(error)))
    err.flush()
    return error.exit_code or 1


def fail(message, hint=None, error_class=PsuError):
    """Report a front end's own error (not raised by the library); return its exit code."""
    return report_error(error_class(message, hint))
