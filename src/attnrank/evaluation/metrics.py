"""Evaluation with ranx: per-query metrics for any run against a dataset's qrels.

ranx JIT-compiles with numba on first use (~30 s); set ``NUMBA_CACHE_DIR`` to a kept folder so later processes
reuse the compiled code (done here if unset).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)

DEFAULT_METRICS = ("ndcg@10", "recall@100", "mrr@10")


def _ensure_numba_cache() -> None:
    if "NUMBA_CACHE_DIR" not in os.environ:
        cache = Path(os.environ.get("ATTNRANK_CACHE", Path.home() / ".cache" / "attnrank")) / "numba"
        cache.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(cache)


def warmup() -> None:
    """Compile (or load from NUMBA_CACHE_DIR) ranx's kernels for the default metrics."""
    qrels = pl.DataFrame({"qid": ["q"], "docid": ["d"], "relevance": [1]}, schema_overrides={"relevance": pl.Int32})
    per_query(qrels, pl.DataFrame({"qid": ["q"], "docid": ["d"], "score": [1.0]}), DEFAULT_METRICS)


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
    _ensure_numba_cache()
    from ranx import Qrels, Run, evaluate

    from ..io import rank_run

    ranked = rank_run(run)
    # ranx sorts by score only; make ties deterministic (docid ascending) with a tiny rank-based offset.
    ranked = ranked.with_columns(score=(-pl.col("rank")).cast(pl.Float64))
    judged = qrels.filter(pl.col("qid").is_in(ranked["qid"].unique().implode()))
    missing = sorted(set(qrels["qid"].unique()) - set(ranked["qid"].unique()))
    if missing:
        log.warning("%d judged quer(y/ies) missing from the run score 0: %s", len(missing), missing[:5])
    rows = []
    if judged.height:
        res = evaluate(
            Qrels(qrels_dict(judged)), Run(run_dict(ranked)), list(metrics), return_mean=False, make_comparable=True
        )
        qids = sorted(qrels_dict(judged))
        # ranx returns arrays aligned with the sorted qrels query ids
        for m in metrics:
            vals = res[m] if len(metrics) > 1 else res
            for q, v in zip(qids, vals):
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
