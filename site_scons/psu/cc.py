"""The compiler-wrapper adapter: `psu cc CC ARGS...` (also `psu-cc CC ARGS...`).

For make, autotools, CMake (`CMAKE_C_COMPILER_LAUNCHER=psu-cc`) and Meson
(`CC="psu cc gcc"`).  Holds no analysis: it reads the compiler's command line,
decides per source whether it is a DSU unit (`psu.toml`, config.py), and calls
the release build's steps (build.py) as the SCons adapter does.

- No configuration applies, or the command is not a compile or link psu has a
  part in (`-E`, `-M`, `--version`, a compile of no DSU unit): the compiler
  runs with the same arguments, so such a build is byte for byte the plain one.
- A DSU unit is analysed, its edited copy generated into the psu build folder
  and compiled in its place with the same options (`-iquote` of the unit's
  folder first, so its quoted headers resolve as before).  Its dependency file
  names the user's source, not the copy.
- Every compile of a unit under the configuration's folder is recorded
  (`<build_dir>/commands/`, the object's SHA-256 included; gathered into
  `<build_dir>/compile_commands.json` at each DSU link).
- A link whose inputs include a DSU object (directly, or as a member of a
  static library: objects are recognised by content) gets the program's
  identity, the runtime and `-rdynamic -pthread -ldl`; the manifest is written
  beside the output and the build description (`<build_dir>/<program>/build.json`)
  for `psu patch`.
"""
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys

from . import console, entryhooks, jsonfile, resources
from .errors import CSourceError, PsuError, ToolError, UsageError
from .policy import DsuPolicy

# Options whose value is the next argument (GCC's driver).
_WITH_ARGUMENT = {"-o", "-x", "-I", "-D", "-U", "-include", "-imacros", "-iquote", "-isystem",
                  "-idirafter", "-iprefix", "-iwithprefix", "-iwithprefixbefore", "-isysroot",
                  "-imultilib", "-MF", "-MT", "-MQ", "-L", "-l", "-Xlinker", "-Xassembler",
                  "-Xpreprocessor", "-aux-info", "--param", "-T", "-u", "-z", "-e",
                  "-dumpbase", "-dumpdir", "-specs", "-B", "--sysroot"}
# Path-valued options: recorded absolute, so analyses do not depend on the build's folder.
_PATH_OPTIONS = ("-I", "-iquote", "-isystem", "-idirafter", "-include", "-imacros", "--sysroot",
                 "-isysroot")
# What only the link reads: dropped from the flags a unit is analysed and compiled with.
_LINK_ONLY = re.compile(r"^(-l|-L|-Wl,|-static|-shared|-rdynamic|-pie$|-no-pie$|-s$|-nostartfiles$"
                        r"|-nodefaultlibs$|-nostdlib$|-Xlinker$|-T$|-u$|-z$|-e$)")
_DEPENDENCY = {"-MD", "-MMD", "-MP", "-MG", "-M", "-MM"}
# Flags that change a unit's code: the program's flags in its manifest.
_CODE_FLAG = re.compile(r"^(-O|-f|-m|-std=|-ansi$|-D|-U|-pthread$)")
_C_SUFFIXES = (".c", ".i")
LINK_FLAGS = ["-rdynamic", "-pthread", "-ldl"]


