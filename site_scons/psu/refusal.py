"""A refusal: one change that cannot be applied live, with where it is, what
it is, why, and the PSU_ACCEPT name that accepts it (if any).  Change analysis
(changes.py, typechanges.py) makes them; docs/refusals.md says what to do
about each kind."""
import enum
from dataclasses import dataclass


class Kind(str, enum.Enum):
    """What a refusal is about; docs/refusals.md says what to do about each."""

    BUILD = "build"                              # compiler or flags differ
    OUTSIDE_DSU = "outside-dsu"                  # a unit outside PSU_UNITS changed
    DSU_STATUS = "dsu-status"                    # a DSU function became direct
    ENTRY_POINT = "entry-point"                  # main changed
    SIGNATURE = "signature"                      # a DSU function's signature changed
    STALE_CONSTANT = "stale-constant"            # a reader of a changed constant stays old
    DIRECT_GLOBAL = "direct-global"              # changed direct code with external linkage
    DIRECT_UNREACHABLE = "direct-unreachable"    # changed direct code no DSU function calls
    STATE_TYPE = "state-type"                    # the type of existing state changed
    STATE_INIT = "state-init"                    # the initial value of existing state changed
    STATE_BINDING = "state-binding"              # the patch would use state it cannot bind
    TYPE = "type"                                # a type existing state holds changed

    def __str__(self):
        return self.value


@dataclass
class Refusal:
    kind: Kind         # see docs/refusals.md
    where: str         # file:line
    what: str          # the entity
    detail: str
    accept: str = ""   # the PSU_ACCEPT name that accepts it, or "" (it cannot be accepted)
    accept_each: tuple = ()  # or: PSU_ACCEPT names that together accept it
    subject: dict = None     # a changed type: {"type", "unit", "was", "now"} (for measuring it)

    def __str__(self):
        hint = f" (to accept: PSU_ACCEPT=['{self.accept}'])" if self.accept else ""
        return f"{self.where}: {self.kind}: {self.what}: {self.detail}{hint}"


def few(items, limit=5):
    """`items` for a refusal's line: the first `limit`, and how many more."""
    items = list(items)
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def short(text, limit=120):
    """`text` cut for a refusal's line."""
    return text if len(text) <= limit else text[:limit] + "..."
