"""Latency/memory helpers: measurement, fixed query samples, summaries, CSV and the trade-off plot."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import polars as pl
import pytest

import attnrank.evaluation.latency as T
from attnrank.errors import InputError


MEASURE_SCRIPT = """
import json, numpy as np
import attnrank.evaluation.latency as T
def alloc(mb):
    a = np.ones(mb * 1024 * 1024 // 8)  # touched pages -> resident
    return float(a.sum())
base = T.measure(lambda: 0.0, device="cpu")
m = T.measure(alloc, 80, device="cpu")
again = T.measure(lambda: 0.0, device="cpu")
print(json.dumps({"base": base["peak_mem_bytes"], "m": {k: m[k] for k in ("result", "mem_kind", "device", "seconds", "peak_mem_bytes")}, "again": again["peak_mem_bytes"]}))
"""


def test_measure_cpu_peak_memory_and_result():
    # a fresh process: in a long test session freed-but-resident heap memory would hide the allocation from RSS
    import json
    import subprocess
    import sys

    out = json.loads(subprocess.run([sys.executable, "-c", MEASURE_SCRIPT], capture_output=True, text=True, check=True).stdout)
    m = out["m"]
    assert m["result"] == 80 * 1024 * 1024 // 8
    assert m["mem_kind"].startswith("cpu_peak_rss") and m["device"] == "cpu"
    assert m["seconds"] > 0
    # the peak of the call includes the 80 MB array (freed before returning)
    assert m["peak_mem_bytes"] - out["base"] > 60 * 1024 * 1024
    assert out["again"] < m["peak_mem_bytes"]  # the peak is per call, not per process


def test_sample_queries_is_fixed_and_ordered():
    qs = [f"q{i}" for i in range(50)]
    a, b = T.sample_queries(qs, 7, seed=3), T.sample_queries(qs, 7, seed=3)
    assert a == b and len(a) == 7 and a == sorted(a, key=qs.index)
    assert T.sample_queries(qs, 7, seed=4) != a
    assert T.sample_queries(qs, None) == qs and T.sample_queries(qs, 99) == qs
    with pytest.raises(InputError, match="n_queries"):
        T.sample_queries(qs, 0)


def test_time_method_warmup_rows_and_counters():
    calls = []

    def per_query(q):
        calls.append(q)
        return {"forward_passes": 2, "generated_tokens": len(q[1]), "note": "ignored"}

    queries = [(f"q{i}", "x" * i) for i in range(10)]
    rows = T.time_method(per_query, queries, n=4, seed=0, warmup=2, device="cpu")
    sample = T.sample_queries(queries, 4, seed=0)
    assert len(calls) == 6 and calls[:2] == sample[:2]  # 2 warm-up calls, untimed
    assert [r["qid"] for r in rows] == [q[0] for q in sample]
    assert all(r["forward_passes"] == 2 and "note" not in r for r in rows)
    assert [r["generated_tokens"] for r in rows] == [len(q[1]) for q in sample]

    s = T.summarize(rows, "tiny", "rankgpt")
    secs = sorted(r["seconds"] for r in rows)
    assert s["seconds_per_query"] == pytest.approx(sum(secs) / 4)
    assert s["seconds_median"] == pytest.approx((secs[1] + secs[2]) / 2)
    assert s["forward_passes_per_query"] == 2 and s["prompt_tokens_per_query"] is None
    assert s["generated_tokens_per_query"] == pytest.approx(sum(len(q[1]) for q in sample) / 4)
    with pytest.raises(InputError):
        T.summarize([], "tiny", "x")


def test_write_csv_and_plot(tmp_path):
    rows = [
        {"model": m, "method": meth, "device": "cpu", "n_queries": 3, "seconds_per_query": sec,
         "seconds_median": sec, "seconds_total": 3 * sec, "forward_passes_per_query": 1.0,
         "generated_tokens_per_query": 0.0, "prompt_tokens_per_query": None, "peak_mem_bytes": 10, "mem_kind": "cpu_peak_rss"}
        for m in ("tiny-a", "tiny-b") for meth, sec in (("icr", 0.01), ("rankgpt", 2.0), ("yesno", 0.3))
    ]
    path = tmp_path / "lat" / "latency.csv"
    T.write_latency_csv(rows, path)
    back = pl.read_csv(path)
    assert back.columns == T.LATENCY_COLUMNS and back.height == 6
    assert back.filter(pl.col("method") == "rankgpt")["seconds_per_query"].to_list() == [2.0, 2.0]

    table = back.with_columns(pl.Series("ndcg@10", [0.3, 0.2, 0.25, 0.31, 0.22, 0.26]))
    png = tmp_path / "plots" / "tradeoff.png"
    T.plot_tradeoff(table, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InputError, match="ndcg@10"):
        T.plot_tradeoff(back, tmp_path / "x.png")


def test_benchmark_rerank_on_tiny_model(tmp_path):
    from attnrank.models import build_tiny_model, load_model

    model, tok = load_model(build_tiny_model(tmp_path / "m", arch="llama"), device="cpu")
    words = "planet star orbit telescope galaxy comet".split()
    cands = pl.DataFrame([
        {"qid": f"q{q}", "query": "planet orbit", "docid": f"d{i}", "rank": i + 1, "score": 1.0, "text": " ".join(words[i:])}
        for q in range(3) for i in range(q + 2)
    ])
    rows = T.benchmark_rerank("yesno", model, tok, cands, {"batch_size": 2}, n=2, seed=0, warmup=1)
    assert len(rows) == 2
    n_docs = {f"q{q}": q + 2 for q in range(3)}
    for r in rows:
        assert r["forward_passes"] == n_docs[r["qid"]] and r["generated_tokens"] == 0
        assert r["peak_mem_bytes"] > 0
