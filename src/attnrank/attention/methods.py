"""Attention re-ranking methods as aggregations over the cached per-query scores (``QueryScores``).

A method is a config entry ``methods.<name>: {kind: <kind>, ...params}``; ``kind`` names a function registered
here with ``@register(kind)``: ``fn(s: QueryScores, params, artifacts) -> np.ndarray[k]`` (scores in the order of
``s.docids``, higher = more relevant). Adding a method is a function plus a config entry.

Kinds (layers and heads 0-based):

- ``icr``: all heads of all (kept) layers. ``calibration``: ``masked`` (default; ICR's masked N/A calibration,
  the cached ``masked_prefix`` row of the last kept layer), ``na`` (sum of raw - na), ``none`` (sum of raw).
- ``qrhead`` / ``qr-mass`` / ``core``: the top ``k_heads`` heads (default 16 / 16 / 8) of ``artifacts["heads"]`` (a
  table from :func:`attnrank.selection.heads.score_heads`) by ``qrhead_rank`` (QRHead: each head's own nDCG@10) /
  ``qr_mass_rank`` (attention mass on the gold document: the QR baseline CoRe compares against) / ``core_rank``.
  ``calibration``: ``masked`` (default; as all three reference repositories: the chosen heads' calibrated token
  scores summed, ICR's token mask, summed — needs per-head token scores in the cache), ``na`` (sum over the heads
  of raw - na), ``none`` (raw). ``core``'s ``temperature`` picks the detection temperature its heads are ranked at
  (the workflow builds one head table per temperature); a table ranked at another temperature is an error.
  The old kind ``qr`` is rejected with a message naming both.
- ``selective``: all heads of the layers of ``artifacts["window"]`` = (first_layer, last_layer), inclusive;
  ``calibration``: ``masked`` (default; masked calibration over the window's heads, as ielab/Selective-ICR — needs
  per-head token scores for windows not starting at layer 0), ``na``, ``none``.
- ``headrank``: ``attnrank.selection.headrank.aggregate(s, weights, layers=...)`` with
  ``artifacts["weights"]`` a ``headrank.TrainResult`` (its selected weights, layers and normalisation) or an
  [L, H] weight array.

Generic pruning params for every kind: ``max_layer`` (0-based index of the last kept layer; deeper layers are
removed, as if the model stopped there) or ``prune`` (fraction of final layers removed, CoRe's convention: keep
``floor(L * (1 - prune))`` layers; needs the model's layer count). For ``qr``/``core`` the top-k heads are chosen
among the kept layers — identical to detecting heads on the pruned model, since a layer's attention never
depends on deeper layers. For ``selective`` the window is clipped at the cut.

``required_layers`` gives the number of layers (from the bottom) a method needs, so the engine can stop there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import polars as pl

from ..selection import headrank as hr
from .artifacts import (
    DEFAULT_K_HEADS,
    DEFAULT_WIDTH,
    artifact as _artifact,
    headrank_weights,
    selected_heads,
    window_of,
)
from ..errors import InputError
from ..params import KindSpec, Param, ParamError, int_param, param_error, resolve
from ..progress import progress
from .scores import QueryScores, masked_group

Aggregation = Callable[[QueryScores, dict, dict], np.ndarray]

# What each kind declared at registration (``register``): its aggregation, parameters, the artifacts it needs, its
# rule for the layers it needs and what its run's sidecar records beyond the generic fields.
LayersRule = Callable[[dict, dict, "int | None"], int]
DescribeRule = Callable[[dict, dict, "int | None"], dict]
METHODS: dict[str, Aggregation] = {}
PARAMS: dict[str, KindSpec] = {}
NEEDS: dict[str, set[str]] = {}
LAYERS: dict[str, LayersRule] = {}
DESCRIBE: dict[str, DescribeRule] = {}

CALIBRATIONS = ("masked", "na", "none")
# Generic params of every kind; max_layer and prune together are an error (see layer_cut). order: the prompt
# order(s) of the attention pass (a string or a list; used by the workflow, checked there).
GENERIC_PARAMS = {
    "max_layer": Param("int", None, lo=0, null=True, doc="0-based index of the last kept layer"),
    "prune": Param("number", None, lo=0, hi=1, hi_open=True, null=True, doc="fraction of final layers removed"),
    "order": Param("any", None, null=True, doc="prompt order(s) of the attention pass: retrieval, reversed, shuffle"),
}
RENAMED = {
    "qr": "kind 'qr' was renamed: use 'qr-mass' (heads ranked by attention mass on the gold document, the QR "
          "baseline of the CoRe paper) or 'qrhead' (QRHead: heads ranked by their own nDCG@10)",
}


def _generic_check(p: dict, name: str) -> None:
    if p.get("max_layer") is not None and p.get("prune") is not None:
        raise ParamError(f"methods.{name}.prune", "give either max_layer or prune, not both")


def register(kind: str, params: dict[str, Param] | None = None, needs: set[str] = frozenset(),
             check: Callable[[dict, str], None] | None = None, layers: LayersRule | None = None,
             describe: DescribeRule | None = None) -> Callable[[Aggregation], Aggregation]:
    """Register an aggregation under ``kind`` with its own parameter declarations (name -> ``Param``; the
    generic ``max_layer`` / ``prune`` are added), the artifacts it needs, an optional cross-parameter check, its
    layers rule ``layers(params, artifacts, cut) -> layer count`` (called once its artifacts exist; default: all
    layers up to the cut) and ``describe(params, artifacts, cut) -> dict`` (what its sidecar records)."""

    def both(p: dict, name: str) -> None:
        _generic_check(p, name)
        if check is not None:
            check(p, name)

    def deco(fn: Aggregation) -> Aggregation:
        if kind in METHODS:
            raise ValueError(f"method kind '{kind}' registered twice")
        METHODS[kind] = fn
        PARAMS[kind] = KindSpec({**(params or {}), **GENERIC_PARAMS}, both)
        NEEDS[kind] = set(needs)
        if layers is not None:
            LAYERS[kind] = layers
        if describe is not None:
            DESCRIBE[kind] = describe
        return fn

    return deco


def needs(kind: str) -> set[str]:
    """Artifacts a kind needs: a subset of {"heads", "window", "weights"}."""
    _check_kind(kind, kind)
    return set(NEEDS[kind])


# ------------------------------------------------------------------------------------------------ helpers
_err = param_error


def _check_kind(kind: str, name: str) -> None:
    if kind in RENAMED:
        raise ParamError(f"methods.{name}.kind", RENAMED[kind])
    if kind not in METHODS:
        raise InputError(f"methods.{name}.kind: unknown method kind {kind!r} (known: {sorted(METHODS)})")


_int = int_param


def layer_cut(params: dict, kind: str, n_layers: int | None = None) -> int | None:
    """Number of layers kept by ``max_layer`` / ``prune`` (None: no cut)."""
    if params.get("max_layer") is not None and params.get("prune") is not None:
        raise _err(params, kind, "prune", "give either max_layer or prune, not both")
    if params.get("max_layer") is not None:
        cut = _int(params, kind, "max_layer", 0) + 1
        if n_layers is not None and cut > n_layers:
            raise _err(params, kind, "max_layer", f"layer {cut - 1} is beyond the model's {n_layers} layers (0..{n_layers - 1})")
        return cut
    if params.get("prune") is not None:
        p = params["prune"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise _err(params, kind, "prune", f"must be a fraction in [0, 1) (got {p!r})")
        if n_layers is None:
            raise _err(params, kind, "prune", "a pruning fraction needs the model's layer count (n_layers)")
        cut = math.floor(n_layers * (1 - p) + 1e-9)
        if cut < 1:
            raise _err(params, kind, "prune", f"pruning {p} of {n_layers} layers keeps none")
        return cut
    return None


def truncate(s: QueryScores, layers: int) -> QueryScores:
    """A view of ``s`` with only its first ``layers`` layers (what a model stopped there gives)."""
    if layers >= s.n_layers:
        return s
    return replace(s, raw=s.raw[:layers], na=s.na[:layers], masked_prefix=s.masked_prefix[:layers])


def _have_layers(s: QueryScores, need: int, params: dict, kind: str, key: str) -> None:
    if s.n_layers < need:
        raise _err(
            params, kind, key,
            f"needs {need} layers but the score cache of query '{s.qid}' has {s.n_layers} (the attention pass computed too few layers: engine.layers)",
        )


def _calibration(params: dict, kind: str) -> str:
    spec = PARAMS[kind].params["calibration"]
    c = params.get("calibration", spec.default)
    if not spec.ok(c):
        raise _err(params, kind, "calibration", f"expected {spec.expected()}, got {c!r}")
    return c


def _sum(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.float64).sum(axis=tuple(range(arr.ndim - 1)))


# ------------------------------------------------------------------------------------------------ methods
@register("icr", params={"calibration": Param("choice", "masked", choices=CALIBRATIONS)})
def icr(s: QueryScores, params: dict, artifacts: dict) -> np.ndarray:
    """ICR: all heads of the kept layers (default calibration: ICR's masked N/A calibration)."""
    cal = _calibration(params, "icr")
    layers = layer_cut(params, "icr")
    if layers is None:
        layers = s.n_layers
    _have_layers(s, layers, params, "icr", "max_layer")
    if cal == "masked":
        return s.masked_prefix[layers - 1].astype(np.float64)
    arr = s.raw[:layers].astype(np.float64) - (s.na[:layers] if cal == "na" else 0.0)
    return _sum(arr)


def _masked_group(s: QueryScores, params: dict, kind: str, layers, heads=None) -> np.ndarray:
    try:
        return masked_group(s, layers, heads)
    except ValueError as e:
        raise _err(params, kind, "calibration", f"'masked' (the default): {e}") from None


def _heads_method(kind: str):
    def fn(s: QueryScores, params: dict, artifacts: dict) -> np.ndarray:
        cal = _calibration(params, kind)
        chosen = selected_heads(kind, params, artifacts, layer_cut(params, kind))
        layers = np.array([l for l, _ in chosen])
        heads = np.array([h for _, h in chosen])
        if heads.max() >= s.n_heads:
            bad = chosen[int(np.argmax(heads))]
            raise _err(params, kind, "heads", f"head {bad} is out of range: the model has {s.n_heads} heads per layer")
        _have_layers(s, int(layers.max()) + 1, params, kind, "heads")
        if cal == "masked":
            return _masked_group(s, params, kind, layers, heads)
        arr = s.raw[layers, heads].astype(np.float64)
        if cal == "na":
            arr = arr - s.na[layers, heads]
        return arr.sum(axis=0)

    fn.__name__ = kind
    fn.__doc__ = f"{kind} heads: the top-k_heads heads of its ranking, masked calibration by default."
    return fn


def _heads_params(kind: str) -> dict:
    return {
        "k_heads": Param("int", DEFAULT_K_HEADS[kind], lo=1, doc="number of heads to aggregate"),
        "calibration": Param("choice", "masked", choices=CALIBRATIONS),
    }


def _heads_layers(kind: str) -> LayersRule:
    """A head kind needs the layers up to its deepest chosen head."""
    return lambda p, artifacts, cut: max(l for l, _ in selected_heads(kind, p, artifacts, cut)) + 1


def _heads_describe(kind: str) -> DescribeRule:
    def describe_heads(p: dict, artifacts: dict, cut: int | None) -> dict:
        out: dict = {"heads": [[int(l), int(h)] for l, h in selected_heads(kind, p, artifacts, cut)]}
        tab = artifacts["heads"]
        if kind == "core" and "temperature" in tab.columns:
            out["temperature"] = tab["temperature"][0]
        return out

    return describe_heads


HEAD_KINDS = ("qrhead", "qr-mass", "core")
for _kind in HEAD_KINDS:
    _extra = {"temperature": Param("number", None, lo=0, lo_open=True, null=True)} if _kind == "core" else {}
    register(_kind, params={**_heads_params(_kind), **_extra}, needs={"heads"}, layers=_heads_layers(_kind),
             describe=_heads_describe(_kind))(_heads_method(_kind))


def _selective_layers(p: dict, artifacts: dict, cut: int | None) -> int:
    """Selective-ICR needs the layers up to its window's last one (a cut below the window is an error)."""
    a, b = window_of(p, artifacts)
    if cut is not None and a > cut - 1:
        raise _err(p, "selective", "max_layer", f"cut at layer {cut - 1} removes the whole window ({a}, {b})")
    return b + 1


@register("selective", params={
    "calibration": Param("choice", "masked", choices=CALIBRATIONS),
    "width": Param("int", DEFAULT_WIDTH, lo=1, doc="layers in the window chosen from the layer profile"),
}, needs={"window"}, layers=_selective_layers, describe=lambda p, artifacts, cut: {"window": list(window_of(p, artifacts))})
def selective(s: QueryScores, params: dict, artifacts: dict) -> np.ndarray:
    """Selective-ICR: all heads of the layer window, clipped at the pruning cut."""
    cal = _calibration(params, "selective")
    a, b = window_of(params, artifacts)
    cut = layer_cut(params, "selective")
    if cut is not None:
        if a > cut - 1:
            raise _err(params, "selective", "max_layer", f"cut at layer {cut - 1} removes the whole window ({a}, {b})")
        b = min(b, cut - 1)
    if b >= s.n_layers:
        raise _err(params, "selective", "window", f"({a}, {b}) reaches beyond the {s.n_layers} layers of the score cache")
    if cal == "masked":
        if a == 0:
            return s.masked_prefix[b].astype(np.float64)  # the cached prefix row is exactly this window
        return _masked_group(s, params, "selective", np.arange(a, b + 1))
    arr = s.raw[a : b + 1].astype(np.float64) - (s.na[a : b + 1] if cal == "na" else 0.0)
    return _sum(arr)


# HeadRank's training hyper-parameters (attnrank.selection.headrank.HeadRankConfig fields; a test keeps the two in sync)
HEADRANK_PARAMS = {
    "lr", "steps", "entropy_weight", "reg_score_entropy", "reg_middle_var", "temperature", "margin",
    "n_train_queries", "seed", "select", "select_mass", "select_top_m", "normalise", "progress",
}


def _headrank_check(p: dict, name: str) -> None:
    """HeadRank's training options are checked by ``HeadRankConfig`` itself."""
    given = {k: v for k, v in p.items() if k in HEADRANK_PARAMS and v is not None}
    if given:
        try:
            hr.HeadRankConfig.from_dict(given, key=f"methods.{name}")
        except InputError as e:
            key, _, why = str(e).partition(": ")
            raise ParamError(key, why) from None


def _headrank_describe(p: dict, artifacts: dict, cut: int | None) -> dict:
    w = headrank_weights(artifacts["weights"], p)[0]
    return {"heads": [[int(l), int(h), float(w[l, h])] for l, h in zip(*np.nonzero(w))]}


@register("headrank", params={k: Param("any", null=True) for k in sorted(HEADRANK_PARAMS)}, needs={"weights"},
          check=_headrank_check, layers=lambda p, artifacts, cut: headrank_weights(artifacts["weights"], p)[1],
          describe=_headrank_describe)
def headrank(s: QueryScores, params: dict, artifacts: dict) -> np.ndarray:
    """HeadRank: learned head weights, ``attnrank.selection.headrank.aggregate`` over the layers they use (cut applied)."""
    w, layers, normalise = headrank_weights(_artifact(artifacts, "weights", params, "headrank"), params)
    cut = layer_cut(params, "headrank")
    if cut is not None:
        layers = min(layers, cut)
    _have_layers(s, layers, params, "headrank", "weights")
    kwargs = {"normalise": normalise} if normalise else {}
    return np.asarray(hr.aggregate(s, w, layers=layers, **kwargs), dtype=np.float64)


# ------------------------------------------------------------------------------------------------ API
def validate(kind: str, params: dict, name: str | None = None, n_layers: int | None = None) -> dict:
    """Check a method's kind and param names; returns params with the resolved cut as ``max_layer``.

    ``prune`` (a fraction) becomes ``max_layer`` when ``n_layers`` is known; the method name is kept in ``_name``
    for error messages. Unknown keys raise InputError naming ``methods.<name>.<key>``.
    """
    name = name or params.get("_name") or params.get("name") or kind
    _check_kind(kind, name)
    p = resolve(kind, PARAMS[kind], params, name)
    if p.get("prune") is not None and n_layers is not None:
        cut = layer_cut(p, kind, n_layers)
        del p["prune"]
        p["max_layer"] = cut - 1
    elif p.get("max_layer") is not None:
        layer_cut(p, kind, n_layers)
    return p


def required_layers(kind: str, params: dict, artifacts: dict | None, n_layers: int | None) -> int | None:
    """Layers (a count, from the bottom) the method needs; None = all layers / not known yet.

    The kind's registered layers rule answers once the artifacts it needs exist (head kinds: the deepest chosen
    head; ``selective``: the window's last layer; ``headrank``: the deepest selected head); before that, and for
    kinds without a rule (``icr``), all layers up to the cut. A cut (max_layer / prune) caps every answer.
    When ``n_layers`` is given, "all" is reported as ``n_layers`` instead of None. The engine runs all layers
    for None.
    """
    p = validate(kind, params, n_layers=n_layers)
    cut = layer_cut(p, kind, n_layers)
    full = cut if cut is not None else n_layers
    rule = LAYERS.get(kind)
    if rule is None:
        return full
    if any(not artifacts or artifacts.get(a) is None for a in NEEDS[kind]):
        return full if cut is not None else None
    need = rule(p, artifacts, cut)
    if cut is not None:
        need = min(need, cut)
    if n_layers is not None and need > n_layers:
        raise _err(p, kind, "window" if "window" in NEEDS[kind] else "heads", f"needs {need} layers but the model has {n_layers}")
    return need


def engine_layers(methods: dict[str, dict], artifacts: dict[str, dict] | None, n_layers: int | None) -> int | None:
    """The layers the engine must compute for a set of configured methods (name -> params with ``kind``):
    the deepest any of them needs; None when one needs all layers and ``n_layers`` is unknown."""
    layer_counts = []
    for name, params in methods.items():
        if "kind" not in params:
            raise InputError(f"methods.{name}.kind: required")
        d = required_layers(params["kind"], {**params, "name": name}, (artifacts or {}).get(name), n_layers)
        if d is None:
            return n_layers
        layer_counts.append(d)
    return max(layer_counts) if layer_counts else n_layers


def aggregate(s: QueryScores, kind: str, params: dict, artifacts: dict | None, name: str | None = None,
              n_layers: int | None = None) -> np.ndarray:
    """Scores [k] of one query by one method (params validated first)."""
    p = validate(kind, params, name, n_layers)
    for art in NEEDS[kind]:
        _artifact(artifacts, art, p, kind)
    out = np.asarray(METHODS[kind](s, p, artifacts or {}), dtype=np.float64)
    if out.shape != (len(s.docids),):
        raise RuntimeError(f"method '{p['_name']}' returned shape {out.shape} for {len(s.docids)} documents")
    return out


def rank(scores: list[QueryScores], method_kind: str, params: dict, artifacts: dict | None,
         name: str | None = None, n_layers: int | None = None) -> pl.DataFrame:
    """Run one method over all queries: a run frame (qid, docid, score), queries and documents in input order.

    Ties are broken by docid when the run is ranked (``attnrank.io.rank_run`` / ``write_trec``).
    """
    p = validate(method_kind, params, name, n_layers)
    qids, docids, vals = [], [], []
    for s in progress(scores, f"method {p['_name']}", unit="query"):
        v = aggregate(s, method_kind, p, artifacts, p["_name"], n_layers)
        qids += [s.qid] * len(s.docids)
        docids += list(s.docids)
        vals.append(v)
    score = np.concatenate(vals) if vals else np.zeros(0)
    return pl.DataFrame({"qid": qids, "docid": docids, "score": score},
                        schema={"qid": pl.String, "docid": pl.String, "score": pl.Float64})


def describe(kind: str, params: dict, artifacts: dict | None, name: str | None = None, n_layers: int | None = None) -> dict:
    """What a method used, written beside its run so a table row can be traced: layers computed, cut, and what
    its kind's describe rule adds (heads, window)."""
    p = validate(kind, params, name, n_layers)
    cut = layer_cut(p, kind, n_layers)
    out: dict = {"kind": kind, "layers_needed": required_layers(kind, params, artifacts, n_layers), "cut": cut}
    if kind in DESCRIBE:
        out.update(DESCRIBE[kind](p, artifacts or {}, cut))
    return out
