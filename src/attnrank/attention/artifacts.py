"""The artifacts an attention method aggregates with, read from the files the workflow gives it: the head table
(QR / CoRe heads), the layer profile (a Selective-ICR window of ``width`` layers) and the HeadRank weights, and
what a method takes from them (its heads, its window, its weights and the layers they need)."""

from __future__ import annotations

import numpy as np
import polars as pl

from ..selection import headrank as hr
from ..selection.heads import KIND_COLUMN, top_heads
from ..selection.layers import select_window
from ..params import int_param as _int, param_error as _err

DEFAULT_K_HEADS = {"qrhead": 16, "qr-mass": 16, "core": 8}
DEFAULT_WIDTH = 4  # Selective-ICR: layers in the window chosen from the layer profile


def artifact(artifacts: dict | None, key: str, params: dict, kind: str):
    if not artifacts or artifacts.get(key) is None:
        raise _err(params, kind, key, f"method kind '{kind}' needs the '{key}' artifact, none given")
    return artifacts[key]


def selected_heads(kind: str, params: dict, artifacts: dict | None, cut: int | None) -> list[tuple[int, int]]:
    """The (layer, head) pairs a head method uses: top ``k_heads`` by its ranking among layers < ``cut``."""
    heads = artifact(artifacts, "heads", params, kind)
    k = _int({**params, "k_heads": params.get("k_heads", DEFAULT_K_HEADS[kind])}, kind, "k_heads", 1)
    by = KIND_COLUMN[kind]
    col = f"{by}_rank"
    if not isinstance(heads, pl.DataFrame) or not {"layer", "head", col} <= set(heads.columns):
        raise _err(params, kind, "heads", f"artifact must be a head table with columns layer, head, {col}")
    t = params.get("temperature")
    if kind == "core" and t is not None and "temperature" in heads.columns:
        have = heads["temperature"].unique().to_list()
        if not all(h is not None and abs(h - float(t)) <= 1e-12 * max(1.0, abs(float(t))) for h in have):
            raise _err(params, kind, "temperature", f"{t} asked, but the head table was ranked at temperature {have}")
    chosen = top_heads(heads, by, k, None if cut is None else cut - 1)
    if len(chosen) < k:
        where = "" if cut is None else f" in layers 0..{cut - 1}"
        raise _err(params, kind, "k_heads", f"{k} heads asked, only {len(chosen)} scored{where}")
    return chosen


def window_of(params: dict, artifacts: dict | None, kind: str = "selective") -> tuple[int, int]:
    """The (first_layer, last_layer) window artifact: a pair or a dict with first_layer/last_layer."""
    w = artifact(artifacts, "window", params, kind)
    if isinstance(w, dict):
        w = (w.get("first_layer"), w.get("last_layer"))
    try:
        a, b = (int(x) for x in w)
    except (TypeError, ValueError):
        raise _err(params, kind, "window", f"must be (first_layer, last_layer) (got {w!r})") from None
    if a < 0 or b < a:
        raise _err(params, kind, "window", f"({a}, {b}) is not a window of layers (0 <= first <= last)")
    return a, b


def headrank_weights(weights, params: dict | None = None) -> tuple[np.ndarray, int, str | None]:
    """(weights [L, H], layers needed, normalisation) of a HeadRank artifact: a ``headrank.TrainResult`` (its
    selected, renormalised weights, its layers and normalisation) or a plain [L, H] array (layers = deepest layer
    with a non-zero weight + 1; the aggregate's default normalisation)."""
    params = params or {}
    if hasattr(weights, "selected_weights"):
        return np.asarray(weights.selected_weights(), np.float64), int(weights.layers), getattr(weights, "normalise", None)
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or not np.isfinite(w).all():
        raise _err(params, "headrank", "weights", f"must be a finite [layers, heads] array (got shape {w.shape})")
    rows = np.nonzero(np.abs(w).sum(axis=1) > 0)[0]
    if rows.size == 0:
        raise _err(params, "headrank", "weights", "all head weights are zero")
    return w, int(rows.max()) + 1, None


def load_artifacts(spec: dict, inputs: dict, name: str) -> dict:
    """The artifacts an attention method aggregates with, from its input files (keys as in the workflow:
    ``heads`` parquet, layer ``profile`` parquet -> window of ``spec['width']``, HeadRank ``weights``)."""
    artifacts: dict = {}
    if "heads" in inputs:
        artifacts["heads"] = pl.read_parquet(inputs["heads"])
    if "profile" in inputs:
        width = spec.get("width", DEFAULT_WIDTH)
        artifacts["window"] = select_window(pl.read_parquet(inputs["profile"]), width, key=f"methods.{name}.width")
    if "weights" in inputs:
        artifacts["weights"] = hr.load_weights(inputs["weights"])
    return artifacts
