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

from ..io import save_figure
from .scores import QueryScores

log = logging.getLogger(__name__)

METRIC = "position_bias"


def spearman(scores: np.ndarray, positions: np.ndarray) -> float | None:
    """Spearman's rho of scores vs prompt slots (average ranks for ties); None when either side is constant."""
    a, b = np.asarray(scores, np.float64), np.asarray(positions, np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    # Pearson of the average ranks: scipy.stats.spearmanr's value (tests/test_protocols.py), without importing
    # scipy.stats (~3 s in every re-ranking job)
    ra, rb = (pl.Series(x).rank("average").to_numpy().astype(np.float64) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


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


ORDERS = ("retrieval", "reversed", "shuffle")


def plot(results: pl.DataFrame, path: str | Path, *, order=None, labels: dict[str, str] | None = None,
         prompt_order: str | None = None) -> None:
    """Bars of the position bias of every attention run (results.csv rows with metric position_bias), one bar per
    prompt order (run labels ``method@order``; a grid with one order has plain method names, ``prompt_order``
    names it), with the 95% confidence interval of the mean over queries. A PDF is written beside a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..evaluation.tables import TableOrder, display_name

    order = order or TableOrder()
    df = results.filter(pl.col("metric") == METRIC)
    rows = {}
    for r in df.iter_rows(named=True):
        base, _, o = r["method"].partition("@")
        rows[(r["dataset"], r["model"], base, o or prompt_order or "configured order")] = r
    rank = {k: {n: i for i, n in enumerate(TableOrder.sort({key[j] for key in rows}, pref))}
            for j, (k, pref) in enumerate((("dataset", order.datasets), ("model", order.models), ("method", order.methods)))}
    groups = sorted({k[:3] for k in rows}, key=lambda g: (rank["dataset"][g[0]], rank["model"][g[1]], rank["method"][g[2]]))
    orders = sorted({k[3] for k in rows}, key=lambda o: (ORDERS.index(o) if o in ORDERS else len(ORDERS), o))
    several = {j: len({g[j] for g in groups}) > 1 for j in (0, 1)}
    fig, ax = plt.subplots(figsize=(max(5.5, 0.5 * max(len(groups), 1) * max(len(orders), 1) + 2.5), 4.0))
    if rows:
        width = 0.8 / len(orders)
        for i, o in enumerate(orders):
            xs, val, err = [], [], [[], []]
            for x, g in enumerate(groups):
                r = rows.get((*g, o))
                if r is None:
                    continue
                v = r["value"]
                lo, hi = r.get("ci_low"), r.get("ci_high")
                xs.append(x - 0.4 + width * (i + 0.5))
                val.append(v)
                err[0].append(0.0 if lo is None else v - lo)
                err[1].append(0.0 if hi is None else hi - v)
            ax.bar(xs, val, width=width, yerr=err, capsize=2, ecolor="0.2", color=f"C{i}", label=f"{o} order")
        names = []
        for d, m, meth in groups:
            extra = [display_name(labels, n) for j, n in ((1, m), (0, d)) if several[j]]
            names.append("\n".join([display_name(labels, meth)] + extra))
        ax.set_xticks(range(len(groups)), names, rotation=45 if len(groups) > 6 else 0,
                      ha="right" if len(groups) > 6 else "center", fontsize=8)
        ax.legend(fontsize=8, title="prompt", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no attention runs", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("Spearman(score, prompt slot)")
    ax.set_ylim(-1.05, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Position bias, mean over queries with 95% CI\n(> 0: documents nearer the query score higher)", fontsize=10)
    save_figure(fig, path)
    plt.close(fig)
