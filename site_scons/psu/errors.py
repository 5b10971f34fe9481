"""The exceptions psu's library layers raise; only the front ends print them,
all through one renderer (console.report_error: the `psu: ` prefix, the hint
line, the exit code).

A message says what went wrong, without a `psu: ` prefix: the renderer adds
it.
"""


class PsuError(Exception):
    """Base of every error psu reports to a user. `exit_code` classifies it."""

    exit_code = 1
    located = False      # True: the message starts with `file:line:col: psu: ` itself

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        return self.message

    @property
    def text(self):
        """The message as the renderer prints it after its prefix."""
        return self.message


class UsageError(PsuError):
    """The command line or a build setting is wrong."""

    exit_code = 2


class ToolError(PsuError):
    """A program psu runs (compiler, git) is missing or failed."""

    exit_code = 4


class UnresolvedSymbols(ToolError):
    """The linker found no definition a bundle may use for `symbols` (hidden or
    internal ones: the running program does not export them)."""

    def __init__(self, message, symbols, hint=None):
        super().__init__(message, hint=hint)
        self.symbols = list(symbols)


class CSourceError(PsuError):
    """User C that psu cannot read or transform; carries `file:line:col`.

    Its message is a compiler-style diagnostic, `file:line:col: psu: what`
    (editors jump to the place), so the renderer prints it as it is."""

    exit_code = 5
    located = True

    def __init__(self, file, line, column, message):
        location = f"{file}:{line}" + (f":{column}" if column else "")
        super().__init__(f"{location}: psu: {message}")
        self.file, self.line, self.column = file, line, column

    @property
    def text(self):
        return self.message


class RefusedChanges(PsuError):
    """The change set between two versions contains changes psu cannot apply live."""

    exit_code = 3

    def __init__(self, refusals, report="", change_set=None):
        lines = [str(r) for r in refusals]
        super().__init__(
            f"{len(refusals)} change(s) cannot be applied live:\n  " + "\n  ".join(lines),
            hint="see docs/refusals.md for what to do about each kind",
        )
        self.refusals = refusals
        self.report = report
        self.change_set = change_set     # the analysis so far (changes.ChangeSet), or None


class NoChanges(PsuError):
    """FROM and TO describe the same program: there is nothing to patch."""

    exit_code = 6


class BundleError(PsuError):
    """A bundle file is malformed, corrupt or not for this program."""

    exit_code = 7


class ControlError(PsuError):
    """Talking to a running DSU process failed, or it refused the request."""

    exit_code = 8

    def __init__(self, message, error_class=None, hint=None):
        super().__init__(message, hint)
        self.error_class = error_class
