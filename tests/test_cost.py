"""Cost estimate (attnrank.cost): job enumeration against the plan, the FLOP model by hand, measured seconds."""

from __future__ import annotations

import math

import pytest

from attnrank import config, cost, paths
from helpers import REPO


@pytest.fixture()
def demo():
    return config.validate(config.read_yaml(REPO / "config" / "demo.yaml"), check_files=False)


def test_demo_jobs_follow_the_config(demo, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no prepared data or models: published / config counts only
    monkeypatch.setattr(cost, "n_queries", lambda c, d: c["datasets"][d]["max_queries"])
    jobs = cost.estimate(demo)
    by_rule = {}
    for j in jobs:
        by_rule[j.rule] = by_rule.get(j.rule, 0) + 1
    # 1 eval dataset x 1 retriever x 1 order; 4 text methods; detection in 1 order; the tuning split's pass; latency
    assert by_rule == {"attention_scores": 2, "rerank_text": 4, "detection_scores": 1, "latency": 1}
    assert all(j.source == "flop model" for j in jobs if j.rule != "latency")


def test_flop_model_by_hand():
    fm = cost.FlopModel((1e9, 10, 100), flops=1e12, bandwidth=1e10)
    T = 3 * 50 + cost.QUERY_TOKENS
    assert fm.prompt(3, 50) == pytest.approx((2e9 * T + 2 * 10 * 100 * T * T) / 1e12)
    assert fm.prompt(3, 50, generated=7) - fm.prompt(3, 50) == pytest.approx(7 * 2e9 / 1e10)


def test_text_prompt_counts():
    assert len(cost.text_prompts({"kind": "rankgpt", "window": 20, "stride": 10}, 100)) == 9  # 0,10,...,80
    assert cost.text_prompts({"kind": "rankgpt", "window": 20, "stride": 10}, 100)[0] == (20, 80.0)
    assert len(cost.text_prompts({"kind": "yesno"}, 100)) == 100
    n = len(cost.text_prompts({"kind": "setwise", "c": 3, "top_k": 10}, 100))
    assert n == math.ceil(100 / 3) + 10 * math.ceil(math.log(100, 3))


def test_measured_latency_wins(demo, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cost, "n_queries", lambda c, d: 4)
    f = tmp_path / paths.latency_model("smollm2")
    f.parent.mkdir(parents=True)
    f.write_text("model,method,seconds_per_query\nsmollm2,icr,1.5\nsmollm2,yesno,2.0\n")
    jobs = {(j.rule, j.what): j for j in cost.estimate(demo)}
    assert jobs[("attention_scores", "cranfield/bm25/retrieval")].seconds == pytest.approx(6.0)
    assert jobs[("attention_scores", "cranfield/bm25/retrieval")].source == "measured"
    assert jobs[("rerank_text", "cranfield/bm25/yesno")].seconds == pytest.approx(8.0)
    assert jobs[("rerank_text", "cranfield/bm25/qlm")].source == "flop model"


def test_benchmark_seconds(tmp_path):
    (tmp_path / "rerank_text" / "m").mkdir(parents=True)
    for i, s in enumerate((1.5, 2.5)):
        (tmp_path / "rerank_text" / "m" / f"{i}.tsv").write_text(f"s\th:m:s\tmax_rss\n{s}\t0:00:01\t100\n")
    assert cost.benchmark_seconds(tmp_path) == {"rerank_text": (2, 4.0)}
