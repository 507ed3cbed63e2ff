import math

import polars as pl

from attnrank.evaluation import metrics


def test_per_query_matches_hand_computation():
    qrels = pl.DataFrame({"qid": ["a", "a", "b"], "docid": ["x", "y", "z"], "relevance": [2, 1, 1]}, schema_overrides={"relevance": pl.Int32})
    run = pl.DataFrame({"qid": ["a", "a", "a", "b", "b"], "docid": ["w", "y", "x", "z", "v"], "score": [3.0, 2.0, 1.0, 1.0, 1.0]})
    pq = metrics.per_query(qrels, run, ["ndcg@10", "mrr@10"])
    got = {(q, m): v for q, m, v in pq.iter_rows()}
    # query a: ranking w, y(1), x(2); ranx' ndcg is Jarvelin & Kekalainen's (linear gain)
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert abs(got[("a", "ndcg@10")] - dcg / idcg) < 1e-9
    assert got[("a", "mrr@10")] == 0.5
    # query b: tie between v and z broken by docid -> v first, z second
    assert got[("b", "mrr@10")] == 0.5


def test_missing_query_scores_zero():
    qrels = pl.DataFrame({"qid": ["a", "b"], "docid": ["x", "y"], "relevance": [1, 1]}, schema_overrides={"relevance": pl.Int32})
    run = pl.DataFrame({"qid": ["a"], "docid": ["x"], "score": [1.0]})
    pq = metrics.per_query(qrels, run, ["ndcg@10"])
    assert dict(zip(pq["qid"], pq["value"])) == {"a": 1.0, "b": 0.0}
