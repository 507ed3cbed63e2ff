"""Method parameters, declared once per kind: name, type, range or choices, default.

The config validator (``attnrank.config``, before any job runs) and the methods themselves (at run time) check a
method's parameters with the same declarations and the same code, so a value the validator accepts is a value the
method runs with, and an error names the method's config name: ``methods.<name>.<key>: ...``.

Attention kinds declare their ``Param`` s where they are registered (``attnrank.methods.register``). Text kinds
(RankGPT, yes/no, QLM, setwise, pointwise attention) are declared here, in ``TEXT_KINDS``, because their modules import torch and the
validator runs at planning time, which must stay light; ``generation`` / ``likelihood`` / ``setwise`` read their
parameters through :func:`resolve` with these declarations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

REQUIRED = object()  # a Param default meaning "must be given"
IGNORED = {"kind", "name", "description", "label", "protocol"}  # config bookkeeping of a method entry (protocol: attnrank.protocols), not parameters


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


# ------------------------------------------------------------------------------------------------ text kinds
_COMMON = {
    "max_doc_tokens": Param("int", 300, lo=1, null=True, doc="per-document truncation in tokens (as the attention prompt)"),
    "max_doc_words": Param("int", None, lo=1, null=True, doc="per-document truncation in words"),
    "use_chat_template": Param("bool", True),
}
# old spellings of the truncation keys: rejected with the new name (one spelling in config keys, code and docs)
_RENAMED = {"doc_max_tokens": "max_doc_tokens", "doc_max_words": "max_doc_words"}


def _rankgpt_check(p: dict, name: str) -> None:
    if p["stride"] > p["window"]:
        raise ParamError(f"methods.{name}.stride", f"{p['stride']} is larger than window {p['window']} (documents would be skipped)")
    _attention_check(p, name)


def _setwise_check(p: dict, name: str) -> None:
    if p["labels"] == "letters" and p["c"] + 1 > 26:
        raise ParamError(f"methods.{name}.c", f"{p['c']} children need more than 26 letter labels")
    _attention_check(p, name, "scorer")


def _attention_check(p: dict, name: str, key: str = "scoring") -> None:
    """Scoring by attention needs a valid nested attention method spec (``attnrank.attnscoring``)."""
    if p[key] == "attention":
        from .attnscoring import attention_spec

        att = attention_spec(p, name)
        from . import methods

        methods.validate(att["kind"], {k: v for k, v in att.items() if k != "kind"}, f"{name}.attention")


# a text framework scored by attention: the attention method spec and the prompt (filled from the config's `prompt`)
_ATTENTION = {
    "attention": Param("any", None, null=True, doc="attention method spec, e.g. {kind: icr}"),
    "prompt": Param("any", None, null=True, doc="the attention prompt config (default: the config's prompt section)"),
}


_LIKELIHOOD = {
    "batch_size": Param("int", 8, lo=1),
    "prefix_cache": Param("bool", True),
    "prefix_cache_min": Param("int", 8, lo=1),
}

TEXT_KINDS: dict[str, KindSpec] = {
    "rankgpt": KindSpec({
        **_COMMON,
        "window": Param("int", 20, lo=1),
        "stride": Param("int", 10, lo=1),
        "max_new_tokens": Param("int", None, lo=1, null=True, doc="null: room for the whole permutation"),
        "scoring": Param("choice", "generation", choices=("generation", "likelihood", "attention"), doc="how a window is ordered"),
        "labels": Param("choice", "auto", choices=("auto", "letters", "numbers"), doc="passage labels (likelihood scoring)"),
        **_ATTENTION,
    }, _rankgpt_check, renamed=_RENAMED),
    "yesno": KindSpec({**_COMMON, **_LIKELIHOOD}, None, renamed=_RENAMED),
    "qlm": KindSpec({**_COMMON, **_LIKELIHOOD}, None, renamed=_RENAMED),
    "setwise": KindSpec({
        **_COMMON,
        "scorer": Param("choice", "likelihood", choices=("likelihood", "generation", "attention")),
        "c": Param("int", 3, lo=1),
        "top_k": Param("int", 10, lo=1, null=True),
        "max_new_tokens": Param("int", 8, lo=1),
        "labels": Param("choice", "auto", choices=("auto", "letters", "numbers")),
        **_ATTENTION,
    }, _setwise_check, renamed=_RENAMED),
    "pointwise": KindSpec({
        **_COMMON,
        "scoring": Param("choice", "attention", choices=("attention",), doc="pointwise generation / likelihood are yesno / qlm"),
        "batch_size": Param("int", None, lo=1, null=True, doc="prompts per engine forward (null: 1 on CPU, 8 on GPU)"),
        **_ATTENTION,
        "attention": Param("any", {"kind": "icr"}, doc="attention method spec (default: ICR)"),
    }, _attention_check, renamed=_RENAMED),
}


def resolve_text(kind: str, params: Mapping | None, name: str | None = None) -> dict:
    """A text re-ranker's parameters, checked, with defaults (see ``TEXT_KINDS``)."""
    if kind not in TEXT_KINDS:
        raise ParamError(f"methods.{name or kind}.kind", f"unknown text re-ranker kind {kind!r} (known: {sorted(TEXT_KINDS)})")
    return resolve(kind, TEXT_KINDS[kind], params, name)
