"""Layer profiling (the 'bell curve' of Selective-ICR) and the choice of Selective-ICR's layer window.

A single layer's score of document j is ICR's masked N/A calibration over all heads of that layer
(``calibration="masked"``, the default, as ielab/Selective-ICR profiles layers with its ICR scorer restricted to one
layer): the layer's calibrated token scores summed over heads, tokens <= mean - 2·std inside the document dropped,
the rest summed (``QueryScores.masked_layer``). ``"na"``: the unmasked ``sum_h (raw - na)[l, h, j]``; ``"none"``:
raw only. Layers are 0-based.

Window selection (``select_window``): among all contiguous windows [a, a + w - 1] of width w inside the model, take
the one with the highest mean per-layer metric; windows whose mean is within 1e-12 of the best tie, and the tie goes
to the window whose centre is nearest the centre of the network ((L - 1) / 2), then to the shallower window.
Profile on the tuning split (a held-out split, disjoint from the evaluation queries, which it never sees).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl
from ..progress import progress

from ..errors import InputError
from ..io import save_figure
from ..attention.scores import QueryScores

log = logging.getLogger(__name__)

TIE_TOL = 1e-12
SEP = "\x1f"  # joins query id and layer inside the single evaluation run


def layer_scores(s: QueryScores, calibration: str = "masked") -> np.ndarray:
    """[L, k] per-layer document scores (all heads of each layer)."""
    if calibration == "masked":
        if s.masked_layer is None:
            raise InputError(f"layers.calibration: 'masked' needs per-layer masked scores, query '{s.qid}' has none (old cache)")
        return s.masked_layer.astype(np.float64)
    if calibration == "na":
        return (s.raw.astype(np.float64) - s.na).sum(axis=1)
    if calibration == "none":
        return s.raw.astype(np.float64).sum(axis=1)
    raise InputError(f"layers.calibration: must be 'masked', 'na' or 'none' (got {calibration!r})")


def profile_layers(
    scores: list[QueryScores], qrels: pl.DataFrame, metric: str = "ndcg@10", calibration: str = "masked"
) -> pl.DataFrame:
    """Mean ``metric`` of each single layer over the profiled queries: columns (layer, <metric>).

    Only the qrels of the profiled queries count; queries without judgements are logged and left out.
    """
    from ..evaluation.metrics import per_query

    if not scores:
        raise InputError("layers: no profiling queries")
    n_layers = scores[0].n_layers
    for s in scores:
        if s.n_layers != n_layers:
            raise InputError(f"layers: query '{s.qid}' has {s.n_layers} layers, '{scores[0].qid}' has {n_layers}")
    qids = [s.qid for s in scores]
    judged = qrels.filter(pl.col("qid").cast(pl.String).is_in(qids))
    unjudged = sorted(set(qids) - set(judged["qid"].cast(pl.String).unique()))
    if unjudged:
        log.warning("layers: %d profiling quer(y/ies) without qrels left out: %s", len(unjudged), unjudged[:5])
    if judged.height == 0:
        raise InputError("layers: none of the profiling queries has qrels (wrong split?)")
    # one ranx call for all layers: query ids are "<qid><SEP><layer>", qrels repeated per layer
    runs = []
    for s in progress(scores, "layer scores", unit="query"):
        ls = layer_scores(s, calibration)
        k = len(s.docids)
        runs.append(pl.DataFrame({
            "qid": [f"{s.qid}{SEP}{l}" for l in range(n_layers) for _ in range(k)],
            "docid": s.docids * n_layers,
            "score": ls.ravel(),
        }))
    qrels_l = pl.concat([
        judged.select(qid=pl.col("qid").cast(pl.String) + f"{SEP}{l}", docid=pl.col("docid").cast(pl.String), relevance="relevance")
        for l in range(n_layers)
    ])
    pq = per_query(qrels_l, pl.concat(runs), (metric,))
    per_layer = (
        pq.with_columns(layer=pl.col("qid").str.split(SEP).list.last().cast(pl.Int32))
        .group_by("layer").agg(pl.col("value").mean()).sort("layer")
    )
    values = dict(zip(per_layer["layer"].to_list(), per_layer["value"].to_list()))
    values = [values.get(l, 0.0) for l in range(n_layers)]
    return pl.DataFrame({"layer": np.arange(n_layers), metric: values}, schema={"layer": pl.Int32, metric: pl.Float64})


def select_window(profile: pl.DataFrame, width: int, metric: str | None = None, key: str = "selective.width") -> tuple[int, int]:
    """(first_layer, last_layer), 0-based inclusive: the best contiguous window of ``width`` layers (module docstring)."""
    metric = metric or next((c for c in profile.columns if c != "layer"), None)
    if metric is None or metric not in profile.columns or "layer" not in profile.columns:
        raise InputError(f"layers: profile needs columns 'layer' and a metric (has {profile.columns})")
    prof = profile.sort("layer")
    n_layers = prof.height
    if prof["layer"].to_list() != list(range(n_layers)):
        raise InputError(f"layers: profile layers must be 0..{n_layers - 1} without gaps")
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or width < 1:
        raise InputError(f"{key}: window width must be an integer >= 1 (got {width!r})")
    if width > n_layers:
        raise InputError(f"{key}: window width {width} is wider than the model ({n_layers} layers)")
    v = prof[metric].to_numpy().astype(np.float64)
    means = np.convolve(v, np.ones(width), mode="valid") / width  # means[a] = mean of v[a : a + width]
    best = means.max()
    centre = (n_layers - 1) / 2
    cands = [a for a in range(means.size) if means[a] >= best - TIE_TOL]
    a = min(cands, key=lambda a: (abs(a + (width - 1) / 2 - centre), a))
    return int(a), int(a + width - 1)


def plot_profile(
    profile: pl.DataFrame, path: str | Path, window: tuple[int, int] | None = None, title: str | None = None,
    windows: dict[str, tuple[int, int]] | None = None,
) -> None:
    """Line plot of the per-layer metric (the 'bell curve') with integer layer ticks; the selected window (or each
    named method's window in ``windows``) shaded. Written atomically, a PDF beside a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator


    metric = next(c for c in profile.columns if c != "layer")
    prof = profile.sort("layer")
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.plot(prof["layer"].to_numpy(), prof[metric].to_numpy(), marker="o", ms=3)
    shaded = dict(windows or {})
    if window is not None:
        shaded.setdefault("window", window)
    for i, (name, (a, b)) in enumerate(shaded.items()):
        ax.axvspan(a - 0.5, b + 0.5, alpha=0.2, color=f"C{(i + 1) % 10}", label=f"{name}: layers {a}-{b}")
    if shaded:
        ax.legend(fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (0-based)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} of each single layer")
    ax.grid(alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)


def profile_job(scores_manifest: str, qrels_path: str, metric: str, out_path: str) -> dict:
    """The ``layer_profile`` job: the per-layer profile of the tuning split's score cache. Returns counts."""
    from ..io import write_parquet
    from ..attention.scorecache import load_scores

    scores = load_scores(Path(scores_manifest).parent)
    profile = profile_layers(scores, pl.read_parquet(qrels_path), metric=metric)
    write_parquet(profile, out_path)
    return {"queries": len(scores), "layers": profile.height}
