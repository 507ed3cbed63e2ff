"""Protocol pieces: self-matching documents dropped from first-stage runs, the position-bias statistic."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from attnrank.attention import position
from attnrank.retrieval import candidates
from attnrank.attention.scores import QueryScores


def test_self_matches_are_dropped_and_counted():
    # query "a" retrieves itself at rank 1 (ArguAna / Quora style); "b" does not; ids compared as strings
    run = pl.DataFrame({"qid": ["a", "a", "a", "b", "b", "7"], "docid": ["a", "x", "y", "x", "z", "7"],
                        "rank": [1, 2, 3, 1, 2, 1], "score": [9.0, 5.0, 4.0, 3.0, 2.0, 1.0]})
    kept, info = candidates.drop_self_matches(run)
    assert info["self_matches_dropped"] == 2 and info["queries_with_self_match"] == ["7", "a"]
    assert (kept["qid"] != kept["docid"]).all()
    assert kept.filter(pl.col("qid") == "a")[["docid", "rank"]].rows() == [("x", 1), ("y", 2)]  # renumbered, order kept
    assert kept.filter(pl.col("qid") == "b").height == 2
    kept2, info2 = candidates.drop_self_matches(kept)
    assert info2["self_matches_dropped"] == 0 and kept2.equals(kept)


def test_self_match_judged_relevant_is_counted_and_warned(caplog):
    """Ids that collide by accident (CISI: query 34 and document 34 are unrelated, and judged relevant) are not
    silently dropped: the count is in the run's metadata and the log says which key turns the drop off."""
    run = pl.DataFrame({"qid": ["34", "34", "5"], "docid": ["34", "9", "5"], "rank": [1, 2, 1], "score": [3.0, 2.0, 1.0]})
    qrels = pl.DataFrame({"qid": ["34", "5"], "docid": ["34", "8"], "relevance": [1, 1]})
    with caplog.at_level("WARNING"):
        _, info = candidates.drop_self_matches(run, qrels, "cisi/bm25")
    assert info["self_matches_dropped"] == 2 and info["self_matches_judged_relevant"] == 1
    assert "cisi/bm25: 1 dropped self-match(es) are judged relevant (queries ['34'])" in caplog.text
    assert "drop_self_matches: false" in caplog.text


def test_drop_self_matches_per_dataset():
    from attnrank import config

    cfg = {"candidates": {"drop_self_matches": True}, "datasets": {"arguana": {}, "cisi": {"drop_self_matches": False}}}
    assert config.drop_self_matches(cfg, "arguana") and not config.drop_self_matches(cfg, "cisi")
    cfg["candidates"]["drop_self_matches"] = False
    assert not config.drop_self_matches(cfg, "arguana")


def qs(qid, positions):
    k = len(positions)
    z = np.zeros((1, 1, k), np.float32)
    return QueryScores(qid, [f"d{j}" for j in range(k)], z, z, z[0], np.asarray(positions, np.int32), np.ones(k, np.int32))


def test_position_bias_is_spearman_of_score_and_slot():
    # reversed prompt: candidate j sits in slot k-1-j
    a = qs("a", [3, 2, 1, 0])
    b = qs("b", [0, 1, 2, 3])
    c = qs("c", [0, 1, 2, 3])
    scores = {"a": np.array([1.0, 2.0, 3.0, 4.0]),  # higher for earlier slots: rho = -1 (primacy)
              "b": np.array([1.0, 2.0, 4.0, 3.0]),  # rho = 0.8
              "c": np.array([5.0, 5.0, 5.0, 5.0])}  # constant: undefined, left out
    got = position.position_bias([a, b, c], lambda s: scores[s.qid])
    assert set(got) == {"a", "b"}
    assert got["a"] == pytest.approx(-1.0) and got["b"] == pytest.approx(0.8)
    rows = position.per_query_rows(got)
    assert rows.columns == ["qid", "metric", "value"] and set(rows["metric"]) == {"position_bias"}


def test_spearman_equals_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(3)
    for n in (2, 3, 7, 20, 100):
        for _ in range(20):
            a = rng.integers(0, 5, n).astype(float)  # many ties
            b = rng.permutation(n).astype(float)
            want = None if np.ptp(a) == 0 else spearmanr(a, b).statistic
            got = position.spearman(a, b)
            assert (got is None) == (want is None) and (got is None or abs(got - want) < 1e-12)


