import math

import polars as pl

from attnrank import evaluation, tables


def test_per_query_matches_hand_computation():
    qrels = pl.DataFrame({"qid": ["a", "a", "b"], "docid": ["x", "y", "z"], "relevance": [2, 1, 1]}, schema_overrides={"relevance": pl.Int32})
    run = pl.DataFrame({"qid": ["a", "a", "a", "b", "b"], "docid": ["w", "y", "x", "z", "v"], "score": [3.0, 2.0, 1.0, 1.0, 1.0]})
    pq = evaluation.per_query(qrels, run, ["ndcg@10", "mrr@10"])
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
    pq = evaluation.per_query(qrels, run, ["ndcg@10"])
    assert dict(zip(pq["qid"], pq["value"])) == {"a": 1.0, "b": 0.0}


def test_tables_summary_and_latex(tmp_path):
    rows = []
    for method, vals in (("bm25", [0.2, 0.4]), ("icr", [0.5, 0.7])):
        for q, v in zip(["1", "2"], vals):
            rows.append({"qid": q, "metric": "ndcg@10", "value": v, "dataset": "d_1", "retriever": "bm25", "model": "-", "method": method})
    p = tmp_path / "e.parquet"
    pl.DataFrame(rows).write_parquet(p)
    summary = tables.write_tables([p], tmp_path / "tables", "ndcg@10")
    means = dict(zip(summary["method"], summary["value"]))
    assert abs(means["bm25"] - 0.3) < 1e-12 and abs(means["icr"] - 0.6) < 1e-12
    assert summary["n_queries"].to_list() == [2, 2]
    tex = (tmp_path / "tables" / "results.tex").read_text()
    assert r"\toprule" in tex and r"\textbf{60.0}" in tex and "30.0" in tex and r"d\_1" in tex
    csv = pl.read_csv(tmp_path / "tables" / "results.csv")
    assert set(csv.columns) >= {"dataset", "retriever", "model", "method", "metric", "value", "n_queries"}
