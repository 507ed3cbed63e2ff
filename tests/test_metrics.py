"""The NumPy metrics (attnrank.evaluation.metrics.FAST_METRICS) equal ranx's on random graded runs."""
import random

import polars as pl
import pytest

from attnrank import config
from attnrank.evaluation import metrics


def _random_case(seed: int, n_queries: int = 40):
    rng = random.Random(seed)
    qrels, run = [], []
    for q in range(n_queries):
        docs = [f"d{i}" for i in range(rng.randint(5, 60))]
        for d in rng.sample(docs, rng.randint(1, min(15, len(docs)))):
            qrels.append((f"q{q}", d, rng.choice([0, 0, 1, 1, 2, 3])))  # some queries have no relevant document
        if q % 7 == 3:
            continue  # judged, not retrieved: scores 0
        for d in rng.sample(docs, rng.randint(0, len(docs))):
            run.append((f"q{q}", d, float(rng.randint(0, 8))))  # ties on purpose: broken by docid
    qrels = pl.DataFrame(qrels, schema={"qid": pl.String, "docid": pl.String, "relevance": pl.Int32}, orient="row")
    run = pl.DataFrame(run, schema={"qid": pl.String, "docid": pl.String, "score": pl.Float64}, orient="row")
    return qrels, run


ALL = [f"{m}@{k}" for m in sorted(metrics.FAST_METRICS - {"r-precision"}) for k in (1, 3, 10, 100)]
ALL += sorted(metrics.FAST_METRICS)  # no @k: the whole run (r-precision has no k)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_metrics_equal_ranx(seed, monkeypatch):
    qrels, run = _random_case(seed)
    fast = metrics.per_query(qrels, run, ALL)
    monkeypatch.setattr(metrics, "FAST_METRICS", frozenset())  # everything through ranx
    slow = metrics.per_query(qrels, run, ALL)
    assert fast["qid"].to_list() == slow["qid"].to_list() and fast["metric"].to_list() == slow["metric"].to_list()
    diff = [(q, m, a, b) for q, m, a, b in zip(fast["qid"], fast["metric"], fast["value"], slow["value"]) if a != b]
    assert not diff, diff[:5]  # bit-identical, not just close
    assert fast.filter(pl.col("value") > 0).height > len(ALL)  # the case exercises non-zero values


def test_every_offered_metric_is_fast_or_ranx():
    assert set(config.RANX_METRICS) - metrics.FAST_METRICS == {"bpref"}
    assert not metrics.needs_ranx(["ndcg@10", "recall@100", "mrr@10", "map", "r-precision"])
    assert metrics.needs_ranx(["ndcg@10", "bpref@100"])


def test_a_ranx_only_metric_goes_through_ranx():
    qrels, run = _random_case(5, n_queries=6)
    pq = metrics.per_query(qrels, run, ["bpref", "ndcg@10"])
    assert set(pq["metric"]) == {"bpref", "ndcg@10"} and pq.height == 12
