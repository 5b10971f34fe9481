"""The small model of a C unit that the front end produces and everything later reads.

Plain data, JSON round-trippable (`to_json`/`from_json`), no pycparser objects.
"""
from dataclasses import dataclass, field, asdict


@dataclass
class Location:
    file: str
    line: int
    column: int

    def __str__(self):
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class LocalStatic:
    """A `static` variable declared inside a function body."""

    name: str
    qualname: str
    type: str            # canonical type text (structs expanded)
    type_hash: str
    init_hash: str
    decl: str            # file-scope definition text with the placeholder @NAME@, for hoisting
    thread_local: bool
    const: bool
    location: Location
    length: int = None   # element count of an array sized by its initializer
    unbound: str = ""    # why it cannot be bound (then each version has its own), or ""
    type_refs: list = field(default_factory=list)  # named types its type holds or points to


@dataclass
class Function:
    name: str
    qualname: str        # `unit:name` for statics, `name` for external functions
    static: bool
    inline: bool
    variadic: bool
    kr_style: bool
    macro_made: bool     # its name is made by a macro: it cannot be renamed, stays direct
    size: int            # AST nodes of its body
    address_taken: bool  # named other than as the callee of a call
    signature: str       # prototype text with the placeholder @NAME@ for the declarator name
    head: str            # prototype with parameters named psu_a0.. (for generated calls)
    va_head: str         # variadic: `head` with a `__builtin_va_list` for `...`; else ""
    arity: int
    returns_void: bool
    result: str          # declaration of `psu_result` of the return type ("" for void)
    signature_hash: str  # canonical function type, structs expanded
    body_hash: str       # normalised body plus the types and variables it touches
    callees: list        # names referenced as functions, sorted
    locals: list = field(default_factory=list)  # [LocalStatic]
    location: Location = None
    header_statics: list = field(default_factory=list)  # mutable statics of headers it uses
    parameters: list = field(default_factory=list)  # names in its definition (None: unnamed)
    body_line: int = 0   # line of the `{` that opens its body
    loops_forever: bool = False  # has a loop nothing leaves: a call may never return
    signature_types: list = field(default_factory=list)  # named types its parameters and result reach
    body_types: list = field(default_factory=list)  # named types its body names
    reads: list = field(default_factory=list)       # file-scope variables its body names
    members: list = field(default_factory=list)     # struct and union members its body selects
    body_end_line: int = 0  # line of the `}` that closes it (0: unknown)
    unreadable: str = ""  # the front end could not read its body: why, with file:line:col


@dataclass
class Variable:
    name: str
    qualname: str
    static: bool
    thread_local: bool
    const: bool
    definition: bool     # False for `extern` declarations
    type: str
    type_hash: str
    init_hash: str
    locations: list = field(default_factory=list)  # every declaration of it in the unit
    length: int = None   # element count of an array sized by its initializer
    unbound: str = ""    # why it cannot be bound, or ""
    type_refs: list = field(default_factory=list)  # named types its type holds or points to
    reads: list = field(default_factory=list)      # file-scope variables its initializer names


@dataclass
class Unit:
    path: str            # relative to the project root, `/`-separated
    text_hash: str       # normalised text as the compiler sees it (attributes included)
    dsu: bool
    source_hash: str = ""  # raw preprocessed text: not in the manifest, rebuild trigger only
    functions: list = field(default_factory=list)  # [Function], in source order
    variables: list = field(default_factory=list)  # [Variable], in source order
    helpers: dict = field(default_factory=dict)    # name -> body hash of functions defined in headers
    storage_macros: dict = field(default_factory=dict)  # macro -> "static"/"extern" it expands to
    thread_routines: list = field(default_factory=list)  # names it passes to pthread_create
    types: dict = field(default_factory=dict)      # named types its state, signatures, bodies use
    described: bool = True   # False: a unit outside PSU_UNITS that could not be parsed

    def to_json(self):
        return asdict(self)

    @classmethod
    def from_json(cls, data):
        def loc(d):
            return Location(**d) if d else None

        functions = []
        for f in data["functions"]:
            f = dict(f)
            f["location"] = loc(f["location"])
            f["locals"] = [LocalStatic(**{**l, "location": loc(l["location"])}) for l in f["locals"]]
            functions.append(Function(**f))
        variables = []
        for v in data["variables"]:
            v = dict(v)
            v["locations"] = [loc(l) for l in v["locations"]]
            variables.append(Variable(**v))
        return cls(path=data["path"], text_hash=data["text_hash"], dsu=data["dsu"],
                   source_hash=data.get("source_hash", ""),
                   functions=functions, variables=variables, helpers=dict(data["helpers"]),
                   storage_macros=dict(data.get("storage_macros", {})),
                   thread_routines=list(data.get("thread_routines", [])),
                   types=dict(data.get("types", {})), described=data.get("described", True))
