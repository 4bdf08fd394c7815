"""Building a :class:`Module` from a configuration directory, with static checks: block
types, labels, attributes against schemas, references, and dependency cycles."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trainform import __version__
from trainform.config import refactor
from trainform.config import schema as S
from trainform.config.expr import Ref, Scope, evaluate, references, static_names
from trainform.config.model import (
    Lifecycle,
    Local,
    Module,
    ModuleCall,
    Output,
    Resource,
    Settings,
    Validation,
    Variable,
    call_chain,
    module_prefix,
)
from trainform.config.modsource import GitSource, SourceError, installed_dir, parse_source
from trainform.config.source import (
    Expr,
    RawBlock,
    config_files,
    parse_hcl,
    parse_yaml,
)
from trainform.config.values import MAX_BLOCKS, MAX_CONFIG_FILE_BYTES, FunctionContext
from trainform.config.variables import type_spec
from trainform.errors import ConfigError, Diagnostic, Pos, StateError, TrainformError
from trainform.graph import find_cycle
from trainform.providers.registry import is_provider, provider_class, provider_names

FIXED_PROVIDERS = {
    "workspace": "workspace",
    "environment": "environment",
    "dataset": "dataset",
    "run": "run",
    "sweep": "sweep",
}
REFERENCE_ROOTS = (
    "var",
    "local",
    "count",
    "each",
    "path",
    "trainform",  # trainform.workspace: the CLI workspace's name
    "terraform",  # its alias, so that ported configurations work
    "param",
    "module",
    *S.RESOURCE_KINDS,
)


class _Collector:
    """Gathers diagnostics so one run reports every independent problem it can."""

    def __init__(self) -> None:
        self.errors: list[Diagnostic] = []

    def add(self, message: str, pos: Pos | None, hint: str = "") -> None:
        self.errors.append(Diagnostic(message, pos, hint))

    def guard(self, exc: ConfigError) -> None:
        self.errors.extend(exc.diagnostics)


def _literal(expr: Expr, what: str) -> Any:
    try:
        return evaluate(expr, Scope({}, FunctionContext(Path("."))))
    except ConfigError:
        raise ConfigError(Diagnostic(f"{what} must be a literal value", expr.pos)) from None


# Nested blocks of the blocks that have no schema of their own (refactor.py reads them).
_REFACTOR_NESTED: dict[tuple[str, ...], dict[str, int]] = {
    ("check",): {"assert": 0},
    ("removed",): {"lifecycle": 0},
}


def _nested_blocks(path: list[str], raw: dict[str, Any]) -> dict[str, int]:
    """Nested block names per block path, for reading YAML (see source.NestedBlocks)."""
    if tuple(path) in _REFACTOR_NESTED:
        return _REFACTOR_NESTED[tuple(path)]
    if len(path) == 2 and path[0] in S.RESOURCE_KINDS and path[1] == "lifecycle":
        return {k: b.labels for k, b in S.LIFECYCLE.blocks.items()}
    if path[0] == "compute" and len(path) == 1:
        names = {"lifecycle": 0}
        typ = getattr(raw.get("type"), "value", None)
        if isinstance(typ, str):
            with contextlib.suppress(TrainformError):
                names.update({k: b.labels for k, b in provider_class(typ).schema.blocks.items()})
        return names
    sch = _schema_for_path(path)
    names = {k: b.labels for k, b in sch.blocks.items()} if sch else {}
    if path[0] in S.RESOURCE_KINDS and len(path) == 1:
        names["lifecycle"] = 0
    return names


def _schema_for_path(path: list[str]) -> S.BlockSchema | None:
    sch: S.BlockSchema | None = {
        "trainform": S.SETTINGS,
        "variable": S.VARIABLE,
        "output": S.OUTPUT,
        "workspace": S.WORKSPACE,
        "environment": S.ENVIRONMENT,
        "dataset": S.DATASET,
        "run": S.RUN,
        "sweep": S.SWEEP,
    }.get(path[0])
    for step in path[1:]:
        if sch is None or step not in sch.blocks:
            return None
        sch = sch.blocks[step].schema
    return sch


def read_blocks(directory: Path, root: Path | None = None) -> tuple[list[Path], list[RawBlock]]:
    """Parse every configuration file of ``directory``; raise ConfigError listing each file's
    first syntax error. ``root`` is the configuration whose parse cache is used (a module's
    folder is read with its caller's cache)."""
    if not directory.is_dir():
        raise ConfigError(Diagnostic(f"configuration directory {str(directory)!r} does not exist"))
    files = config_files(directory)
    if not files:
        raise ConfigError(
            Diagnostic(
                f"no configuration files (*.train.hcl, *.train.yaml) in {directory}",
                hint="run `trainform init --example` to write a starter configuration",
            )
        )
    blocks: list[RawBlock] = []
    errors: list[Diagnostic] = []
    for path in files:
        rel = _display(path)
        try:
            if path.stat().st_size > MAX_CONFIG_FILE_BYTES:
                errors.append(
                    Diagnostic(
                        f"file is larger than {MAX_CONFIG_FILE_BYTES} bytes (the configuration "
                        "file size limit)",
                        Pos(rel, 1, 1),
                        "split it into several files, or read large values with file()",
                    )
                )
                continue
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            errors.append(Diagnostic("file is not valid UTF-8", Pos(rel, 1, 1)))
            continue
        except OSError as exc:
            errors.append(Diagnostic(f"cannot read file: {exc.strerror}", Pos(rel, 1, 1)))
            continue
        try:
            root_block = _parse_cached(root or directory, path, rel, text)
        except ConfigError as exc:
            errors.extend(exc.diagnostics)
            continue
        for name, attr in root_block.attrs.items():
            errors.append(
                Diagnostic(
                    f"unexpected attribute {name!r} at top level",
                    attr.pos,
                    "only blocks may appear here",
                )
            )
        blocks.extend(root_block.blocks)
        if len(blocks) > MAX_BLOCKS:
            errors.append(
                Diagnostic(
                    f"more than {MAX_BLOCKS} blocks in this configuration (the block limit)",
                    blocks[MAX_BLOCKS].pos,
                    "use count or for_each for many blocks alike",
                )
            )
            break
    if errors:
        raise ConfigError(errors)
    return files, blocks


def _parse(path: Path, rel: str, text: str) -> RawBlock:
    if path.name.endswith(".train.hcl"):
        return parse_hcl(text, rel)
    return parse_yaml(text, rel, _nested_blocks, S.TOP_LEVEL_LABELS)


def _parse_cached(directory: Path, path: Path, rel: str, text: str) -> RawBlock:
    """Parse a file, reusing the parse tree of an identical earlier version of it.

    Loading python-hcl2's grammar costs more than a whole plan of a small configuration, so
    parse results are kept in ``.trainform/cache/`` keyed by content, name and version. The
    cache is trainform's own (beside its state) and only an optimisation: any problem with
    it falls back to parsing.
    """
    key = hashlib.sha256("\0".join([__version__, path.name, rel, text]).encode()).hexdigest()[:32]
    cache = directory / ".trainform" / "cache" / f"parse-{key}.pickle"
    try:
        with cache.open("rb") as fh:
            cached = pickle.load(fh)
        if isinstance(cached, RawBlock):
            return cached
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError):
        pass
    root = _parse(path, rel, text)
    if (directory / ".trainform").is_dir():
        try:
            cache.parent.mkdir(exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(root, protocol=pickle.HIGHEST_PROTOCOL))
            tmp.replace(cache)
            _prune(cache.parent)
        except (OSError, pickle.PickleError, RecursionError):
            pass
    return root