class Command:
    """One compiler command line, read the way GCC's driver reads it."""

    def __init__(self, cc, args, directory):
        self.cc, self.original, self.directory = cc, list(args), directory
        self.args = _expand_response_files(args, directory)
        self.mode = "link"
        self.output = None
        self.sources = []          # (index in args, path as written)
        self.inputs = []           # other positional inputs (objects, archives, ...)
        self.depfile = None        # -MF value
        self.dependencies = False  # -MD / -MMD
        self.info_only = False     # --version, -dumpversion, -print-*, -fsyntax-only
        self._read()

    def _read(self):
        """Walk the arguments once: each option (its value separate or joined),
        each input a C source or not by the language in force (`-x`) or its name."""
        language, index = None, 0
        while index < len(self.args):
            arg = self.args[index]
            if arg in _WITH_ARGUMENT:
                value = self.args[index + 1] if index + 1 < len(self.args) else ""
                language = self._option(arg, value, language)
                index += 2
                continue
            if arg == "-" or not arg.startswith("-"):
                is_c = language == "c" or (language is None and arg.endswith(_C_SUFFIXES))
                (self.sources if is_c and arg != "-" else self.inputs).append((index, arg))
            else:
                joined = next((o for o in ("-x", "-o", "-MF") if arg.startswith(o) and len(arg) > len(o)),
                              None)
                language = self._option(joined, arg[len(joined):], language) if joined else \
                    self._option(arg, None, language)
            index += 1

    def _option(self, option, value, language):
        """Note what `option` (with its `value`, if it takes one) says about the
        command; returns the language in force after it."""
        if option == "-x":
            return None if value == "none" else value
        if option == "-o":
            self.output = value
        elif option == "-MF":
            self.depfile = value
        elif option in ("-c", "-S", "-E"):
            if self.mode != "preprocess":
                self.mode = {"-c": "compile", "-S": "assemble", "-E": "preprocess"}[option]
        elif option in ("-M", "-MM"):
            self.mode = "preprocess"
        elif option in ("-MD", "-MMD"):
            self.dependencies = True
        elif option.startswith(("-Wp,-MD,", "-Wp,-MMD,")):
            # older automake's depcomp: the dependency file named through cpp
            self.dependencies, self.depfile = True, option.split(",", 2)[2]
        elif option in ("--version", "-dumpversion", "-dumpmachine", "-dumpspecs", "--help",
                        "-###", "-fsyntax-only") or option.startswith("-print-"):
            self.info_only = True
        return language

    def path(self, written):
        return os.path.normpath(os.path.join(self.directory, written))

    def unit_flags(self):
        """The options a unit is analysed and compiled with: no inputs, no output,
        no dependency-file or link-only options; path options absolute and joined."""
        flags, index = [], 0
        positional = {i for i, _ in self.sources + self.inputs}
        while index < len(self.args):
            arg = self.args[index]
            value = self.args[index + 1] if index + 1 < len(self.args) else ""
            if index in positional or arg in ("-c", "-S", "-E") or arg in _DEPENDENCY:
                index += 1
                continue
            if arg in ("-o", "-MF", "-MT", "-MQ", "-x") or _LINK_ONLY.match(arg) and arg in _WITH_ARGUMENT:
                index += 2
                continue
            if arg.startswith(("-o", "-MF", "-MT", "-MQ", "-Wp,-MD,", "-Wp,-MMD,")) or \
                    _LINK_ONLY.match(arg):
                index += 1
                continue
            if arg in _WITH_ARGUMENT:
                index += 2
                if arg in _PATH_OPTIONS:
                    value = self.path(value)
                flags += [arg + value] if arg in ("-I", "-D", "-U") else [arg, value]
                continue
            index += 1
            for option in ("-I", "-iquote", "-isystem", "-idirafter"):
                if arg.startswith(option) and len(arg) > len(option):
                    arg = option + self.path(arg[len(option):])
                    break
            flags.append(arg)
        return flags


def _expand_response_files(args, directory, depth=0):
    expanded = []
    for arg in args:
        if arg.startswith("@") and depth < 10:
            path = os.path.join(directory, arg[1:])
            try:
                with open(path) as f:
                    words = shlex.split(f.read())
            except (OSError, ValueError):
                expanded.append(arg)      # GCC keeps an unreadable @file as an argument
                continue
            expanded += _expand_response_files(words, directory, depth + 1)
        else:
            expanded.append(arg)
    return expanded


def code_flags(flags):
    """Of a unit's flags, those that change its code (no paths: checkouts differ)."""
    return [f for f in flags if _CODE_FLAG.match(f)]