def test_protocol_presets_fill_unset_method_keys_and_report_grid_deviations():
    from attnrank import protocols
    from attnrank.errors import InputError

    got = protocols.expand({
        "core": {"kind": "core", "protocol": "core"},
        "qrh": {"kind": "qrhead", "protocol": "qrhead", "k_heads": 32},  # the entry wins (70B: 32 heads)
        "icr": {"kind": "icr", "protocol": "icr"},
        "hr": {"kind": "headrank", "protocol": "shared"},
        "plain": {"kind": "icr"},
    })
    assert got["core"] == {"kind": "core", "protocol": "core", "order": "retrieval", "k_heads": 8, "calibration": "masked"}
    assert got["qrh"]["k_heads"] == 32 and got["qrh"]["order"] == "reversed"
    assert got["icr"]["order"] == "reversed" and "k_heads" not in got["icr"]
    assert "calibration" not in got["hr"] and got["hr"]["order"] == "reversed"
    assert got["plain"] == {"kind": "icr"}
    with pytest.raises(InputError, match=r"'methods.x.protocol': unknown protocol 'nope'"):
        protocols.expand({"x": {"kind": "icr", "protocol": "nope"}})
    cfg = {"retrievers": {"bm25": {"kind": "bm25"}}, "candidates": {"depth": 20, "max_doc_words": 300},
           "prompt": {"max_doc_tokens": 100}, "detection": {"n_queries": 1000, "n_negatives": 9, "positions": 5}}
    dev = protocols.deviations("core", cfg, "bm25")
    assert any(d.startswith("first_stage: paper 'dense:ibm-granite") for d in dev)
    assert "depth: paper 40, here 20" in dev and "max_doc_tokens: paper None, here 100" in dev
    assert "detection_negatives: paper 49, here 9" in dev and not any(d.startswith("detection_queries") for d in dev)
    # what it cannot compare it says: no model, no prompt, a detection first stage the grid does not name
    assert "not comparable: model (no hub model id: its version and prompt family are unknown)" in dev
    assert any(d.startswith("not comparable: prompt") for d in dev)
    assert any(d.startswith("not comparable: detection_first_stage") for d in dev)
    shared = {**cfg, "candidates": {"depth": 100, "max_doc_words": 300}, "prompt": {"max_doc_tokens": None}}
    llama = "meta-llama/Llama-3.1-8B-Instruct"
    prompt = {**protocols.prompt_config("shared", llama, "scifact"), "max_doc_tokens": None}
    assert protocols.deviations("shared", shared, "bm25", prompt=prompt, model_id=llama, dataset="scifact") == []
    # the prompt and the model version are compared: the chat-template prompt, Mistral v0.3, an unknown family
    dev = protocols.deviations("shared", shared, "bm25", prompt={"max_doc_tokens": None}, model_id=llama, dataset="nq")
    assert "prompt.late_instruction: paper 'Please answer the following question based on the information in the " \
           "paragraphs above.', here 'Please find information that are relevant to the following query in the " \
           "paragraphs above.'" in dev and any(d.startswith("prompt.role_prefix: paper '<|start_header_id|>") for d in dev)
    v3 = "mistralai/Mistral-7B-Instruct-v0.3"
    dev = protocols.deviations("icr", shared, "bm25", prompt=protocols.prompt_config("icr", v3, "nq"), model_id=v3, dataset="nq")
    assert dev == ["model: paper 'mistralai/Mistral-7B-Instruct-v0.2', here 'mistralai/Mistral-7B-Instruct-v0.3'"]
    dev = protocols.deviations("icr", shared, "bm25", prompt={}, model_id="HuggingFaceTB/SmolLM2-135M-Instruct", dataset="nq")
    assert dev == ["not comparable: prompt (OSU-NLP-Group/In-Context-Reranking has no prompt for the model family of "
                   "'HuggingFaceTB/SmolLM2-135M-Instruct')"]
    # a key a preset fixes that no reader knows is reported, never silently equal
    fake = protocols.Protocol("fake", "p", "src", grid={"layout_x": 3})
    protocols.PROTOCOLS["fake"] = fake
    try:
        assert protocols.deviations("fake", shared, "bm25", prompt={}, model_id=llama, dataset="nq")[0] == \
            "not comparable: layout_x (paper 3; the grid does not record it)"
    finally:
        del protocols.PROTOCOLS["fake"]