def _prune(folder: Path, keep: int = 64) -> None:
    """Keep the cache small: old versions of edited files are dropped, newest first kept."""
    entries = sorted(folder.glob("parse-*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


def local_module_dir(
    path: tuple[str, ...], source: str, relative: Path, caller_dir: Path, pos: Pos
) -> Path:
    """The folder of the local module source ``source`` (``relative`` as parsed) called at
    ``path``, resolved against its caller's folder. Raises ConfigError if it does not exist."""
    directory = (caller_dir / relative).resolve()
    if not directory.is_dir():
        raise ConfigError(
            Diagnostic(
                f"module {path[-1]!r}: source folder {source!r} does not exist "
                f"({_display(directory)})",
                pos,
            )
        )
    return directory


def require_config_files(path: tuple[str, ...], directory: Path, pos: Pos) -> None:
    """Raises ConfigError if the folder of the module called at ``path`` holds no
    configuration files."""
    if not config_files(directory):
        raise ConfigError(
            Diagnostic(
                f"module {path[-1]!r}: no configuration files (*.train.hcl, *.train.yaml) in "
                f"{_display(directory)}",
                pos,
            )
        )


def _display(path: Path) -> str:
    """How a diagnostic names a file: relative to the working folder, also for a module
    beside it (``../modules/box/main.train.hcl``, as Terraform shows it); absolute when
    that would climb more than two folders, or when the two share only a top-level folder
    (``/tmp/a`` and ``/tmp/b`` are unrelated places, not one repository)."""
    cwd = os.getcwd()
    try:
        rel = os.path.relpath(path, cwd)
        shared = Path(os.path.commonpath([cwd, path]))
    except ValueError:
        return str(path)
    if not rel.startswith(".."):
        return rel
    if len(shared.parts) < 3 or rel.startswith(os.path.join("..", "..", "..")):
        return str(path)
    return rel


def load_module(directory: Path) -> Module:
    """Read and statically check a configuration directory and, recursively, the modules
    it calls (flattened into one :class:`Module`: their resources keyed by address such as
    ``module.team.compute.box``, their declarations in :attr:`Module.calls`). Raises
    ConfigError."""
    directory = directory.resolve()
    files, blocks = read_blocks(directory)
    c = _Collector()
    decl = _declarations(blocks, c)
    resources = dict(decl.resources)
    calls: dict[str, ModuleCall] = {}
    all_files = list(files)
    children: dict[tuple[str, ...], refactor.Refactoring] = {}
    if decl.module_blocks:
        loader = _ModuleLoader(directory, c, resources, calls, all_files, children)
        loader.load_calls((), directory, decl.module_blocks, ((directory, ""),))

    deps: dict[str, tuple[str, ...]] = {}
    if not c.errors:
        deps = _dependencies(decl.variables, decl.locals, decl.outputs, resources, c, calls)
    if not c.errors:  # moved/removed/import/check blocks, against what is declared
        names = refactor.declared_names(
            {a: r for a, r in resources.items() if not r.module_path},
            decl.variables,
            decl.locals,
        )
        c.errors.extend(refactor.validate(decl.refactoring, resources, calls, names))
        for path, found in children.items():  # each module's, relative to it
            call = calls[module_prefix(path)[:-1]]
            mine = {a: r for a, r in resources.items() if r.module_path == path}
            names = refactor.declared_names(mine, call.variables, call.locals)
            problems = refactor.validate(found, resources, calls, names, path)
            c.errors.extend(_in_module(problems, call_chain(calls, path)))
            decl.refactoring.extend(found)
    if c.errors:
        raise ConfigError(c.errors)
    return Module(
        directory,
        tuple(all_files),
        decl.settings,
        decl.variables,
        decl.locals,
        decl.outputs,
        resources,
        deps,
        calls=calls,
        **decl.refactoring.fields(),
    )


def function_context(module: Module) -> FunctionContext:
    """What functions know of a loaded configuration: relative paths start at its folder,
    and templatefile() may also read in the folder of every module it loads (a local module
    beside it, ``source = "../modules/x"``, as well as installed ones)."""
    folders = dict.fromkeys(call.directory for call in module.calls.values())
    return FunctionContext(module.directory, module_dirs=tuple(folders))


@dataclass
class _Declarations:
    """The blocks of one module folder, checked one by one."""

    settings: Settings = field(default_factory=Settings)
    variables: dict[str, Variable] = field(default_factory=dict)
    locals: dict[str, Local] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    module_blocks: list[RawBlock] = field(default_factory=list)
    refactoring: refactor.Refactoring = field(default_factory=refactor.Refactoring)


def _declarations(blocks: list[RawBlock], c: _Collector) -> _Declarations:
    decl = _Declarations()
    variables, locals_, outputs, resources = (
        decl.variables,
        decl.locals,
        decl.outputs,
        decl.resources,
    )
    first_seen: dict[str, Pos] = {}

    for blk in blocks:
        if blk.type not in S.TOP_LEVEL_LABELS:
            c.add(
                f"unknown block type {blk.type!r}",
                blk.pos,
                S.did_you_mean(blk.type, list(S.TOP_LEVEL_LABELS)),
            )
            continue
        want = S.TOP_LEVEL_LABELS[blk.type]
        if len(blk.labels) != want:
            c.add(
                f"block {blk.type!r} takes {want} label{'s' if want != 1 else ''}, got {len(blk.labels)}",
                blk.pos,
                f'e.g. {blk.type} "name" {{ ... }}' if want else "",
            )
            continue
        if want:
            key = f"{blk.type}.{blk.labels[0]}"
            if key in first_seen:
                c.add(f"{key} is declared twice", blk.pos, f"first declared at {first_seen[key]}")
                continue
            first_seen[key] = blk.pos
        try:
            if blk.type == "trainform":
                decl.settings = _settings(blk)
            elif blk.type == "variable":
                variables[blk.labels[0]] = _variable(blk)
            elif blk.type == "locals":
                for name, attr in blk.attrs.items():
                    if name in locals_:
                        c.add(
                            f"local.{name} is declared twice",
                            attr.pos,
                            f"first at {locals_[name].pos}",
                        )
                    locals_[name] = Local(name, attr.pos, attr.expr)
                for nested in blk.blocks:
                    c.add("locals hold only attributes", nested.pos)
            elif blk.type == "output":
                outputs[blk.labels[0]] = _output(blk)
            elif blk.type == "module":
                decl.module_blocks.append(blk)
            elif blk.type in refactor.BLOCK_TYPES:
                refactor.read_block(blk, decl.refactoring)
            else:
                res = _resource(blk)
                resources[res.address] = res
        except ConfigError as exc:
            c.guard(exc)
    return decl


MODULE_META = ("source", "version", "count", "for_each", "depends_on", "providers")
MAX_MODULE_DEPTH = 16


def _in_module(diagnostics: list[Diagnostic], chain: str) -> list[Diagnostic]:
    """Diagnostics found inside a module, with the call chain that led there in the hint."""
    out = []
    for d in diagnostics:
        if chain in d.hint:
            out.append(d)
            continue
        out.append(replace(d, hint=f"{d.hint}; {chain}" if d.hint else chain))
    return out


class _ModuleLoader:
    """Reads the modules a configuration calls, recursively, into one flat model."""

    def __init__(
        self,
        root: Path,
        c: _Collector,
        resources: dict[str, Resource],
        calls: dict[str, ModuleCall],
        files: list[Path],
        refactoring: dict[tuple[str, ...], refactor.Refactoring],
    ) -> None:
        self.root = root
        self.c = c
        self.resources = resources
        self.calls = calls
        self.files = files
        self.refactoring = refactoring  # call path -> the module's moved/removed/check blocks

    def load_calls(
        self,
        parent: tuple[str, ...],
        parent_dir: Path,
        blocks: list[RawBlock],
        chain: tuple[tuple[Path, str], ...],
    ) -> None:
        """Load each ``module`` block of the module at call path ``parent`` (folder
        ``parent_dir``); ``chain`` holds (folder, call address) from the root down."""
        for blk in blocks:
            path = (*parent, blk.labels[0])
            outer = call_chain(self.calls, parent)
            start = len(self.c.errors)
            try:
                self._load_call(path, parent_dir, blk, chain)
            except ConfigError as exc:
                self.c.guard(exc)
            if outer:
                self.c.errors[start:] = _in_module(self.c.errors[start:], outer)

    def _load_call(
        self,
        path: tuple[str, ...],
        parent_dir: Path,
        blk: RawBlock,
        chain: tuple[tuple[Path, str], ...],
    ) -> None:
        name = path[-1]
        address = module_prefix(path)[:-1]
        for nested in blk.blocks:
            raise ConfigError(
                Diagnostic(
                    f"unsupported block {nested.type!r} in module {name!r}",
                    nested.pos,
                    "a module block takes source, count, for_each, depends_on and the "
                    "module's input variables as attributes",
                )
            )
        if "source" not in blk.attrs:
            raise ConfigError(
                Diagnostic(
                    f'module "{name}" requires attribute "source"',
                    blk.pos,
                    'e.g. source = "./modules/gpu-box"',
                )
            )
        for meta in ("version", "providers"):
            if meta in blk.attrs:
                raise ConfigError(
                    Diagnostic(
                        f"{meta!r} is not supported in a module block",
                        blk.attrs[meta].pos,
                        'modules come from local folders or git (source = "git::...?ref=v1")',
                    )
                )
        if "count" in blk.attrs and "for_each" in blk.attrs:
            raise ConfigError(
                Diagnostic("count and for_each cannot both be set", blk.attrs["for_each"].pos)
            )
        source_expr = blk.attrs["source"].expr
        source = _literal(source_expr, "a module source")
        if not isinstance(source, str):
            raise ConfigError(Diagnostic("a module source must be a string", source_expr.pos))
        if len(path) > MAX_MODULE_DEPTH:
            raise ConfigError(
                Diagnostic(f"modules nested more than {MAX_MODULE_DEPTH} deep", blk.pos)
            )
        directory = self._directory(path, source, parent_dir, source_expr.pos)
        for i, (folder, caller) in enumerate(chain):
            if folder == directory:
                loop = [caller or "the root configuration"]
                loop += [c for _f, c in chain[i + 1 :]] + [address]
                raise ConfigError(
                    Diagnostic(
                        f"module cycle: {' -> '.join(loop)} (which loads "
                        f"{_display(directory)} again)",
                        blk.pos,
                        "a module cannot call itself, directly or through another module",
                    )
                )
        require_config_files(path, directory, source_expr.pos)
        here = f"in {address} ({blk.pos})"
        start = len(self.c.errors)
        try:
            files, blocks = read_blocks(directory, self.root)
        except ConfigError as exc:
            raise ConfigError(_in_module(exc.diagnostics, here)) from None
        self.files.extend(files)
        decl = _declarations(blocks, self.c)
        if decl.settings != Settings():
            self.c.add("a module cannot configure the state backend", None)
        self.c.errors.extend(refactor.child_imports(decl.refactoring, address))
        self.refactoring[path] = decl.refactoring.in_module(path)
        for res in decl.resources.values():
            moved = replace(res, module_path=path, module_dir=directory)
            self.resources[moved.address] = moved
        arguments = {k: a.expr for k, a in blk.attrs.items() if k not in MODULE_META}
        for arg, expr in arguments.items():
            if arg not in decl.variables:
                self.c.add(
                    f"module {name!r} has no input variable {arg!r}",
                    expr.pos,
                    S.did_you_mean(arg, list(decl.variables))
                    or f'declare it in {_display(directory)}: variable "{arg}" {{ ... }}',
                )
        for vname, var in sorted(decl.variables.items()):
            if var.required and vname not in arguments:
                self.c.add(
                    f"module {name!r} requires input variable {vname!r}",
                    blk.pos,
                    f"set {vname} = ... in the module block (declared at {var.pos})",
                )
        depends = (
            tuple(x for x, _ in static_names(blk.attrs["depends_on"].expr))
            if "depends_on" in blk.attrs
            else ()
        )
        self.calls[address] = ModuleCall(
            name=name,
            path=path,
            pos=blk.pos,
            source=source,
            directory=directory,
            arguments=arguments,
            variables=decl.variables,
            locals=decl.locals,
            outputs=decl.outputs,
            count=blk.attrs["count"].expr if "count" in blk.attrs else None,
            for_each=blk.attrs["for_each"].expr if "for_each" in blk.attrs else None,
            depends_on=depends,
        )
        self.c.errors[start:] = _in_module(self.c.errors[start:], here)
        if decl.module_blocks:
            self.load_calls(path, directory, decl.module_blocks, (*chain, (directory, address)))

    def _directory(self, path: tuple[str, ...], source: str, parent_dir: Path, pos: Pos) -> Path:
        try:
            parsed = parse_source(source)
            if isinstance(parsed, GitSource):
                return installed_dir(self.root, path, source)
        except SourceError as exc:
            raise ConfigError(Diagnostic(str(exc), pos)) from None
        return local_module_dir(path, source, parsed, parent_dir, pos)


def _check_attrs(blk: RawBlock, sch: S.BlockSchema, what: str, extra: tuple[str, ...] = ()) -> None:
    errors: list[Diagnostic] = []
    user = sch.user_attributes()
    if not sch.open_attributes:
        for name, attr in blk.attrs.items():
            if name in user or name in extra:
                continue
            if name in sch.attributes:
                errors.append(
                    Diagnostic(f"{name!r} is computed by trainform and cannot be set", attr.pos)
                )
                continue
            if name in sch.blocks:
                errors.append(
                    Diagnostic(
                        f"{name!r} is a block, not an attribute",
                        attr.pos,
                        f"write {name} {{ ... }}",
                    )
                )
                continue
            errors.append(
                Diagnostic(
                    f"unsupported attribute {name!r} in {what}",
                    attr.pos,
                    S.did_you_mean(name, [*user, *extra, *sch.blocks]),
                )
            )
        for name, a in user.items():
            if a.required and name not in blk.attrs:
                errors.append(
                    Diagnostic(f"{what} requires attribute {name!r}", blk.pos, a.description)
                )
    allowed_blocks = set(sch.blocks) | ({"lifecycle"} if "count" in extra else set())
    counts: dict[str, int] = {}
    for nested in blk.blocks:
        if sch.open_attributes:  # any nested block, itself open
            _check_attrs(nested, sch, f"{nested.type} block")
            continue
        if nested.type not in allowed_blocks:
            hint = S.did_you_mean(nested.type, sorted(allowed_blocks | set(user)))
            if nested.type in user:
                hint = f"{nested.type!r} is an attribute: write {nested.type} = {{ ... }}"
            errors.append(
                Diagnostic(f"unsupported block {nested.type!r} in {what}", nested.pos, hint)
            )
            continue
        counts[nested.type] = counts.get(nested.type, 0) + 1
        if nested.type == "lifecycle":
            _check_attrs(nested, S.LIFECYCLE, "lifecycle")
            continue
        spec = sch.blocks[nested.type]
        if counts[nested.type] > 1 and not spec.many:
            errors.append(Diagnostic(f"only one {nested.type!r} block is allowed here", nested.pos))
        if len(nested.labels) != spec.labels:
            errors.append(
                Diagnostic(f"block {nested.type!r} takes {spec.labels} label(s)", nested.pos)
            )
        try:
            _check_attrs(nested, spec.schema, f"{nested.type} block")
        except ConfigError as exc:
            errors.extend(exc.diagnostics)
    if errors:
        raise ConfigError(errors)


def _settings(blk: RawBlock) -> Settings:
    _check_attrs(blk, S.SETTINGS, "the trainform block")
    settings = Settings()
    providers: list[str] = []
    for nested in blk.blocks:
        if nested.type == "backend":
            settings = _backend(nested)
        elif nested.type == "required_providers":
            providers.extend(nested.attrs)
    return replace(settings, required_providers=tuple(providers))


def _backend(blk: RawBlock) -> Settings:
    """A ``backend "sqlite" { path = ... }`` or ``backend "pg" { conn_str = ...,
    schema_name = ... }`` block: literal values only, as Terraform's backend blocks (state
    is opened before any expression could be evaluated)."""
    kind = blk.labels[0]
    if kind not in S.BACKENDS:
        raise ConfigError(
            Diagnostic(
                f"unsupported backend {kind!r}",
                blk.pos,
                S.did_you_mean(kind, list(S.BACKENDS))
                or "the supported backends are " + " and ".join(f'"{b}"' for b in S.BACKENDS),
            )
        )
    _check_attrs(blk, S.BACKENDS[kind], f'backend "{kind}" block')
    values: dict[str, str] = {}
    for name, attr in blk.attrs.items():
        value = _literal(attr.expr, f"backend {name}")
        if not isinstance(value, str) or not value:
            raise ConfigError(
                Diagnostic(f"backend {name} must be a non-empty string", attr.expr.pos)
            )
        values[name] = value
    if kind == "sqlite":
        return Settings("sqlite", values.get("path"))
    schema_name = values.get("schema_name", "trainform")
    from trainform.state.postgres import check_schema_name

    try:
        check_schema_name(schema_name)
    except StateError as exc:
        raise ConfigError(Diagnostic(str(exc), blk.attrs["schema_name"].expr.pos)) from None
    return Settings("pg", None, conn_str=values.get("conn_str", ""), schema_name=schema_name)


def _flag(blk: RawBlock, name: str) -> bool:
    if name not in blk.attrs:
        return False
    value = _literal(blk.attrs[name].expr, name)
    if not isinstance(value, bool):
        raise ConfigError(Diagnostic(f"{name} must be true or false", blk.attrs[name].expr.pos))
    return value


def _text(blk: RawBlock, name: str) -> str:
    return str(_literal(blk.attrs[name].expr, name)) if name in blk.attrs else ""


def _variable(blk: RawBlock) -> Variable:
    _check_attrs(blk, S.VARIABLE, f'variable "{blk.labels[0]}"')
    name = blk.labels[0]
    if name in ("count", "for_each", "depends_on", "lifecycle", "providers", "source", "version"):
        raise ConfigError(
            Diagnostic(f"{name!r} is a reserved name and cannot be a variable", blk.pos)
        )
    validations = tuple(
        Validation(v.attrs["condition"].expr, v.attrs["error_message"].expr) for v in blk.blocks
    )
    for v in validations:
        bad = [
            r
            for r in references(v.condition)
            if r.key != f"var.{name}" and r.root not in ("count", "each")
        ]
        if bad:
            raise ConfigError(
                Diagnostic(
                    "a validation condition may refer only to the variable itself", bad[0].pos
                )
            )
    return Variable(
        name=name,
        pos=blk.pos,
        type=type_spec(blk.attrs["type"].expr) if "type" in blk.attrs else "any",
        default=blk.attrs["default"].expr if "default" in blk.attrs else None,
        description=_text(blk, "description"),
        sensitive=_flag(blk, "sensitive"),
        nullable=_flag(blk, "nullable") if "nullable" in blk.attrs else True,
        validations=validations,
    )


def _output(blk: RawBlock) -> Output:
    _check_attrs(blk, S.OUTPUT, f'output "{blk.labels[0]}"')
    return Output(
        name=blk.labels[0],
        pos=blk.pos,
        value=blk.attrs["value"].expr,
        description=_text(blk, "description"),
        sensitive=_flag(blk, "sensitive"),
    )


def resource_schema(kind: str, provider: str) -> S.BlockSchema:
    if kind == "workspace":
        return S.WORKSPACE
    if kind == "environment":
        return S.ENVIRONMENT
    if kind == "dataset":
        return S.DATASET
    if kind == "run":
        return S.RUN
    if kind == "sweep":
        return S.SWEEP
    return provider_class(provider).schema


def _resource(blk: RawBlock) -> Resource:
    kind, name = blk.type, blk.labels[0]
    what = f'{kind} "{name}"'
    if kind == "compute":
        if "type" not in blk.attrs:
            raise ConfigError(
                Diagnostic(
                    f"{what} requires attribute 'type'",
                    blk.pos,
                    f"one of: {', '.join(_compute_types())}",
                )
            )
        provider = _literal(blk.attrs["type"].expr, "compute type")
        if not isinstance(provider, str) or not _is_compute_type(provider):
            raise ConfigError(
                Diagnostic(
                    f"unknown compute type {provider!r}",
                    blk.attrs["type"].expr.pos,
                    S.did_you_mean(str(provider), _compute_types())
                    or f"one of: {', '.join(_compute_types())}",
                )
            )
    else:
        provider = FIXED_PROVIDERS[kind]
    try:
        sch = resource_schema(kind, provider)
    except TrainformError as exc:
        raise ConfigError(Diagnostic(str(exc), blk.pos)) from None
    meta = ("count", "for_each", "depends_on", *(("type",) if kind == "compute" else ()))
    _check_attrs(blk, sch, what, meta)
    if "count" in blk.attrs and "for_each" in blk.attrs:
        raise ConfigError(
            Diagnostic("count and for_each cannot both be set", blk.attrs["for_each"].pos)
        )
    lifecycle = Lifecycle()
    nested = []
    for n in blk.blocks:
        if n.type == "lifecycle":
            ignore = (
                tuple(x for x, _ in static_names(n.attrs["ignore_changes"].expr))
                if "ignore_changes" in n.attrs
                else ()
            )
            for item in ignore:
                if item not in sch.user_attributes() and item != "all":
                    raise ConfigError(
                        Diagnostic(
                            f"ignore_changes: {what} has no attribute {item!r}",
                            n.attrs["ignore_changes"].expr.pos,
                            S.did_you_mean(item, list(sch.user_attributes())),
                        )
                    )
            lifecycle = Lifecycle(
                _flag(n, "prevent_destroy"),
                ignore,
                _flag(n, "create_before_destroy"),
                *refactor.lifecycle_conditions(n),
            )
        else:
            nested.append(n)
    depends = (
        tuple(x for x, _ in static_names(blk.attrs["depends_on"].expr))
        if "depends_on" in blk.attrs
        else ()
    )
    attrs = {k: a.expr for k, a in blk.attrs.items() if k not in meta}
    return Resource(
        kind=kind,
        name=name,
        provider=provider,
        pos=blk.pos,
        schema=sch,
        attributes=attrs,
        blocks=tuple(nested),
        count=blk.attrs["count"].expr if "count" in blk.attrs else None,
        for_each=blk.attrs["for_each"].expr if "for_each" in blk.attrs else None,
        depends_on=depends,
        lifecycle=lifecycle,
    )


def _compute_types() -> list[str]:
    return [n for n in provider_names() if n not in FIXED_PROVIDERS]


def _is_compute_type(name: str) -> bool:
    # Not `in _compute_types()`: that lists every installed provider (a metadata scan).
    return name not in FIXED_PROVIDERS and is_provider(name)


def resource_expressions(res: Resource) -> list[Expr]:
    """Every expression of a resource block, nested blocks included."""
    out = list(res.attributes.values())
    stack = list(res.blocks)
    while stack:
        b = stack.pop()
        out.extend(a.expr for a in b.attrs.values())
        stack.extend(b.blocks)
    out.extend(e for e in (res.count, res.for_each) if e is not None)
    out.extend(e for c in res.lifecycle.preconditions for e in (c.condition, c.error_message))
    return out


def _dependencies(
    variables: dict[str, Variable],
    locals_: dict[str, Local],
    outputs: dict[str, Output],
    resources: dict[str, Resource],
    c: _Collector,
    calls: dict[str, ModuleCall] | None = None,
) -> dict[str, tuple[str, ...]]:
    """Check every reference and return the dependency edges; report cycles.

    Nodes are ``var.x``, ``local.y``, ``output.z``, resource blocks, and for each module
    call ``module.team`` (its count/for_each) with the child's nodes below it
    (``module.team.var.x``: the argument, evaluated in the caller)."""
    calls = calls or {}
    deps: dict[str, tuple[str, ...]] = {}
    node_pos: dict[str, Pos] = {}
    scopes: list[tuple[ModuleCall | None, dict[str, Variable], dict[str, Local], dict[str, Output]]]
    scopes = [(None, variables, locals_, outputs)]
    scopes += [(call, call.variables, call.locals, call.outputs) for call in calls.values()]
    for call, vars_, locs, outs in scopes:
        start = len(c.errors)
        _scope_dependencies(call, vars_, locs, outs, resources, calls, deps, node_pos, c)
        if call is not None:
            c.errors[start:] = _in_module(c.errors[start:], call_chain(calls, call.path))
    if not c.errors:
        cycle = find_cycle(deps)
        if cycle:
            chain = " -> ".join([*cycle, cycle[0]])
            c.add(
                f"dependency cycle: {chain}",
                node_pos.get(cycle[0]),
                "break one of these references",
            )
    return deps


def _scope_dependencies(
    call: ModuleCall | None,
    variables: dict[str, Variable],
    locals_: dict[str, Local],
    outputs: dict[str, Output],
    all_resources: dict[str, Resource],
    calls: dict[str, ModuleCall],
    deps: dict[str, tuple[str, ...]],
    node_pos: dict[str, Pos],
    c: _Collector,
) -> None:
    """The edges of one module (the root when ``call`` is None)."""
    path = call.path if call is not None else ()
    prefix = module_prefix(path)
    resources = {a: r for a, r in all_resources.items() if r.module_path == path}
    children = {k.name: k for k in calls.values() if k.path[:-1] == path}
    declared: dict[str, Any] = {
        "var": set(variables),
        "local": set(locals_),
        "module": children,
        **{k: {r.name for r in resources.values() if r.kind == k} for k in S.RESOURCE_KINDS},
    }
    # inside a module, every node waits for the call that makes its instances
    inside = (call.address,) if call is not None else ()

    def resolve(
        owner: str, exprs: list[Expr], res: Any = None, extra: tuple[str, ...] = ()
    ) -> None:
        found: list[str] = list(extra)
        for expr in exprs:
            for ref in references(expr):
                for target in _ref_nodes(ref, declared, res, c, prefix):
                    if target == owner:
                        c.add(f"{owner} refers to itself", ref.pos)
                    else:
                        found.append(target)
        deps[owner] = tuple(dict.fromkeys(found))

    def depends_on(owner: str, names: tuple[str, ...], pos: Pos) -> list[str]:
        out: list[str] = []
        for addr in names:
            parts = addr.split(".")
            if len(parts) == 2 and parts[0] == "module" and parts[1] in children:
                sub = children[parts[1]]
                out.extend(a for a in all_resources if a.startswith(sub.prefix))
                out.extend(f"{sub.prefix}output.{o}" for o in sub.outputs)
                out.append(sub.address)
            elif (
                len(parts) != 2
                or parts[0] not in S.RESOURCE_KINDS
                or parts[1] not in declared[parts[0]]
            ):
                c.add(
                    f"depends_on: {addr!r} is not a resource in this configuration",
                    pos,
                    S.did_you_mean(
                        addr,
                        [r.address.removeprefix(prefix) for r in resources.values()]
                        + [f"module.{n}" for n in children],
                    ),
                )
            else:
                out.append(prefix + addr)
        return [a for a in out if a != owner]

    for v in variables.values():
        node = f"{prefix}var.{v.name}"
        node_pos[node] = v.pos
        exprs = [v.default] if v.default is not None else []
        for d in exprs:
            if references(d):
                c.add("a variable's default must be a literal value", d.pos)
        deps.setdefault(node, inside)  # an argument's edges are set by the caller
    for loc in locals_.values():
        node_pos[f"{prefix}local.{loc.name}"] = loc.pos
        resolve(f"{prefix}local.{loc.name}", [loc.value], extra=inside)
    for res in resources.values():
        node_pos[res.address] = res.pos
        resolve(res.address, resource_expressions(res), res, inside)
        extra = depends_on(res.address, res.depends_on, res.pos)
        deps[res.address] = tuple(dict.fromkeys([*deps[res.address], *extra]))
    for out in outputs.values():
        node_pos[f"{prefix}output.{out.name}"] = out.pos
        resolve(f"{prefix}output.{out.name}", [out.value], extra=inside)
    for child in children.values():
        node_pos[child.address] = child.pos
        meta = [e for e in (child.count, child.for_each) if e is not None]
        resolve(child.address, meta, child, inside)
        extra = depends_on(child.address, child.depends_on, child.pos)
        deps[child.address] = tuple(dict.fromkeys([*deps[child.address], *extra]))
        for arg, expr in child.arguments.items():
            node = f"{child.prefix}var.{arg}"
            if arg in child.variables:
                resolve(node, [expr], child, (child.address,))


def _ref_nodes(
    ref: Ref, declared: dict[str, Any], res: Any, c: _Collector, prefix: str = ""
) -> list[str]:
    """The graph nodes a reference points at (checked; none if it is wrong)."""
    if ref.root != "module":
        target = _check_ref(ref, declared, res, c)
        return [prefix + target] if target else []
    children: dict[str, ModuleCall] = declared["module"]
    if not ref.steps or not isinstance(ref.steps[0], str):
        c.add("'module' must be followed by a name, as in module.NAME.OUTPUT", ref.pos)
        return []
    name = ref.steps[0]
    call = children.get(name)
    if call is None:
        c.add(
            f"reference to undeclared module {'module.' + name!r}",
            ref.pos,
            S.did_you_mean(name, list(children))
            or 'declare it: module "NAME" { source = "./..." }',
        )
        return []
    rest = list(ref.steps[1:])
    if rest and (call.count is not None or call.for_each is not None):
        rest = rest[1:]  # the instance key
    if rest and isinstance(rest[0], str):
        if rest[0] not in call.outputs:
            c.add(
                f"module.{name} has no output {rest[0]!r}",
                ref.pos,
                S.did_you_mean(rest[0], list(call.outputs))
                or f'declare it in {_display(call.directory)}: output "{rest[0]}" {{ value = ... }}',
            )
            return []
        return [call.address, f"{call.prefix}output.{rest[0]}"]
    return [call.address, *(f"{call.prefix}output.{o}" for o in call.outputs)]


def _check_ref(ref: Ref, declared: dict[str, Any], res: Any, c: _Collector) -> str | None:
    """Validate one reference; return the graph node it points at (or None)."""
    if ref.root not in REFERENCE_ROOTS:
        c.add(
            f"unknown reference {ref.root!r}",
            ref.pos,
            S.did_you_mean(ref.root, list(REFERENCE_ROOTS)),
        )
        return None
    if ref.root in ("count", "each", "path", "trainform", "terraform"):
        allowed = {
            "count": ("index",),
            "each": ("key", "value"),
            "path": ("module", "root", "cwd"),
            "trainform": ("workspace",),
            "terraform": ("workspace",),
        }[ref.root]
        if ref.root == "count" and (res is None or res.count is None):
            c.add(
                "count.index is only available in a resource that sets count",
                ref.pos,
            )
        elif ref.root == "each" and (res is None or res.for_each is None):
            c.add(
                f"{ref.root}.* is only available in a resource that sets for_each",
                ref.pos,
            )
        elif not ref.steps or ref.steps[0] not in allowed:
            c.add(
                f"unknown reference {ref.key!r}",
                ref.pos,
                f"one of: {', '.join(ref.root + '.' + a for a in allowed)}",
            )
        return None
    if not ref.steps or not isinstance(ref.steps[0], str):
        c.add(f"{ref.root!r} must be followed by a name, as in {ref.root}.NAME", ref.pos)
        return None
    name = ref.steps[0]
    if ref.root == "param":
        if getattr(res, "kind", None) != "sweep":
            c.add("param.* is only available inside a sweep's trial block", ref.pos)
            return None
        declared_params = [b.labels[0] for b in res.blocks if b.type == "parameter" and b.labels]
        if name not in declared_params and "hyperdrive_config" not in res.attributes:
            c.add(
                f"no parameter {name!r} in this sweep",
                ref.pos,
                S.did_you_mean(name, declared_params) or 'declare it: parameter "NAME" { ... }',
            )
        return None
    if name not in declared[ref.root]:
        what = {"var": "variable", "local": "local value"}.get(ref.root, ref.root)
        hint = S.did_you_mean(name, list(declared[ref.root]))
        if ref.root == "workspace" and not hint:  # not the CLI workspace: say which is which
            hint = (
                f"workspace.NAME refers to a workspace block (an artifact store): declare "
                f'workspace "{name}" {{ ... }}; the CLI workspace\'s name is trainform.workspace'
            )
        c.add(f"reference to undeclared {what} {ref.key!r}", ref.pos, hint)
        return None
    return ref.key
