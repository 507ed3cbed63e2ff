"""Hashes of the code a job runs, ignoring comments, docstrings and formatting.

Every rule passes ``script_code_hash(<its script>)`` as a ``code`` param (the profiles drop ``code`` from
Snakemake's rerun triggers): the hash covers the script and, transitively, every module of this package it
imports — at module level or inside a function, found by parsing (nothing is imported). A job reruns when the
logic it runs changes, and not when a comment or a module it never imports is edited. The attention score cache
stores the same kind of hash of the engine's modules, so shards written by other code are never reused.

``registry_code_hash`` is finer for scripts that dispatch to one function of a registry (the attention methods):
the registry's module is hashed without the functions that only the *other* entries use, so editing one
method's function reruns that method only, while editing anything shared (``methods.aggregate``, a helper two
methods call, any other module) reruns all of them.
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import os
import textwrap
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (*_DEFS, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _tree_hash(tree: ast.AST) -> str:
    return hashlib.sha256(ast.dump(_strip_docstrings(tree), include_attributes=False).encode()).hexdigest()[:16]


def source_hash(source: str) -> str:
    """sha256 (16 hex) of the AST of ``source`` without docstrings; comments and layout do not count."""
    return _tree_hash(ast.parse(textwrap.dedent(source)))


# ---------------------------------------------------------------------------------------------- import closure
def package_modules(package_dir: str | os.PathLike = PACKAGE_DIR) -> dict[str, Path]:
    """{module name: source file} of every module of the package in ``package_dir`` (subpackages included)."""
    pkg = Path(package_dir)
    out = {}
    for path in pkg.rglob("*.py"):
        parts = (pkg.name, *path.relative_to(pkg).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


@functools.lru_cache(maxsize=None)
def _scan(source: str) -> tuple[str, tuple[tuple[int, str, tuple[str, ...]], ...]]:
    """(source hash, imports as (level, module, names)) of a source text (cached: planning parses each file once)."""
    tree = ast.parse(source)
    imports = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(alias.name for alias in node.names)))
    return _tree_hash(tree), tuple(imports)


def _scanned(path: str | os.PathLike):
    try:
        return _scan(Path(path).read_text())
    except SyntaxError as e:
        raise SyntaxError(f"{path}: {e}") from None


def imported_modules(path: str | os.PathLike, module: str | None = None, package_dir: str | os.PathLike = PACKAGE_DIR) -> set[str]:
    """Modules of the package that the file at ``path`` imports anywhere (module level, functions, branches),
    with their parent packages (importing ``a.b`` runs ``a/__init__.py``). ``module`` is the file's own module
    name, needed to resolve relative imports (None for a script)."""
    return _imported(path, module, package_modules(package_dir))


def _imported(path: str | os.PathLike, module: str | None, known: Mapping[str, Path]) -> set[str]:
    out: set[str] = set()

    def add(name: str) -> None:
        parts = name.split(".")
        out.update(sub for sub in (".".join(parts[: i + 1]) for i in range(len(parts))) if sub in known)

    for level, base, names in _scanned(path)[1]:
        if level:
            if module is None:
                continue  # a script has no package to be relative to
            here = module.split(".") if Path(path).name == "__init__.py" else module.split(".")[:-1]
            here = here[: len(here) - (level - 1)]
            base = ".".join(here + ([base] if base else []))
        add(base)
        for name in names:  # `from pkg import mod` imports the submodule
            add(f"{base}.{name}")
    return out


def import_closure(
    script: str | os.PathLike | None = None, modules: Iterable[str] = (), package_dir: str | os.PathLike = PACKAGE_DIR
) -> dict[str, Path]:
    """{module name: file} of the package modules that ``script`` and ``modules`` import, transitively
    (``modules`` themselves included), sorted by name."""
    known = package_modules(package_dir)
    todo = {".".join(m.split(".")[: i + 1]) for m in modules for i in range(m.count(".") + 1)}  # with parents
    if script is not None:
        todo |= _imported(script, None, known)
    seen: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in known:
            raise ValueError(f"{name}: not a module of the package in {package_dir}")
        seen[name] = known[name]
        todo |= _imported(known[name], name, known) - seen.keys()
    return dict(sorted(seen.items()))


def code_hash(
    script: str | os.PathLike | None = None,
    modules: Iterable[str] = (),
    package_dir: str | os.PathLike = PACKAGE_DIR,
    transform: Mapping[str, Callable[[str], str]] | None = None,
) -> str:
    """Hash of ``script`` (if any), ``modules`` and every package module they import, transitively.

    ``transform`` maps a module name to the function that hashes its source (default: :func:`source_hash`)."""
    transform = transform or {}
    h = hashlib.sha256()
    if script is not None:
        h.update(f"script\0{_scanned(script)[0]}\n".encode())
    for name, path in import_closure(script, modules, package_dir).items():
        if name in transform:
            digest = transform[name](path.read_text())
        else:
            digest = _scanned(path)[0]
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()[:16]


def script_code_hash(script: str | os.PathLike, package_dir: str | os.PathLike = PACKAGE_DIR) -> str:
    """Hash of a workflow script and of every package module it imports, transitively."""
    return code_hash(script, package_dir=package_dir)


# ---------------------------------------------------------------------------------------------- registries
def _global_refs(nodes: Iterable[ast.AST], names: set[str]) -> set[str]:
    return {n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in names}


def keep_entry(tree: ast.Module, entry: str, entries: set[str]) -> ast.Module:
    """``tree`` without the bodies of the top-level functions that only entries other than ``entry`` reach.

    Shared = everything reachable by name from code that runs at import (module statements, decorators,
    defaults, class bodies) or from functions no entry reaches; the stubs keep their names, decorators and
    arguments, so registration stays hashed. An entry that shared code names directly is shared too."""
    defs = {n.name: n for n in tree.body if isinstance(n, _DEFS)}
    names = set(defs)
    edges = {k: _global_refs([n], names) for k, n in defs.items()}

    def reach(start: set[str]) -> set[str]:
        out, todo = set(), set(start)
        while todo:
            k = todo.pop()
            if k not in out:
                out.add(k)
                todo |= edges[k] - out
        return out

    private = {e: reach({e}) for e in entries if e in defs}
    any_private = set().union(*private.values()) if private else set()
    executed = [n for n in tree.body if not isinstance(n, _DEFS)]
    for n in defs.values():
        if isinstance(n, ast.ClassDef):
            executed.append(n)
        else:
            executed += [*n.decorator_list, *n.args.defaults, *(d for d in n.args.kw_defaults if d is not None)]
    roots = _global_refs(executed, names) | {k for k, n in defs.items() if isinstance(n, ast.ClassDef)} | (names - any_private)
    keep = reach(roots) | private.get(entry, set())
    body = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in keep:
            node = copy.copy(node)
            node.body, node.returns = [ast.Pass()], None
        body.append(node)
    return ast.Module(body=body, type_ignores=[])


def registry_code_hash(script: str | os.PathLike, registry: Mapping[str, Callable], key: str, package_dir: str | os.PathLike = PACKAGE_DIR) -> str:
    """``script_code_hash`` for a job that runs entry ``key`` of ``registry`` (e.g. ``methods.METHODS``): the
    registry's module is hashed by :func:`keep_entry`, so other entries' own functions do not count."""
    fn = registry[key]
    module = fn.__module__
    entries = {f.__name__ for f in registry.values() if f.__module__ == module and f.__qualname__ == f.__name__}
    entry = fn.__name__ if fn.__qualname__ == fn.__name__ else ""  # a function built by a factory: shared code
    return code_hash(script, package_dir=package_dir, transform={module: functools.partial(_entry_hash, entry=entry, entries=frozenset(entries))})


@functools.lru_cache(maxsize=None)
def _entry_hash(source: str, entry: str, entries: frozenset[str]) -> str:
    return _tree_hash(keep_entry(ast.parse(source), entry, set(entries)))