def program_flags(flags_by_unit):
    """The program's flags in its manifest: the units' code flags, once if all agree."""
    distinct = {tuple(code_flags(f)) for f in flags_by_unit.values()}
    if len(distinct) <= 1:
        return list(next(iter(distinct), ()))
    return [f"{unit}: {' '.join(code_flags(flags))}" for unit, flags in sorted(flags_by_unit.items())]


def common_flags(flags_by_unit):
    """The code flags every unit shares (what a bundle's own glue is compiled with)."""
    lists = [code_flags(f) for f in flags_by_unit.values()]
    if not lists:
        return []
    return [f for f in lists[0] if all(f in other for other in lists[1:])]


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _key(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_atomic(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", newline="\n") as f:
        f.write(text)
    os.replace(temporary, path)


def _inside(relative):
    return "/".join("_up_" if part == ".." else part for part in relative.split("/"))


# -- the run -----------------------------------------------------------------------

def _compiler_not_found(cc):
    """The error the front end also raises for a missing compiler (frontend.py)."""
    return ToolError(f"compiler '{cc}' not found", hint="set CC to a C compiler")


def _run(argv):
    try:
        return subprocess.run(argv).returncode
    except FileNotFoundError:
        raise _compiler_not_found(argv[0])


def _pass_through(cc, args):
    try:
        os.execvp(cc, [cc, *args])
    except OSError as error:
        raise ToolError(f"cannot run '{cc}': {error.strerror}")


def check_gcc_compatible(cc):
    """psu's front end and generated code need GCC's dialect (`__GNUC__`)."""
    try:
        done = subprocess.run([cc, "-E", "-dM", "-x", "c", os.devnull], capture_output=True, text=True)
    except FileNotFoundError:
        raise _compiler_not_found(cc)
    if done.returncode != 0 or "#define __GNUC__ " not in done.stdout:
        raise UsageError(f"'{cc}' is not a gcc-compatible compiler (it does not define "
                         "__GNUC__ with -E -dM); psu needs gcc 9 or later, or clang",
                         hint="name the compiler after `psu cc`, e.g. CC=\"psu cc gcc\"")


def _record(config, command, written, obj, dsu, flags, analysis=None):
    """The compile of `written` into `obj`, for links and `psu patch`."""
    source = command.path(written)
    entry = {"directory": command.directory, "arguments": [command.cc, *command.args],
             "file": source, "output": command.path(obj),
             "psu": {"unit": config.relative(source), "dsu": dsu, "flags": flags,
                     "analysis": analysis, "object_sha256": _sha256_file(command.path(obj))}}
    _write_atomic(config.build_path("commands", _key(entry["output"]) + ".json"),
                  jsonfile.dumps(entry))


def _default_object(written, mode):
    stem = os.path.splitext(os.path.basename(written))[0]
    return stem + (".o" if mode == "compile" else ".s")


def _compile_dsu_unit(config, command, index, written, obj):
    """Generate `written`'s DSU copy and compile it in its place into `obj`
    (the command's other sources left out).  Returns (status, analysis path)."""
    if not written.endswith(_C_SUFFIXES):
        raise UsageError(f"{written}: a DSU unit needs a .c name (psu's analysis reads "
                         "it as C by its name); rename it or leave it out of units")
    others = {i for i, _ in command.sources if i != index}
    alone = [(i, a) for i, a in enumerate(command.args) if i not in others]
    check_gcc_compatible(command.cc)
    work = config.build_path("units", _inside(config.relative(command.path(written))) + "."
                             + _key(command.path(obj)))
    os.makedirs(os.path.dirname(work), exist_ok=True)
    analysis, generated = work + ".unit.json", work + ".psu.c"
    status = _generate_dsu_copy(config, command, written, alone, analysis, generated)
    if status != 0:
        return status, None
    argv = [command.cc, "-iquote", os.path.dirname(written) or ".",
            *[generated if i == index else a for i, a in alone],
            "-I" + resources.runtime_sources_dir()]
    if command.output is None:
        argv += ["-o", obj]
    status = _run(argv)
    if status == 0:
        _fix_depfile(command, obj, generated, written)
        entryhooks.quiet(command.path(obj))
    return status, analysis


def _generate_dsu_copy(config, command, written, alone, analysis, generated):
    """Analyse `written` into `analysis` and write its DSU copy `generated`.
    When psu cannot read the unit, the compiler's own diagnostics come first,
    as without psu: returns the compiler's status if it fails, else raises."""
    from . import build
    try:
        build.analyse_unit(config.relative(command.path(written)), command.cc,
                           command.unit_flags(), config.root, True, analysis,
                           cache_dir=config.build_path("cache"))
    except (CSourceError, ToolError):
        check = _run([command.cc, *[a for _, a in alone if a != "-c"], "-fsyntax-only"])
        if check != 0:
            return check
        raise
    build.generate_unit(analysis, command.path(written),
                        DsuPolicy(config.exclude, config.direct_statics), generated,
                        entry_hooks=entryhooks.wanted(command.unit_flags()))
    return 0


def _fix_depfile(command, obj, generated, written):
    """The dependency file names the user's source, as a plain compile's would."""
    if not command.dependencies:
        return
    path = command.depfile or os.path.splitext(obj)[0] + ".d"
    path = command.path(path)
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return

    def escaped(name):
        return name.replace(" ", "\\ ")
    with open(path, "w") as f:
        f.write(text.replace(escaped(generated), escaped(written)))


def compile_command(config, command):
    """A `-c` or `-S` compile: DSU units through psu, the others as written."""
    dsu = [(i, w) for i, w in command.sources if config.is_dsu_unit(command.path(w))]
    plain = [(i, w) for i, w in command.sources if (i, w) not in dsu]
    if not dsu:
        status = _run([command.cc, *command.original])
    else:
        status = 0
        if plain:
            drop = {i for i, _ in dsu}
            status = _run([command.cc, *[a for i, a in enumerate(command.args) if i not in drop]])
        for index, written in dsu:
            if status != 0:
                break
            obj = command.output or _default_object(written, command.mode)
            status, analysis = _compile_dsu_unit(config, command, index, written, obj)
            if status == 0 and command.mode == "compile":
                _record(config, command, written, obj, True, command.unit_flags(), analysis)
    if status == 0 and command.mode == "compile":
        for _, written in plain:
            if config.relative(command.path(written)) is not None:
                obj = command.output or _default_object(written, command.mode)
                if os.path.exists(command.path(obj)):
                    _record(config, command, written, obj, False, command.unit_flags())
    return status


# -- the link ----------------------------------------------------------------------

def _archive_members(path):
    """The member contents of a `!<arch>` static library (GNU and BSD names)."""
    with open(path, "rb") as f:
        data = f.read()
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset:offset + 60]
        name = header[:16].decode(errors="replace").strip()
        size = int(header[48:58].decode().strip() or 0)
        start = offset + 60
        content = data[start:start + size]
        if name.startswith("#1/"):          # BSD: the name precedes the content
            length = int(name[3:])
            content = content[length:]
        if name not in ("/", "//", "/SYM64/", "__.SYMDEF", "__.SYMDEF SORTED"):
            yield content
        offset = start + size + (size & 1)


def _linked_digests(command):
    """SHA-256 of every object the link reads: its object files and library members."""
    digests = []
    for _, written in command.inputs:
        path = command.path(written)
        try:
            with open(path, "rb") as f:
                magic = f.read(8)
        except OSError:
            continue
        if magic == b"!<arch>\n":
            digests += [hashlib.sha256(m).hexdigest() for m in _archive_members(path)]
        elif magic.startswith(b"\x7fELF"):
            digests.append(_sha256_file(path))
    return digests


def recorded(config):
    """Every recorded compile of the configuration's build folder."""
    folder = config.build_path("commands")
    entries = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else ():
        try:
            with open(os.path.join(folder, name)) as f:
                entries.append(json.load(f))
        except (OSError, ValueError):
            continue
    return entries


def write_compile_commands(config, entries):
    standard = [{k: e[k] for k in ("directory", "arguments", "file", "output")}
                for e in sorted(entries, key=lambda e: e["output"])]
    _write_atomic(config.build_path("compile_commands.json"),
                  jsonfile.dumps(standard))


def _runtime_objects(config, cc, flags):
    """The runtime, compiled once per compiler and target flags into the build folder."""
    from . import manifest
    sources = resources.runtime_sources()
    target = [f for f in flags if f.startswith("-m")]
    key = _key("\0".join([manifest.compiler_identity(cc), cc, *target,
                          *(f"{s}:{_sha256_file(s)}" for s in sources)]))
    folder = config.build_path("runtime", key)
    objects = [os.path.join(folder, os.path.splitext(os.path.basename(s))[0] + ".o") for s in sources]
    if all(os.path.exists(o) for o in objects):
        return objects
    temporary = f"{folder}.tmp{os.getpid()}"
    os.makedirs(temporary, exist_ok=True)
    for source, obj in zip(sources, objects):
        argv = [cc, "-c", "-O2", "-pthread", "-fPIC", *target, "-I" + resources.runtime_sources_dir(),
                "-o", os.path.join(temporary, os.path.basename(obj)), source]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            raise ToolError(f"compiling the runtime failed:\n{' '.join(argv)}\n{done.stderr}")
    try:
        os.rename(temporary, folder)
    except OSError:          # a parallel link got there first
        import shutil
        shutil.rmtree(temporary, ignore_errors=True)
    return objects


def link_command(config, command):
    """A link: a DSU program gets its identity, the runtime and the link flags;
    its manifest and build description are written beside it."""
    from . import manifest
    entries = recorded(config)
    linked = _linked_compiles(entries, command)
    if not any(e["psu"]["dsu"] for e in linked):
        _pass_through(command.cc, command.original)
    if "-shared" in command.args or "-r" in command.args:
        raise UsageError(f"{command.output or 'a.out'}: a shared library or partial link "
                         "of DSU units is not supported; link them into the program")
    check_gcc_compatible(command.cc)
    output = command.path(command.output or "a.out")
    name = os.path.basename(output)
    units, flags_by_unit = _linked_units(config, command, name, linked)
    flags = program_flags(flags_by_unit)
    result = manifest.build(name, config.label(), units, manifest.compiler_identity(command.cc),
                            flags, DsuPolicy(config.exclude, config.direct_statics))
    shared = common_flags(flags_by_unit)
    identity = _identity_object(config, command.cc, shared, result)
    status = _run([command.cc, *command.original, identity,
                   *_runtime_objects(config, command.cc, shared), *LINK_FLAGS])
    if status != 0:
        return status
    manifest.write(result, output + ".psu.json")
    _write_build_description(config, command, name, units, flags_by_unit, shared, flags)
    write_compile_commands(config, entries)
    return 0


def _linked_compiles(entries, command):
    """The recorded compiles whose objects the link reads (recognised by content)."""
    by_digest = {}
    for entry in entries:
        by_digest.setdefault(entry["psu"]["object_sha256"], entry)
    return [by_digest[d] for d in _linked_digests(command) if d in by_digest]


def _linked_units(config, command, name, linked):
    """(model.Unit of each unit linked, its flags by unit path): a DSU unit's
    analysis as its compile wrote it, a plain unit analysed now."""
    from . import build, frontend
    units, flags_by_unit, objects_by_unit = [], {}, {}
    for entry in linked:
        info = entry["psu"]
        unit = info["unit"]
        if unit is None:
            continue
        if unit in objects_by_unit:
            if objects_by_unit[unit] != entry["output"]:
                raise UsageError(f"{unit} is linked into {name} twice "
                                 f"({objects_by_unit[unit]} and {entry['output']})")
            continue
        objects_by_unit[unit] = entry["output"]
        flags_by_unit[unit] = info["flags"]
        if info["dsu"]:
            units.append(build.read_unit(info["analysis"]))
        else:
            units.append(frontend.analyse(unit, command.cc, info["flags"], config.root, dsu=False,
                                          cache_dir=config.build_path("cache")))
    return units, flags_by_unit


def _identity_object(config, cc, flags, result):
    """The object embedding the program's identity (build id, label), compiled with `flags`."""
    from . import codegen
    work = config.build_path(result["program"])
    os.makedirs(work, exist_ok=True)
    info_c = os.path.join(work, result["program"] + ".psu_info.c")
    _write_atomic(info_c, codegen.program_info(result["program"], result["build_id"], result["label"]))
    info_o = info_c[:-2] + ".o"
    done = subprocess.run([cc, "-c", *flags, "-o", info_o, info_c], capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolError(f"compiling {info_c} failed:\n{done.stderr}")
    return info_o


def _write_build_description(config, command, name, units, flags_by_unit, shared, flags):
    """`<build_dir>/<program>/build.json`: what `psu patch` and `psu diff` analyse with."""
    from . import buildconfig
    libraries = [a[2:] for a in command.args if a.startswith("-l") and len(a) > 2]
    description = buildconfig.BuildConfig(
        program=name, top=config.root, sources=sorted(flags_by_unit),
        dsu_units=sorted(u.path for u in units if u.dsu), cc=command.cc, flags=shared,
        exclude=list(config.exclude), accept=list(config.accept), direct_statics=config.direct_statics,
        libraries=libraries, work_dir=config.build_dir, unit_flags=flags_by_unit,
        manifest_flags=flags)
    buildconfig.write(config.build_path(name, "build.json"), description)


def _compile_then_link(config, command):
    """`cc -o prog a.c b.o`: DSU sources compiled on their own first, then the link."""
    if not any(config.is_dsu_unit(command.path(w)) for _, w in command.sources):
        # no DSU unit among the sources: a DSU object may still be linked
        return link_command(config, command)
    objects = {}
    for index, written in command.sources:
        obj = config.build_path("objects", _inside(config.relative(command.path(written)))
                                + "." + _key(command.path(command.output or "a.out")) + ".o")
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        single = Command(command.cc, [*command.unit_flags(), "-c", "-o", obj, command.path(written)],
                         command.directory)
        status = compile_command(config, single)
        if status != 0:
            return status
        objects[index] = obj
    # every source is an object now: no -x applies to what is left
    languages = {i for i, a in enumerate(command.args) if a == "-x"}
    languages |= {i + 1 for i in languages} | {i for i, a in enumerate(command.args)
                                                if a.startswith("-x") and len(a) > 2}
    args = [objects.get(i, a) for i, a in enumerate(command.args) if i not in languages]
    return link_command(config, Command(command.cc, args, command.directory))


def run(cc, args, directory=None):
    """Run one compiler command through psu; returns the exit status (or execs)."""
    from . import config as configuration
    directory = directory or os.getcwd()
    config = configuration.find(directory)
    if config is None:
        _pass_through(cc, args)
    command = Command(cc, args, directory)
    if command.info_only or command.mode == "preprocess":
        _pass_through(cc, args)
    if command.mode in ("compile", "assemble"):
        if not command.sources:
            _pass_through(cc, args)
        return compile_command(config, command)
    if command.sources:
        return _compile_then_link(config, command)
    if not command.inputs:
        _pass_through(cc, args)
    return link_command(config, command)


USAGE = "usage: psu cc COMPILER [compiler arguments...]  (e.g. CC=\"psu cc gcc\")"


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(USAGE + "\n")
        return 2
    try:
        return run(argv[0], argv[1:])
    except PsuError as error:
        return console.report_error(error)
    except KeyboardInterrupt:
        return 130


def script():
    """The `psu-cc` executable."""
    sys.exit(main())
