"""Method parameters, declared once per kind: name, type, range or choices, default.

The config validator (``attnrank.config``, before any job runs) and the methods themselves (at run time) check a
method's parameters with the same declarations and the same code, so a value the validator accepts is a value the
method runs with, and an error names the method's config name: ``methods.<name>.<key>: ...``.

Attention kinds declare their ``Param`` s where they are registered (``attnrank.attention.methods.register``). Text kinds
(RankGPT, yes/no, QLM, setwise, pointwise attention) are declared in ``attnrank.text.kinds`` (their modules import
torch, and the validator runs at planning time, which must stay light).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

REQUIRED = object()  # a Param default meaning "must be given"
IGNORED = {"kind", "name", "description", "label", "protocol", "candidates"}  # config bookkeeping of a method entry (protocol: attnrank.protocols; candidates: the candidate lists it runs on, attnrank.plan), not parameters


class ParamError(InputError):
    """A bad method parameter: ``key`` (``methods.<name>.<param>``) and what is wrong with it (``why``)."""

    def __init__(self, key: str, why: str):
        super().__init__(f"{key}: {why}")
        self.key, self.why = key, why


@dataclass(frozen=True)
class Param:
    """One parameter: ``type`` is ``int``, ``number``, ``bool``, ``choice`` or ``any`` (checked elsewhere);
    ``lo``/``hi`` bound numbers (``lo_open``/``hi_open``: strict); ``choices`` for ``choice``; ``null``: None allowed."""

    type: str
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple = ()
    null: bool = False
    doc: str = ""

    def expected(self) -> str:
        if self.type == "choice":
            what = f"one of {list(self.choices)}"
        elif self.type == "bool":
            what = "true or false"
        elif self.type in ("int", "number"):
            noun = "an integer" if self.type == "int" else "a number"
            if self.lo is not None and self.hi is not None:
                what = f"{noun} in {'(' if self.lo_open else '['}{_fmt(self.lo)}, {_fmt(self.hi)}{')' if self.hi_open else ']'}"
            elif self.lo is not None:
                what = f"{noun} {'>' if self.lo_open else '>='} {_fmt(self.lo)}"
            elif self.hi is not None:
                what = f"{noun} {'<' if self.hi_open else '<='} {_fmt(self.hi)}"
            else:
                what = noun
        else:
            what = "a value"
        return what + (" or null" if self.null else "")

    def ok(self, v: Any) -> bool:
        if v is None:
            return self.null
        if self.type == "any":
            return True
        if self.type == "bool":
            return isinstance(v, bool)
        if self.type == "choice":
            return v in self.choices
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (self.type == "int" and not isinstance(v, int)):
            return False
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class KindSpec:
    """The parameters of one method kind plus an optional cross-parameter check ``check(resolved, name)``."""

    params: Mapping[str, Param]
    check: Callable[[dict, str], None] | None = None
    renamed: Mapping[str, str] = field(default_factory=dict)  # old parameter name -> new one (an old name is an error)


def method_name(params: Mapping, kind: str) -> str:
    return str(params.get("_name") or params.get("name") or kind)


def param_error(params: Mapping, kind: str, key: str, msg: str) -> ParamError:
    """The error of parameter ``key`` of a method (named by its resolved ``_name``): ``methods.<name>.<key>: msg``."""
    return ParamError(f"methods.{method_name(params, kind)}.{key}", msg)


def int_param(params: Mapping, kind: str, key: str, lo: int) -> int:
    """``params[key]`` as an int >= ``lo`` (numpy integers accepted), else a ``param_error``."""
    v = params[key]
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise param_error(params, kind, key, f"must be an integer >= {lo} (got {v!r})")
    return int(v)


def resolve(kind: str, spec: KindSpec, params: Mapping | None, name: str | None = None) -> dict:
    """``params`` checked against ``spec`` with defaults filled in (``_name`` keeps the method's name).

    Unknown names, wrong types and out-of-range values raise ``ParamError`` naming ``methods.<name>.<key>``.
    Keys in ``IGNORED`` and keys starting with ``_`` are passed through unchecked.
    """
    params = dict(params or {})
    name = name or method_name(params, kind)
    out: dict = {}
    for key, value in params.items():
        if key in IGNORED or key.startswith("_"):
            out[key] = value
            continue
        if key in spec.renamed:
            raise ParamError(f"methods.{name}.{key}", f"was renamed: use '{spec.renamed[key]}'")
        if key not in spec.params:
            raise ParamError(f"methods.{name}.{key}", f"unknown parameter for kind '{kind}' (allowed: {', '.join(sorted(spec.params))})")
        p = spec.params[key]
        if not p.ok(value):
            raise ParamError(f"methods.{name}.{key}", f"expected {p.expected()}, got {value!r}")
        out[key] = value
    for key, p in spec.params.items():
        if key not in out:
            if p.default is REQUIRED:
                raise ParamError(f"methods.{name}.{key}", f"required for kind '{kind}' ({p.doc or p.expected()})")
            out[key] = p.default
    out["_name"] = name
    if spec.check is not None:
        spec.check(out, name)
    return out
