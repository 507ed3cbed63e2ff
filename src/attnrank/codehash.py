"""Hashes of code that ignore comments, docstrings and formatting.

Rules pass these as ``params`` (and the profiles drop ``code`` from Snakemake's rerun triggers), so a job reruns
when the logic it runs changes — a method's own function, the attention engine — and not when a comment or an
unrelated module is edited.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from types import FunctionType, ModuleType


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def source_hash(source: str) -> str:
    """sha256 (16 hex) of the AST of ``source`` without docstrings; comments and layout do not count."""
    tree = _strip_docstrings(ast.parse(textwrap.dedent(source)))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


def code_hash(*objs: FunctionType | ModuleType | type) -> str:
    """Combined hash of functions, classes or modules (order matters)."""
    h = hashlib.sha256()
    for obj in objs:
        h.update(source_hash(inspect.getsource(obj)).encode())
    return h.hexdigest()[:16]


def file_hash(*paths) -> str:
    """Combined AST hash of source files, without importing them (cheap at workflow planning time)."""
    from pathlib import Path

    h = hashlib.sha256()
    for p in paths:
        h.update(source_hash(Path(p).read_text()).encode())
    return h.hexdigest()[:16]


def _names(code) -> set[str]:
    out = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            out |= _names(const)
    return out


def function_closure_hash(fn: FunctionType) -> str:
    """Hash of ``fn`` and, transitively, of the functions of its own module that it calls by name: a method's
    logic including its private helpers, but not the rest of the module."""
    seen: dict[str, FunctionType] = {}
    todo = [fn]
    while todo:
        f = todo.pop()
        if f.__qualname__ in seen:
            continue
        seen[f.__qualname__] = f
        for name in sorted(_names(f.__code__)):
            g = f.__globals__.get(name)
            if isinstance(g, FunctionType) and g.__module__ == fn.__module__:
                todo.append(g)
    return code_hash(*(seen[k] for k in sorted(seen)))
