"""Per-query metrics for any run against a dataset's qrels: ranx's definitions, computed in NumPy for the common
metrics and by ranx itself for the rest.

ranx JIT-compiles with numba: ~45 s once per machine (kept in ``NUMBA_CACHE_DIR``, set here if unset) and ~10 s
of import and typed-container compilation in every process that evaluates. The metrics in :data:`FAST_METRICS`
re-implement ranx's kernels (``ranx/metrics/*.py``: relevant = grade >= 1, linear-gain nDCG with IDCG from the
sorted qrels, MAP / recall over all relevant documents, ``k = 0`` or ``k`` beyond the run = the whole run) line by
line, in the kernels' summation order; ``tests/test_metrics.py`` checks them against ranx on random graded runs.
``bpref`` (the only other metric offered) goes to ranx.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import polars as pl

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10")
FAST_METRICS = frozenset({"hits", "hit_rate", "precision", "recall", "f1", "r-precision", "mrr", "map", "dcg",
                          "dcg_burges", "ndcg", "ndcg_burges"})


def split_metric(metric: str) -> tuple[str, int]:
    """``ndcg@10`` -> ("ndcg", 10); no ``@k`` -> k = 0 (the whole run), as ranx."""
    name, _, k = metric.partition("@")
    return name, int(k) if k else 0


def needs_ranx(metrics) -> bool:
    """Whether any of ``metrics`` is computed by ranx (then its numba kernels must be compiled: ``ranx_warmup``)."""
    return any(split_metric(m)[0] not in FAST_METRICS for m in metrics)


def _ensure_numba_cache() -> None:
    if "NUMBA_CACHE_DIR" not in os.environ:
        cache = Path(os.environ.get("ATTNRANK_CACHE", Path.home() / ".cache" / "attnrank")) / "numba"
        cache.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(cache)


def warmup(metrics=DEFAULT_METRICS) -> None:
    """Compile (or load from NUMBA_CACHE_DIR) ranx's kernels for those of ``metrics`` that ranx computes."""
    metrics = [m for m in metrics if needs_ranx([m])]
    if not metrics:
        return
    qrels = pl.DataFrame({"qid": ["q"], "docid": ["d"], "relevance": [1]}, schema_overrides={"relevance": pl.Int32})
    run = pl.DataFrame({"qid": ["q"], "docid": ["d"], "score": [1.0]})
    _ranx_per_query(qrels_dict(qrels), run_dict(run), list(metrics))


# ---------------------------------------------------------------------------------------------------- kernels
def _seq_sum(x: np.ndarray) -> float:
    """Left-to-right sum (the order of ranx's numba ``np.sum``; NumPy's own sum is pairwise)."""
    return float(np.cumsum(x)[-1]) if len(x) else 0.0


def _discounts(n: int) -> np.ndarray:
    """log2(i + 1) for ranks i = 1..n (libm's log2, as numba calls it)."""
    return np.array([math.log2(i + 1) for i in range(1, n + 1)], dtype=np.float64)


def _dcg(gains: np.ndarray, burges: bool) -> float:
    g = (2.0 ** gains - 1.0) if burges else gains
    return _seq_sum(g / _discounts(len(g)))


def metric_value(name: str, k: int, ranked: list[str], rel: dict[str, int]) -> float:
    """One query's ``name@k`` (ranx's definition) for the ranked doc ids and the qrels of the query."""
    rel = {d: r for d, r in rel.items() if r >= 1}
    n_rel = len(rel)
    if n_rel == 0:
        return 0.0
    kk = len(ranked) if k == 0 or k > len(ranked) else k  # ranx's fix_k
    gains = np.array([rel.get(d, 0) for d in ranked[:kk]], dtype=np.float64)
    hit = (gains > 0).astype(np.float64)
    hits = float(hit.sum())  # exact: a count
    if name == "hits":
        return hits
    if name == "hit_rate":
        return 1.0 if hits else 0.0
    if name in ("precision", "recall", "f1"):
        kp = k if k != 0 else len(ranked)
        if kp == 0:
            return 0.0
        p, r = hits / kp, hits / n_rel
        if name == "precision":
            return p
        if name == "recall":
            return r
        return 0.0 if p + r == 0 else 2 * ((p * r) / (p + r))
    if name == "r-precision":
        return metric_value("precision", n_rel, ranked, rel)
    if name == "mrr":
        first = np.flatnonzero(hit)
        return 1 / (int(first[0]) + 1) if len(first) else 0.0
    if name == "map":
        cum = np.cumsum(hit)
        prec = np.where(hit > 0, cum / np.arange(1, kk + 1), 0.0)
        return _seq_sum(prec) / n_rel
    if name in ("dcg", "dcg_burges", "ndcg", "ndcg_burges"):
        burges = name.endswith("_burges")
        dcg = _dcg(gains, burges)
        if name.startswith("dcg"):
            return dcg
        ideal = np.array(sorted(rel.values(), reverse=True), dtype=np.float64)
        ideal = ideal[: (len(ideal) if k == 0 or k > len(ideal) else k)]
        idcg = _dcg(ideal, burges)
        return dcg / (idcg if idcg != 0.0 else 1.0)
    raise ValueError(f"metrics: no fast path for {name!r}")


