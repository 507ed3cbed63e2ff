"""The text re-ranker kinds and their parameters (RankGPT, yes/no, QLM, setwise, pointwise attention), declared
once with ``attnrank.params``: the config validator (planning time, no torch) and the re-rankers (run time) check
a method's parameters with the same declarations. A text framework scored by attention names an attention method
spec (``attention: {kind: icr}``), checked against ``attnrank.attention.methods``."""

from __future__ import annotations

from collections.abc import Mapping

from ..attention import methods
from ..errors import InputError
from ..params import KindSpec, Param, ParamError, resolve
from ..attention.prompts import RENAMED as _RENAMED  # old spellings of the truncation keys: rejected naming the new one


# text kinds with a choice of mechanism: the config key that chooses it and its default
MECHANISM_KEY = {"pointwise": ("scoring", "attention"), "rankgpt": ("scoring", "generation"), "setwise": ("scorer", "likelihood")}


def text_attention_spec(kind: str, spec: dict, name: str | None = None) -> dict | None:
    """The attention method spec of a text method config entry that scores by attention (checked against
    ``attnrank.attention.methods``: kind and parameter names), else None."""
    if kind not in MECHANISM_KEY:
        return None
    key, default = MECHANISM_KEY[kind]
    if spec.get(key, default) != "attention":
        return None
    what = name or kind
    att = attention_spec({"attention": spec.get("attention", TEXT_KINDS[kind].params["attention"].default)}, what)
    methods.validate(att["kind"], {k: v for k, v in att.items() if k != "kind"}, f"{what}.attention")
    return att


def attention_spec(params: dict, what: str) -> dict:
    """The nested attention method spec (``params['attention']``) checked for shape and kind."""
    spec = params.get("attention")
    if not isinstance(spec, dict) or "kind" not in spec:
        raise InputError(f"methods.{what}.attention: scoring by attention needs a method spec such as {{kind: icr}} (got {spec!r})")
    if spec["kind"] not in methods.METHODS:
        raise InputError(f"methods.{what}.attention.kind: unknown attention kind {spec['kind']!r} (known: {sorted(methods.METHODS)})")
    return spec


_COMMON = {
    "max_doc_tokens": Param("int", 300, lo=1, null=True, doc="per-document truncation in tokens (as the attention prompt)"),
    "max_doc_words": Param("int", None, lo=1, null=True, doc="per-document truncation in words"),
    "use_chat_template": Param("bool", True),
}


def _rankgpt_check(p: dict, name: str) -> None:
    if p["stride"] > p["window"]:
        raise ParamError(f"methods.{name}.stride", f"{p['stride']} is larger than window {p['window']} (documents would be skipped)")
    _attention_check(p, name)


def _setwise_check(p: dict, name: str) -> None:
    if p["labels"] == "letters" and p["c"] + 1 > 26:
        raise ParamError(f"methods.{name}.c", f"{p['c']} children need more than 26 letter labels")
    _attention_check(p, name, "scorer")


def _attention_check(p: dict, name: str, key: str = "scoring") -> None:
    """Scoring by attention needs a valid nested attention method spec (``attnrank.text.attnscoring``)."""
    if p[key] == "attention":
        att = attention_spec(p, name)
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
