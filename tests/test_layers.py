"""Layer profiling (per-layer nDCG@10 against hand-computed values) and Selective-ICR window selection."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from attnrank.errors import InputError
from attnrank.selection.layers import plot_profile, profile_layers, select_window
from attnrank.attention.scores import QueryScores


def qscores(qid: str, raw: np.ndarray, na: np.ndarray | None = None) -> QueryScores:
    raw = np.asarray(raw, np.float32)
    n_layers, _, k = raw.shape
    return QueryScores(
        qid=qid, docids=[f"{qid}d{j}" for j in range(k)], raw=raw,
        na=np.zeros_like(raw) if na is None else np.asarray(na, np.float32),
        masked_prefix=np.zeros((n_layers, k), np.float32),
        positions=np.arange(k, dtype=np.int32), n_tokens=np.ones(k, dtype=np.int32),
    )


def test_profile_equals_hand_computed_ndcg():
    k, n_layers, n_heads = 12, 3, 2
    rng = np.random.default_rng(0)
    scores, rows, expect = [], [], np.zeros(n_layers)
    for q in range(4):
        qid = f"q{q}"
        rel = q + 1  # index of the single relevant document
        raw = np.zeros((n_layers, n_heads, k))
        na = rng.random((n_layers, n_heads, k)) * 0.01  # small calibration, subtracted
        order = np.arange(k)[::-1].astype(float)  # doc 0 best ... doc 11 worst
        for h in range(n_heads):
            raw[0, h] = order / n_heads  # layer 0: relevant doc at rank rel+1
            raw[1, h] = -order / n_heads  # layer 1: reversed, rank k - rel
            raw[2, h, rel] = 10.0  # layer 2: relevant doc first
        raw = raw + na  # calibrated scores are exactly the designed ones
        scores.append(qscores(qid, raw, na))
        rows.append((qid, f"{qid}d{rel}", 1))
        for layer, r in ((0, rel + 1), (1, k - rel), (2, 1)):
            expect[layer] += (1 / math.log2(r + 1) if r <= 10 else 0.0) / 4
    qrels = pl.DataFrame(rows + [("other", "x", 1)], schema={"qid": pl.String, "docid": pl.String, "relevance": pl.Int32}, orient="row")
    prof = profile_layers(scores, qrels, calibration="na")
    assert prof.columns == ["layer", "ndcg@10"]
    assert prof["layer"].to_list() == [0, 1, 2]
    np.testing.assert_allclose(prof["ndcg@10"].to_numpy(), expect, rtol=1e-9)
    # the default profiles each layer's masked calibration (QueryScores.masked_layer): plant it, get the same nDCG
    from dataclasses import replace

    masked = [replace(s, masked_layer=(s.raw - s.na).sum(1)) for s in scores]
    np.testing.assert_allclose(profile_layers(masked, qrels)["ndcg@10"].to_numpy(), expect, rtol=1e-9)
    with pytest.raises(InputError, match="'masked' needs per-layer masked scores"):
        profile_layers(scores, qrels)


def test_profile_bad_input(caplog):
    a = qscores("a", np.ones((2, 1, 3)))
    with pytest.raises(InputError, match="has 3 layers"):
        profile_layers([a, qscores("b", np.ones((3, 1, 3)))], pl.DataFrame({"qid": ["a"], "docid": ["ad0"], "relevance": [1]}))
    with pytest.raises(InputError, match="none of the profiling queries has qrels"):
        profile_layers([a], pl.DataFrame({"qid": ["z"], "docid": ["x"], "relevance": [1]}))
    with pytest.raises(InputError, match="no profiling queries"):
        profile_layers([], pl.DataFrame({"qid": ["z"], "docid": ["x"], "relevance": [1]}))


def profile(values) -> pl.DataFrame:
    return pl.DataFrame({"layer": list(range(len(values))), "ndcg@10": [float(v) for v in values]})


def test_select_window_best_mean():
    # a bell curve peaking at layers 4-5
    p = profile([0.1, 0.2, 0.3, 0.5, 0.7, 0.7, 0.4, 0.2])
    assert select_window(p, 1) == (4, 4)  # tie 4 vs 5: centre is 3.5, |4-3.5| == |5-3.5| -> shallower
    assert select_window(p, 2) == (4, 5)
    assert select_window(p, 3) == (3, 5)  # 0.633 (3-5) vs 0.6 (4-6)
    assert select_window(p, 8) == (0, 7)


def test_select_window_ties_go_to_the_middle():
    flat = profile([0.5] * 10)
    assert select_window(flat, 4) == (3, 6)  # centre 4.5 = network centre
    assert select_window(flat, 3) == (3, 5)  # centres 4 and 5 tie at distance 0.5 -> shallower
    two_peaks = profile([0.9, 0.1, 0.1, 0.1, 0.9, 0.1, 0.1])
    assert select_window(two_peaks, 1) == (4, 4)  # layer 4 is nearer the centre (3) than layer 0


def test_select_window_bad_width():
    p = profile([0.1, 0.2, 0.3])
    with pytest.raises(InputError, match=r"selective.width: window width 4 is wider than the model \(3 layers\)"):
        select_window(p, 4)
    with pytest.raises(InputError, match="must be an integer >= 1"):
        select_window(p, 0)
    with pytest.raises(InputError, match="without gaps"):
        select_window(pl.DataFrame({"layer": [0, 2], "ndcg@10": [0.1, 0.2]}), 1)


def test_plot_profile(tmp_path):
    out = tmp_path / "bell.png"
    plot_profile(profile([0.1, 0.4, 0.3]), out, window=(1, 2))
    assert out.read_bytes()[:4] == b"\x89PNG"
