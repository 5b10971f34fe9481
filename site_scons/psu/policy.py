"""The DSU policy: which functions of a DSU unit go through the runtime (DSU
functions), and why each of the others is called directly (`Direct`).

The settings that choose (PSU_EXCLUDE, PSU_DIRECT_STATICS) travel as one
value, `DsuPolicy`, from the build adapters to the manifest and code generation.
"""
import enum
from dataclasses import dataclass, field

from .errors import UsageError

ENTRY_POINTS = frozenset({"main"})
TRANSFORMER_PREFIX = "psu_transform_"
# Default of PSU_DIRECT_STATICS (see DsuPolicy.direct_reason); bench/sqlite_bench.py
# measures the choices.
DEFAULT_DIRECT_STATICS = "all"


class Direct(str, enum.Enum):
    """Why a function is called directly rather than through the runtime.  The
    value is what the manifest records (its `direct` field), so a manifest read
    back from JSON compares equal to these members."""

    ENTRY_POINT = "entry point"              # running, never replaced
    TRANSFORMER = "state transformer"        # runs once, when its bundle loads
    MACRO_MADE = "defined by a macro"        # its name cannot be renamed
    INLINE = "inline"
    EXCLUDED = "excluded"                    # PSU_EXCLUDE
    STATIC_CALLED_BY_NAME = "static, called by name"   # PSU_DIRECT_STATICS
    OUTSIDE_DSU_UNITS = "outside the DSU units"         # its unit is not in PSU_UNITS

    def __str__(self):
        return self.value


def direct_limit(direct_statics):
    """The body size (AST nodes) below which a static function whose address is
    never taken stays direct: "all" (no limit), "none" (0), or a number."""
    text = str(direct_statics).strip().lower()
    if text in ("all", "true"):
        return float("inf")
    if text in ("none", "false", "0", ""):
        return 0
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"PSU_DIRECT_STATICS={direct_statics!r}: expected all, none "
                         "or a number of AST nodes")


def transformer_name(variable):
    """The state transformer that converts `variable` (a manifest entry):
    `psu_transform_<name>`, or `psu_transform_<function>_<name>` for a
    function-local static."""
    if variable["scope"] == "function":
        return f"{TRANSFORMER_PREFIX}{variable['function']}_{variable['name']}"
    return TRANSFORMER_PREFIX + variable["name"]


@dataclass(frozen=True)
class DsuPolicy:
    """The settings that choose the DSU functions of the DSU units.

    `exclude`: functions (`name` or `unit:name`) kept direct (PSU_EXCLUDE);
    `direct_statics`: which static functions whose address is never taken stay
    direct (PSU_DIRECT_STATICS: "all", "none", or those under N AST nodes).
    A bad `direct_statics` is refused when the policy is made."""

    exclude: tuple = ()
    direct_statics: str = DEFAULT_DIRECT_STATICS
    static_limit: float = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "exclude", tuple(str(name) for name in self.exclude))
        object.__setattr__(self, "direct_statics", str(self.direct_statics))
        object.__setattr__(self, "static_limit", direct_limit(self.direct_statics))

    def direct_reason(self, function):
        """Why `function` (a model.Function of a DSU unit) is called directly
        rather than through the runtime, or None: it is a DSU function.

        A static function whose address is never taken can only be called by
        name from its own unit.  Left direct, the compiler inlines and
        optimises it as in the plain build, and it costs no updatability: a
        changed direct function pulls every DSU function that reaches it into
        the patch (SPEC 4.4), as kpatch does for inlined code.  Calls through
        pointers always reach the newest version, since such functions stay
        DSU functions.
        """
        if function.name in ENTRY_POINTS:
            return Direct.ENTRY_POINT
        if function.name.startswith(TRANSFORMER_PREFIX):
            return Direct.TRANSFORMER
        if function.macro_made:
            return Direct.MACRO_MADE
        if function.inline:
            return Direct.INLINE
        if function.name in self.exclude or function.qualname in self.exclude:
            return Direct.EXCLUDED
        if function.static and not function.address_taken and function.size < self.static_limit:
            return Direct.STATIC_CALLED_BY_NAME
        return None

    def dsu_names(self, unit):
        """The names of the DSU functions `unit` defines."""
        return {f.name for f in unit.functions if self.direct_reason(f) is None}
