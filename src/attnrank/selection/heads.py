"""Retrieval-head scoring on a detection set: attention-mass QR, QRHead (Zhang et al. EMNLP'25) and CoRe (Tran et al.).

For a sample with positive document j*:

- ``qr_mass``(l, h) = mean over samples of raw[l, h, j*]: the attention mass on the gold document, uncalibrated —
  the QR baseline as CoRe re-implemented it (linhhtran/CoRe-Reranking, experiments/src/qr_detector.py).
- ``qrhead``(l, h) = mean over samples of nDCG@10 of the ranking by that head's *own* masked, N/A-calibrated score
  ``masked_head[l, h, :]`` (princeton-pli/QRHead: each head scored alone, ICR's token mask, top heads by nDCG@10).
  With one positive, nDCG@10 = 1 / log2(1 + rank) for rank <= 10, else 0; ties ranked by docid.
- ``core``(l, h) = mean over samples of softmax_j(raw[l, h, :] / t)[j*], the softmax over the positive and the
  sample's negatives at temperature t (CoRe, experiments/src/core_detector.py: raw, uncalibrated mass).

A head that spreads much attention over every document has a high ``qr_mass`` but a low CoRe score (CoRe paper,
Proposition 4.2). Layers and heads are 0-based. Ranks: 1 = best, ties broken by (layer, head) ascending.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import InputError
from ..io import save_figure
from ..progress import progress
from ..attention.scores import QueryScores

SCORES = ("qr_mass", "qrhead", "core")  # score columns; each has a <col>_rank column
KIND_COLUMN = {"qr-mass": "qr_mass", "qrhead": "qrhead", "core": "core"}  # method kind -> ranking column
HEADS_SCHEMA = {
    "layer": pl.Int32, "head": pl.Int32, **{c: pl.Float64 for c in SCORES}, **{f"{c}_rank": pl.Int32 for c in SCORES},
    "temperature": pl.Float64,
}
NDCG_AT = 10


def core_softmax(raw: np.ndarray, positive: int, temperature: float) -> np.ndarray:
    """[L, H] softmax probability of document ``positive`` over the last axis of ``raw`` [L, H, k] at ``temperature``."""
    z = raw.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e[..., positive] / e.sum(axis=-1)


def head_ndcg(scores: np.ndarray, positive: int, docids: list[str], at: int = NDCG_AT) -> np.ndarray:
    """[...] nDCG@``at`` of ranking by ``scores`` [..., k] with one relevant document ``positive``; ties by docid."""
    sc = np.asarray(scores, dtype=np.float64)
    p = sc[..., positive : positive + 1]
    before = np.array([d < docids[positive] for d in docids])
    rank = 1 + (sc > p).sum(-1) + ((sc == p) & before).sum(-1)
    return np.where(rank <= at, 1.0 / np.log2(rank + 1.0), 0.0)


def score_heads(samples: Iterable[QueryScores], labels: dict[str, str], temperature: float) -> pl.DataFrame:
    """qr_mass, qrhead and CoRe scores of every (layer, head), averaged over the samples, with ranks (module docstring).

    ``labels`` maps each sample id (``QueryScores.qid``) to the docid of its positive. A sample without a label or
    whose positive is not among its documents, a cache without per-head masked scores, mixed score shapes, or a
    temperature <= 0 raise InputError.
    """
    if isinstance(temperature, bool) or not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
        raise InputError(f"heads.temperature: must be a number > 0 (got {temperature!r})")
    sums: dict[str, np.ndarray] = {}
    shape = None
    n = 0
    for s in progress(samples, "head scores", unit="sample"):
        if s.qid not in labels:
            raise InputError(f"heads: sample '{s.qid}' has no positive in the labels (wrong detection set?)")
        try:
            j = s.docids.index(labels[s.qid])
        except ValueError:
            raise InputError(f"heads: positive '{labels[s.qid]}' of sample '{s.qid}' is not among its documents") from None
        if s.raw.shape[-1] < 2:
            raise InputError(f"heads: sample '{s.qid}' has no negative (CoRe needs at least one)")
        if s.masked_head is None:
            raise InputError(f"heads: sample '{s.qid}' has no per-head masked scores (score cache of an older format; recompute it)")
        if shape is None:
            shape = s.raw.shape[:2]
            sums = {c: np.zeros(shape, np.float64) for c in SCORES}
        elif s.raw.shape[:2] != shape:
            raise InputError(f"heads: sample '{s.qid}' has {s.raw.shape[:2]} layers x heads, earlier samples {shape}")
        sums["qr_mass"] += s.raw[:, :, j]
        sums["qrhead"] += head_ndcg(s.masked_head, j, s.docids)
        sums["core"] += core_softmax(s.raw, j, temperature)
        n += 1
    if n == 0:
        raise InputError("heads: no detection samples to score")
    return head_table({c: v / n for c, v in sums.items()}, temperature)


def head_table(scores: dict[str, np.ndarray], temperature: float | None = None) -> pl.DataFrame:
    """The ranked table (layer, head, <score>, <score>_rank for qr_mass, qrhead, core; temperature) of [L, H] arrays."""
    missing = [c for c in SCORES if c not in scores]
    if missing:
        raise ValueError(f"head_table: missing score arrays {missing}")
    n_layers, n_heads = np.asarray(scores[SCORES[0]]).shape
    layer, head = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")
    layer, head = layer.ravel(), head.ravel()
    out = {"layer": layer, "head": head, **{c: np.asarray(scores[c], np.float64).ravel() for c in SCORES}}
    for col in SCORES:
        # lexsort: last key is primary -> score descending, then layer, then head
        order = np.lexsort((head, layer, -out[col]))
        ranks = np.empty(order.size, np.int64)
        ranks[order] = np.arange(1, order.size + 1)
        out[f"{col}_rank"] = ranks
    out["temperature"] = np.full(layer.size, np.nan if temperature is None else float(temperature))
    return pl.DataFrame(out).select(list(HEADS_SCHEMA)).cast(HEADS_SCHEMA)


def top_heads(heads: pl.DataFrame, by: str, k: int, max_layer: int | None = None) -> list[tuple[int, int]]:
    """The ``k`` best (layer, head) pairs by column ``by`` (qr_mass, qrhead, core), restricted to layers <= ``max_layer``."""
    df = heads if max_layer is None else heads.filter(pl.col("layer") <= max_layer)
    df = df.sort([f"{by}_rank", "layer", "head"]).head(k)
    return list(zip(df["layer"].to_list(), df["head"].to_list()))


def plot_heatmap(df: pl.DataFrame, column: str, path: str | Path, title: str | None = None,
                 marks: dict[str, list[tuple[int, int]]] | None = None) -> None:
    """Heat map (layers x heads) of one score column of a head table, with integer ticks; ``marks`` outlines the
    heads each named method uses ({method: [(layer, head), ...]}). Written atomically, a PDF beside a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import MaxNLocator


    if column not in df.columns:
        raise InputError(f"heads: no column '{column}' to plot (have {df.columns})")
    n_layers, n_heads = int(df["layer"].max()) + 1, int(df["head"].max()) + 1
    grid = np.full((n_layers, n_heads), np.nan)
    grid[df["layer"].to_numpy(), df["head"].to_numpy()] = df[column].to_numpy()
    fig, ax = plt.subplots(figsize=(max(4.5, 0.3 * n_heads + 2.5), max(3.0, 0.22 * n_layers + 1.5)))
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label=column)
    for i, (method, heads) in enumerate((marks or {}).items()):
        color = ("red", "magenta", "orange", "cyan")[i % 4]
        for j, (layer, head) in enumerate(heads):
            ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor=color, linewidth=1.6,
                                   label=f"{method} ({len(heads)} head{'s' * (len(heads) != 1)})" if j == 0 else None))
    if marks:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=min(3, len(marks)), fontsize=8, frameon=False)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("head")
    ax.set_ylabel("layer (0-based)")
    ax.set_title(title or f"{column} score per head")
    save_figure(fig, path)
    plt.close(fig)


def provenance(model: str, order: str, temperature: float, detection: dict, prompt: dict, manifest: dict,
               n_samples: int) -> dict:
    """Where a head table comes from (written beside it): model, the detection set's spec and sample count, the
    prompt order and settings the detection prompts were built with, the CoRe temperature, the score cache hash."""
    return {
        "model": model, "order": order, "core_temperature": float(temperature), "detection": detection,
        "n_samples": int(n_samples), "prompt": prompt, "score_cache": manifest.get("config_hash"),
        "rankings": {"qr_mass": "mean raw attention mass on the positive", "qrhead": f"mean nDCG@{NDCG_AT} of each head's masked calibrated score",
                     "core": "mean softmax probability of the positive over raw mass / temperature"},
    }
