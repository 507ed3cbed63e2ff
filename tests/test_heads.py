"""Head scores (attention-mass QR, QRHead, CoRe): hand-computed values on planted toy tensors, opposite orders
(CoRe Prop. 4.2), ranks, errors, heat map."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from attnrank.errors import InputError
from attnrank.selection.heads import plot_heatmap, score_heads, top_heads
from attnrank.attention.scores import QueryScores


def sample(qid: str, raw: np.ndarray, docids: list[str], masked_head: np.ndarray | None = None) -> QueryScores:
    raw = np.asarray(raw, dtype=np.float32)
    k = raw.shape[-1]
    return QueryScores(
        qid=qid, docids=docids, raw=raw, na=np.zeros_like(raw), masked_prefix=np.zeros((raw.shape[0], k), np.float32),
        positions=np.arange(k, dtype=np.int32), n_tokens=np.ones(k, dtype=np.int32),
        masked_head=raw if masked_head is None else np.asarray(masked_head, np.float32),
    )


def softmax_pos(values: list[float], t: float, pos: int) -> float:
    e = [math.exp(v / t) for v in values]
    return e[pos] / sum(e)


def test_qr_and_core_equal_hand_computed_values():
    # one layer, two heads, three documents; positive 'p' at slot 0 in sample A, slot 1 in sample B
    a = sample("A", [[[0.30, 0.10, 0.20], [0.05, 0.01, 0.02]]], ["p", "n1", "n2"])
    b = sample("B", [[[0.10, 0.40, 0.30], [0.01, 0.06, 0.03]]], ["n1", "p", "n2"])
    t = 0.1
    df = score_heads([a, b], {"A": "p", "B": "p"}, t)
    row0 = df.filter(pl.col("head") == 0).row(0, named=True)
    row1 = df.filter(pl.col("head") == 1).row(0, named=True)
    assert row0["qr_mass"] == pytest.approx((0.30 + 0.40) / 2, rel=1e-6)
    assert row1["qr_mass"] == pytest.approx((0.05 + 0.06) / 2, rel=1e-6)
    core0 = (softmax_pos([0.30, 0.10, 0.20], t, 0) + softmax_pos([0.10, 0.40, 0.30], t, 1)) / 2
    core1 = (softmax_pos([0.05, 0.01, 0.02], t, 0) + softmax_pos([0.01, 0.06, 0.03], t, 1)) / 2
    assert row0["core"] == pytest.approx(core0, rel=1e-5)
    assert row1["core"] == pytest.approx(core1, rel=1e-5)
    assert df.columns == ["layer", "head", "qr_mass", "qrhead", "core", "qr_mass_rank", "qrhead_rank", "core_rank", "temperature"]
    assert df["temperature"].to_list() == [t, t]


def test_qr_and_core_rank_two_heads_in_opposite_order():
    # head 0 spreads a lot of attention over every document (high QR, no contrast);
    # head 1 puts little mass overall but concentrates it on the positive (low QR, high CoRe).
    s = sample("S", [[[0.30, 0.30, 0.30], [0.10, 0.01, 0.01]]], ["p", "n1", "n2"])
    df = score_heads([s], {"S": "p"}, temperature=0.01).sort("head")
    assert df["qr_mass"][0] > df["qr_mass"][1]
    assert df["core"][0] < df["core"][1]
    assert df["qr_mass_rank"].to_list() == [1, 2]
    assert df["core_rank"].to_list() == [2, 1]
    assert df["core"][0] == pytest.approx(1 / 3, rel=1e-5)
    assert top_heads(df, "qr_mass", 1) == [(0, 0)]
    assert top_heads(df, "core", 1) == [(0, 1)]


def test_temperature_limits_and_stability():
    s = sample("S", [[[0.5, 0.2, 0.1]]], ["p", "n1", "n2"])
    high = score_heads([s], {"S": "p"}, 1e6)["core"][0]
    low = score_heads([s], {"S": "p"}, 1e-4)["core"][0]  # exp(5000) would overflow without max-shifting
    assert high == pytest.approx(1 / 3, rel=1e-5)
    assert low == pytest.approx(1.0, abs=1e-12)


def test_ranks_break_ties_by_layer_then_head():
    raw = np.full((2, 2, 2), 0.2, np.float32)
    df = score_heads([sample("S", raw, ["p", "n"])], {"S": "p"}, 1.0).sort(["layer", "head"])
    assert df["qr_mass_rank"].to_list() == [1, 2, 3, 4]
    assert df["core_rank"].to_list() == [1, 2, 3, 4]


def test_bad_input():
    s = sample("S", [[[0.5, 0.2]]], ["p", "n"])
    with pytest.raises(InputError, match="heads.temperature"):
        score_heads([s], {"S": "p"}, 0.0)
    with pytest.raises(InputError, match="sample 'S' has no positive"):
        score_heads([s], {"T": "p"}, 1.0)
    with pytest.raises(InputError, match="positive 'x' of sample 'S' is not among"):
        score_heads([s], {"S": "x"}, 1.0)
    with pytest.raises(InputError, match="no detection samples"):
        score_heads([], {}, 1.0)
    other = sample("U", np.zeros((2, 1, 2)), ["p", "n"])
    with pytest.raises(InputError, match="layers x heads"):
        score_heads([s, other], {"S": "p", "U": "p"}, 1.0)


def test_heatmap_written_atomically(tmp_path):
    rng = np.random.default_rng(0)
    s = sample("S", rng.random((3, 4, 5)), [f"d{i}" for i in range(5)])
    df = score_heads([s], {"S": "d2"}, 0.5)
    out = tmp_path / "plots" / "core.png"
    plot_heatmap(df, "core", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["core.pdf", "core.png"]  # a PDF beside, no temp file left
    assert (out.parent / "core.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(InputError, match="no column 'nope'"):
        plot_heatmap(df, "nope", tmp_path / "x.png")


def test_qrhead_ranks_each_head_by_its_own_ndcg_at_10():
    # 12 documents, positive 'p' at index 0. Per-head masked scores (planted):
    #   head 0 ranks p 1st in sample A, 3rd in sample B -> nDCG (1 + 1/log2(4)) / 2 = 0.75
    #   head 1 ranks p 11th in both (beyond 10) -> 0, although its raw mass on p is the largest (QR-mass favours it)
    #   head 2 ties p with one document of a smaller docid ('a...' < 'p') -> rank 2 -> 1/log2(3)
    k = 12
    docids = ["p"] + [f"n{i:02d}" for i in range(k - 2)] + ["a0"]
    def planted(rank_h0):
        mh = np.zeros((1, 3, k))
        mh[0, 0] = np.arange(k, 0, -1)  # descending: doc 0 first
        mh[0, 0, 0] = mh[0, 0, rank_h0 - 1] + 0.5 if rank_h0 > 1 else mh[0, 0, 0]
        if rank_h0 > 1:
            mh[0, 0, 1:rank_h0] += 1.0  # rank_h0 - 1 documents above p
        mh[0, 1] = np.linspace(1, 2, k)
        mh[0, 1, 0] = 1.05  # above one doc only: rank 11
        mh[0, 2] = np.zeros(k)
        mh[0, 2, 0] = mh[0, 2, k - 1] = 1.0
        return mh
    raw = np.full((1, 3, k), 0.01)
    raw[0, 1, 0] = 0.9
    a = sample("A", raw, docids, planted(1))
    b = sample("B", raw, docids, planted(3))
    df = score_heads([a, b], {"A": "p", "B": "p"}, 0.1).sort("head")
    assert df["qrhead"].to_list() == pytest.approx([(1 + 1 / math.log2(4)) / 2, 0.0, 1 / math.log2(3)])
    assert df["qrhead_rank"].to_list() == [1, 3, 2]
    assert df["qr_mass_rank"][1] == 1  # the mass baseline picks the head QRHead rejects
    assert top_heads(df, "qrhead", 2) == [(0, 0), (0, 2)]


def test_qrhead_needs_per_head_masked_scores():
    s = sample("S", [[[0.5, 0.2]]], ["p", "n"])
    from dataclasses import replace

    with pytest.raises(InputError, match="no per-head masked scores"):
        score_heads([replace(s, masked_head=None)], {"S": "p"}, 1.0)
