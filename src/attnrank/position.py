"""Position bias of a ranking: how much a document's score follows its slot in the prompt.

Per query: Spearman's rank correlation between the documents' scores and their prompt slots (0 = first, farthest
from the query; k - 1 = last, nearest the query). Positive: documents nearer the query score higher (recency
bias); negative: primacy bias; 0: the score ignores the position. A query whose scores (or slots) are all equal has
no correlation and is left out. The run's statistic is the mean over queries; evaluation stores the per-query
values as the pseudo-metric ``position_bias``, so results.csv reports it per run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import spearmanr

from .io import atomic_path
from .scores import QueryScores

log = logging.getLogger(__name__)

METRIC = "position_bias"


def spearman(scores: np.ndarray, positions: np.ndarray) -> float | None:
    """Spearman's rho of scores vs prompt slots (average ranks for ties); None when either side is constant."""
    a, b = np.asarray(scores, np.float64), np.asarray(positions, np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def position_bias(scores: Iterable[QueryScores], ranking: Callable[[QueryScores], np.ndarray]) -> dict[str, float]:
    """qid -> Spearman(score, prompt slot) of one method's scores (queries without a defined value left out)."""
    out = {}
    for s in scores:
        rho = spearman(ranking(s), s.positions)
        if rho is not None:
            out[s.qid] = rho
    return out


def per_query_rows(values: dict[str, float]) -> pl.DataFrame:
    """The per-query frame (qid, metric, value) of a run's position bias, in the evaluation's shape."""
    return pl.DataFrame(
        {"qid": list(values), "metric": [METRIC] * len(values), "value": list(values.values())},
        schema={"qid": pl.String, "metric": pl.String, "value": pl.Float64},
    )


def plot(results: pl.DataFrame, path: str | Path) -> None:
    """Bar chart of the position bias of every attention run (results.csv rows with metric position_bias)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = results.filter(pl.col("metric") == METRIC).sort(["dataset", "model", "method"])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * max(df.height, 1) + 2), 3.5))
    if df.height:
        labels = [f"{d} · {m} · {x}" for d, m, x in zip(df["dataset"], df["model"], df["method"])]
        ax.bar(range(df.height), df["value"].to_numpy(), color="tab:blue")
        ax.set_xticks(range(df.height), labels, rotation=75, ha="right", fontsize=7)
    else:
        ax.text(0.5, 0.5, "no attention runs", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("Spearman(score, prompt slot)")
    ax.set_title("position bias (> 0: documents nearer the query score higher)")
    fmt = Path(path).suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight")
    plt.close(fig)
