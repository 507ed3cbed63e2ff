"""Retrieval-head scoring on a detection set: QR score (Zhang et al. EMNLP'25) and CoRe score (Tran et al. 2025).

Both use the *raw* (uncalibrated) document scores ``QueryScores.raw[l, h, j]``: the attention mass from the query
span to document j, averaged over query tokens, as both reference implementations do (calibration with the N/A
query is applied only when re-ranking with the selected heads). For a sample with positive document j*:

- QR(l, h)   = mean over samples of raw[l, h, j*]
- CoRe(l, h) = mean over samples of softmax_j(raw[l, h, :] / t)[j*], the softmax over the positive and the
  sample's negatives (all other documents of the sample) with temperature t.

A head that spreads much attention over every document has a high QR score but a low CoRe score; a head with
little total mass concentrated on the positive has the opposite (CoRe paper, Proposition 4.2).
Layers and heads are 0-based. Ranks: 1 = best, ties broken by (layer, head) ascending.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import polars as pl

from .errors import InputError
from .io import atomic_path
from .progress import progress
from .scores import QueryScores

HEADS_SCHEMA = {
    "layer": pl.Int32, "head": pl.Int32, "qr": pl.Float64, "core": pl.Float64, "qr_rank": pl.Int32, "core_rank": pl.Int32,
}


def core_softmax(raw: np.ndarray, positive: int, temperature: float) -> np.ndarray:
    """[L, H] softmax probability of document ``positive`` over the last axis of ``raw`` [L, H, k] at ``temperature``."""
    z = raw.astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e[..., positive] / e.sum(axis=-1)


def score_heads(samples: Iterable[QueryScores], labels: dict[str, str], temperature: float) -> pl.DataFrame:
    """QR and CoRe scores of every (layer, head), averaged over the samples, with ranks (see module docstring).

    ``labels`` maps each sample id (``QueryScores.qid``) to the docid of its positive. A sample without a label or
    whose positive is not among its documents, mixed score shapes, or a temperature <= 0 raise InputError.
    """
    if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
        raise InputError(f"heads.temperature: must be a number > 0 (got {temperature!r})")
    qr_sum = core_sum = None
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
        if qr_sum is None:
            shape = s.raw.shape[:2]
            qr_sum = np.zeros(shape, np.float64)
            core_sum = np.zeros(shape, np.float64)
        elif s.raw.shape[:2] != shape:
            raise InputError(f"heads: sample '{s.qid}' has {s.raw.shape[:2]} layers x heads, earlier samples {shape}")
        qr_sum += s.raw[:, :, j]
        core_sum += core_softmax(s.raw, j, temperature)
        n += 1
    if n == 0:
        raise InputError("heads: no detection samples to score")
    return head_table(qr_sum / n, core_sum / n)


def head_table(qr: np.ndarray, core: np.ndarray) -> pl.DataFrame:
    """The ranked table (layer, head, qr, core, qr_rank, core_rank) of two [L, H] score arrays."""
    n_layers, n_heads = qr.shape
    layer, head = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")
    layer, head = layer.ravel(), head.ravel()
    out = {"layer": layer, "head": head, "qr": qr.ravel(), "core": core.ravel()}
    for col in ("qr", "core"):
        # lexsort: last key is primary -> score descending, then layer, then head
        order = np.lexsort((head, layer, -out[col]))
        ranks = np.empty(order.size, np.int64)
        ranks[order] = np.arange(1, order.size + 1)
        out[f"{col}_rank"] = ranks
    return pl.DataFrame(out).cast(HEADS_SCHEMA)


def top_heads(heads: pl.DataFrame, by: str, k: int, max_layer: int | None = None) -> list[tuple[int, int]]:
    """The ``k`` best (layer, head) pairs by ``by`` in {"qr", "core"}, restricted to layers <= ``max_layer``."""
    df = heads if max_layer is None else heads.filter(pl.col("layer") <= max_layer)
    df = df.sort([f"{by}_rank", "layer", "head"]).head(k)
    return list(zip(df["layer"].to_list(), df["head"].to_list()))


def plot_heatmap(df: pl.DataFrame, column: str, path: str | Path, title: str | None = None) -> None:
    """Heat map (layers x heads) of one score column of a head table, written atomically (format from suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if column not in df.columns:
        raise InputError(f"heads: no column '{column}' to plot (have {df.columns})")
    n_layers, n_heads = int(df["layer"].max()) + 1, int(df["head"].max()) + 1
    grid = np.full((n_layers, n_heads), np.nan)
    grid[df["layer"].to_numpy(), df["head"].to_numpy()] = df[column].to_numpy()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * n_heads + 2), max(3.0, 0.2 * n_layers + 1.5)))
    im = ax.imshow(grid, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax, label=column)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(title or f"{column} score per head")
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    plt.close(fig)