def _ranx_per_query(qrels: dict, run: dict, metrics: list[str]) -> dict[str, dict[str, float]]:
    """{metric: {qid: value}} from ranx (queries of ``qrels``; ``run`` covers them, possibly with empty lists)."""
    _ensure_numba_cache()
    from ranx import Qrels, Run, evaluate

    res = evaluate(Qrels(qrels), Run(run), list(metrics), return_mean=False, make_comparable=True)
    qids = sorted(qrels)  # ranx returns arrays aligned with the sorted qrels query ids
    return {m: dict(zip(qids, map(float, res[m] if len(metrics) > 1 else res))) for m in metrics}


def qrels_dict(qrels: pl.DataFrame) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for q, d, r in zip(qrels["qid"], qrels["docid"], qrels["relevance"]):
        out.setdefault(q, {})[d] = int(r)
    return out


def run_dict(run: pl.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for q, d, s in zip(run["qid"], run["docid"], run["score"]):
        out.setdefault(q, {})[d] = float(s)
    return out


def per_query(qrels: pl.DataFrame, run: pl.DataFrame, metrics=DEFAULT_METRICS) -> pl.DataFrame:
    """Per-query metrics (qid, metric, value) over the queries of ``qrels``.

    A judged query that the run does not cover scores 0 on every metric (counted, logged): a re-ranker that loses
    a query must not look better for it. Ties in the run are broken by docid (via attnrank.io.rank_run order).
    """
    from ..io import rank_run

    ranked = rank_run(run)
    judged = qrels.filter(pl.col("qid").is_in(ranked["qid"].unique().implode()))
    missing = sorted(set(qrels["qid"].unique()) - set(ranked["qid"].unique()))
    if missing:
        log.warning("%d judged quer(y/ies) missing from the run score 0: %s", len(missing), missing[:5])
    rows = []
    if judged.height:
        qd = qrels_dict(judged)
        lists: dict[str, list[str]] = {}
        for q, d in zip(ranked["qid"], ranked["docid"]):  # rank order: score descending, ties by docid
            lists.setdefault(q, []).append(d)
        slow = [m for m in metrics if split_metric(m)[0] not in FAST_METRICS]
        # ranx sorts by score only: the rank as score keeps the docid tie-break
        by_ranx = _ranx_per_query(qd, run_dict(ranked.with_columns(score=(-pl.col("rank")).cast(pl.Float64))), slow) if slow else {}
        for m in metrics:
            name, k = split_metric(m)
            for q in sorted(qd):
                v = by_ranx[m][q] if m in by_ranx else metric_value(name, k, lists.get(q, []), qd[q])
                rows.append((q, m, float(v)))
    rows += [(q, m, 0.0) for q in missing for m in metrics]
    return pl.DataFrame(rows, schema={"qid": pl.String, "metric": pl.String, "value": pl.Float64}, orient="row").sort(
        ["metric", "qid"]
    )


def mean_metrics(per_q: pl.DataFrame) -> dict[str, float]:
    return {m: float(v) for m, v in per_q.group_by("metric").agg(pl.col("value").mean()).iter_rows()}


def evaluate_runs(qrels_path: str | os.PathLike, runs: dict[str, dict], metrics, out_path: str | os.PathLike) -> dict:
    """The ``evaluate`` job: per-query metrics of every run of a dataset ({trec path: identifying columns}), plus the
    per-query position bias recorded in a run's ``.json`` sidecar, in one parquet table. Returns counts."""
    import json

    from .. import io, paths
    from ..attention import position
    from ..progress import progress

    qrels = pl.read_parquet(qrels_path)
    frames = []
    for path, ids in progress(sorted(runs.items()), "evaluate", unit="run"):
        per_q = per_query(qrels, io.read_trec(path), metrics)
        used = Path(paths.sidecar(path))
        if used.is_file() and "position_bias_per_query" in (info := json.loads(used.read_text())):
            per_q = pl.concat([per_q, position.per_query_rows(info["position_bias_per_query"])])
        frames.append(per_q.with_columns(**{k: pl.lit(v) for k, v in ids.items()}))
    out = pl.concat(frames)
    io.write_parquet(out, out_path)
    return {"runs": len(frames), "rows": out.height}
