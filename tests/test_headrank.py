"""HeadRank on toy score tensors: training moves weight to separating heads, entropy sparsifies, exact aggregation."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from attnrank.errors import InputError
from attnrank.selection.headrank import (
    HeadRankConfig,
    aggregate,
    load_weights,
    normalise_scores,
    save_weights,
    select_heads,
)
from attnrank.selection.headrank_fit import train
from attnrank.selection.selectivity import selectivity
from attnrank.attention.scores import QueryScores

L, H, K = 3, 4, 20


def toy(
    n_queries: int = 24,
    signal: dict[tuple[int, int], float] | None = None,
    graded: bool = False,
    seed: int = 0,
    k: int = K,
) -> tuple[list[QueryScores], pl.DataFrame]:
    """Noise everywhere; the heads in ``signal`` add strength × relevance to the calibrated score.

    Head (0, 0) is pure noise at 1000× the scale of the others (z-scoring must neutralise scale).
    """
    signal = {(1, 2): 3.0} if signal is None else signal
    rng = np.random.default_rng(seed)
    out, rows = [], []
    for qi in range(n_queries):
        qid = f"q{qi:03d}"
        docids = [f"d{qi:03d}_{j:02d}" for j in range(k)]
        rel = np.zeros(k, dtype=int)
        pos_idx = rng.choice(k, size=4, replace=False)
        rel[pos_idx[:2]] = 2 if graded else 1
        if graded:
            rel[pos_idx[2:]] = 1
        na = rng.normal(0, 1, (L, H, k)).astype(np.float32)
        cal = rng.normal(0, 1, (L, H, k))
        cal[0, 0] *= 1000.0
        for (l, h), strength in signal.items():
            cal[l, h] += strength * rel
        raw = (na + cal).astype(np.float32)
        positions = rng.permutation(k).astype(np.int32)
        out.append(QueryScores(qid, docids, raw, na, np.zeros((L, k), np.float32), positions, np.full(k, 10, np.int32)))
        rows += [(qid, d, int(r)) for d, r in zip(docids, rel) if r > 0 or rng.random() < 0.5]
    qrels = pl.DataFrame(rows, schema={"qid": pl.String, "docid": pl.String, "relevance": pl.Int32}, orient="row")
    return out, qrels


def entropy(w: np.ndarray) -> float:
    p = w.ravel()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


CFG = dict(steps=120, progress=False)


def test_weight_mass_concentrates_on_separating_head_and_loss_decreases():
    scores, qrels = toy()
    res = train(scores, qrels, HeadRankConfig(**CFG))
    w = res.weights
    assert w.shape == (L, H)
    assert math.isclose(w.sum(), 1.0, rel_tol=1e-12)
    assert np.unravel_index(w.argmax(), w.shape) == (1, 2)
    assert w[1, 2] > 0.5, w
    assert w[0, 0] < 1 / (L * H)  # the large-scale noise head loses weight
    assert res.loss_history[-1] < res.loss_history[0] - 0.1
    assert len(res.loss_history) == CFG["steps"] + 1
    assert res.selected[0] == (1, 2)
    assert res.layers == max(l for l, _ in res.selected) + 1
    assert res.train_seconds > 0
    assert res.skipped == {"no_positive": 0, "no_negative": 0}


def test_gradient_points_weight_to_separating_head():
    import torch

    from attnrank.selection.headrank_fit import objective as _objective, prepare_batch as _prepare
    from attnrank.selection.selectivity import qrels_map as _qrels_map

    scores, qrels = toy(graded=True)
    cfg = HeadRankConfig(entropy_weight=0.0, reg_score_entropy=0.0, reg_middle_var=0.0, progress=False)
    logits = torch.zeros(L * H, dtype=torch.float64, requires_grad=True)
    loss, terms = _objective(logits, _prepare(scores, _qrels_map(qrels), "zscore"), cfg)
    loss.backward()
    g = logits.grad.numpy().reshape(L, H)
    # descent direction (-g) is largest for the separating head, by a wide margin over every noise head
    assert np.unravel_index(g.argmin(), g.shape) == (1, 2)
    assert g[1, 2] < 0
    assert -g[1, 2] > 3 * np.abs(np.delete(g.ravel(), 1 * H + 2)).max()
    # one small step already moves weight there
    res = train(scores, qrels, HeadRankConfig(steps=1, lr=0.01, entropy_weight=0.0, progress=False))
    assert np.unravel_index(res.weights.argmax(), res.weights.shape) == (1, 2)
    assert res.weights[1, 2] > 1 / (L * H)


def test_graded_qrels_with_separating_head():
    scores, qrels = toy(graded=True, seed=3)
    res = train(scores, qrels, HeadRankConfig(**CFG))
    assert np.unravel_index(res.weights.argmax(), res.weights.shape) == (1, 2)
    # trained weights rank relevant above non-relevant better than uniform weights
    qmap = {(q, d): r for q, d, r in qrels.iter_rows()}

    def pair_acc(w):
        ok = n = 0
        for s in scores:
            sc = aggregate(s, w)
            rel = np.array([qmap.get((s.qid, d), 0) for d in s.docids])
            for i in range(K):
                for j in range(K):
                    if rel[i] > rel[j]:
                        ok += sc[i] > sc[j]
                        n += 1
        return ok / n

    assert pair_acc(res.weights) > pair_acc(np.full((L, H), 1 / (L * H))) + 0.1


def test_entropy_term_makes_weights_sparser():
    # two partially informative heads: without the entropy term averaging them pays; with it one wins
    scores, qrels = toy(signal={(1, 2): 1.0, (2, 1): 1.0, (0, 3): 0.7}, seed=1)
    ents = []
    for ew in (0.0, 0.5, 2.0):
        res = train(scores, qrels, HeadRankConfig(entropy_weight=ew, steps=150, progress=False))
        ents.append(entropy(res.weights))
    assert ents[0] > ents[1] > ents[2], ents
    assert ents[0] - ents[2] > 0.3, ents


def test_deterministic():
    scores, qrels = toy()
    cfg = HeadRankConfig(steps=40, n_train_queries=10, seed=7, progress=False)
    a, b = train(scores, qrels, cfg), train(scores, qrels, cfg)
    assert np.array_equal(a.weights, b.weights)
    assert a.loss_history == b.loss_history
    assert a.train_qids == b.train_qids and len(a.train_qids) == 10
    c = train(scores, qrels, HeadRankConfig(steps=40, n_train_queries=10, seed=8, progress=False))
    assert c.train_qids != a.train_qids


def test_skips_queries_without_positive_or_negative(caplog):
    scores, qrels = toy(n_queries=6)
    s0, s1 = scores[0], scores[1]
    # s0: drop its positives; s1: judge every candidate relevant
    qrels = qrels.filter(~((pl.col("qid") == s0.qid) & (pl.col("relevance") > 0)))
    qrels = pl.concat([
        qrels.filter(pl.col("qid") != s1.qid),
        pl.DataFrame({"qid": [s1.qid] * K, "docid": s1.docids, "relevance": [1] * K},
                     schema={"qid": pl.String, "docid": pl.String, "relevance": pl.Int32}),
    ])
    with caplog.at_level("INFO"):
        res = train(scores, qrels, HeadRankConfig(steps=5, progress=False))
    assert res.skipped == {"no_positive": 1, "no_negative": 1}
    assert s0.qid not in res.train_qids and s1.qid not in res.train_qids and len(res.train_qids) == 4
    assert "skipped 1 queries without a relevant" in caplog.text
    with pytest.raises(InputError, match="no training query"):
        train([s0], qrels, HeadRankConfig(steps=5, progress=False))


def test_aggregate_equals_direct_weighted_sum_and_depth():
    scores, _ = toy(n_queries=2)
    s = scores[0]
    rng = np.random.default_rng(5)
    w = rng.random((L, H))
    w /= w.sum()
    cal = s.raw.astype(np.float64) - s.na.astype(np.float64)
    z = (cal - cal.mean(-1, keepdims=True)) / cal.std(-1, keepdims=True)
    direct = sum(w[l, h] * z[l, h] for l in range(L) for h in range(H))
    np.testing.assert_allclose(aggregate(s, w), direct, rtol=1e-12, atol=1e-12)
    direct_raw = sum(w[l, h] * cal[l, h] for l in range(L) for h in range(H))
    np.testing.assert_allclose(aggregate(s, w, normalise="none"), direct_raw, rtol=1e-12, atol=1e-12)
    # layers: only layers < layers, and a cache truncated to that layers gives the same scores
    d2 = sum(w[l, h] * z[l, h] for l in range(2) for h in range(H))
    np.testing.assert_allclose(aggregate(s, w, layers=2), d2, rtol=1e-12, atol=1e-12)
    short = QueryScores(s.qid, s.docids, s.raw[:2], s.na[:2], s.masked_prefix[:2], s.positions, s.n_tokens)
    np.testing.assert_allclose(aggregate(short, w, layers=2), d2, rtol=1e-12, atol=1e-12)
    with pytest.raises(InputError, match="layers"):
        aggregate(short, w, layers=3)
    with pytest.raises(InputError, match="give layers"):
        aggregate(short, w)
    with pytest.raises(InputError, match="heads"):
        aggregate(s, np.ones((L, H + 1)))


def test_constant_head_normalises_to_zero():
    x = np.zeros((1, 2, 5))
    x[0, 1] = [1, 2, 3, 4, 5]
    z = normalise_scores(x)
    assert (z[0, 0] == 0).all()
    np.testing.assert_allclose(z[0, 1], (x[0, 1] - 3) / np.sqrt(2))


def test_select_heads_mass_and_top_m():
    w = np.array([[0.05, 0.5], [0.3, 0.15]])
    heads, layers = select_heads(w, HeadRankConfig(select="mass", select_mass=0.8))
    assert heads == [(0, 1), (1, 0)] and layers == 2
    heads, layers = select_heads(w, HeadRankConfig(select="mass", select_mass=0.5))
    assert heads == [(0, 1)] and layers == 1
    heads, layers = select_heads(w, HeadRankConfig(select="top_m", select_top_m=3))
    assert heads == [(0, 1), (1, 0), (1, 1)] and layers == 2


def test_selected_weights_and_depth_from_training():
    scores, qrels = toy(signal={(1, 2): 3.0})
    res = train(scores, qrels, HeadRankConfig(entropy_weight=1.0, select_mass=0.9, **CFG))
    sw = res.selected_weights()
    assert math.isclose(sw.sum(), 1.0, rel_tol=1e-12)
    assert {tuple(map(int, x)) for x in np.argwhere(sw > 0)} == set(res.selected)
    assert res.layers == 2 and res.selected == [(1, 2)]
    # truncated inference equals full inference with selected weights (deeper layers carry none)
    s = scores[0]
    np.testing.assert_allclose(aggregate(s, sw, layers=res.layers), aggregate(s, sw), rtol=1e-12, atol=1e-12)


def test_save_load_roundtrip(tmp_path):
    scores, qrels = toy(n_queries=8)
    res = train(scores, qrels, HeadRankConfig(steps=10, progress=False))
    p = tmp_path / "w" / "headrank.json"
    save_weights(res, p)
    back = load_weights(p)
    assert np.array_equal(back.weights, res.weights)
    assert back.selected == res.selected and back.layers == res.layers
    assert back.loss_history == res.loss_history and back.normalise == res.normalise
    assert back.config == res.config and back.train_qids == res.train_qids
    assert [x.name for x in p.parent.iterdir()] == ["headrank.json"]  # no temp files left
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="bad.json"):
        load_weights(tmp_path / "bad.json")
    with pytest.raises(InputError, match="not found"):
        load_weights(tmp_path / "missing.json")


def test_config_validation():
    with pytest.raises(InputError, match="headrank.entropy_weight"):
        HeadRankConfig(entropy_weight=-1)
    with pytest.raises(InputError, match="methods.hr.select"):
        HeadRankConfig.from_dict({"select": "best"}, key="methods.hr")
    with pytest.raises(InputError, match="methods.hr.lrate"):
        HeadRankConfig.from_dict({"lrate": 1}, key="methods.hr")
    assert HeadRankConfig.from_dict({"steps": 5}).steps == 5


def test_selectivity_hand_made():
    # k = 12: middle zone = prompt slots 4..7, top quartile = ranks 1..3. Slot of doc j is (j + 3) % 12, so the
    # middle-zone documents are d01..d04 (d01, d02 relevant; d03, d04 not); d09 is relevant but sits in slot 0.
    k = 12
    docids = [f"d{j:02d}" for j in range(k)]
    positions = np.array([(j + 3) % k for j in range(k)], dtype=np.int32)
    z = np.zeros((1, 1, k), np.float32)
    s = QueryScores("q1", docids, z, z, np.zeros((1, k), np.float32), positions, np.ones(k, np.int32))
    other = QueryScores("q9", docids, z, z, np.zeros((1, k), np.float32), positions, np.ones(k, np.int32))
    qrels = pl.DataFrame(
        {"qid": ["q1", "q1", "q1", "q1", "q2"], "docid": ["d01", "d02", "d09", "d04", "x"], "relevance": [1, 2, 1, 0, 1]},
        schema={"qid": pl.String, "docid": pl.String, "relevance": pl.Int32},
    )
    sc = np.zeros(k)
    sc[[1, 3, 9, 2, 4]] = [10.0, 9.0, 8.0, -1.0, -2.0]  # top 3: d01 (rel, middle), d03 (irr, middle), d09 (rel, edge)
    out = selectivity([s, other], qrels, {"q1": sc})
    assert out["relevant_middle"] == 2 and out["relevant_top_quartile"] == 1
    assert out["irrelevant_middle"] == 2 and out["irrelevant_top_quartile"] == 1
    assert out["share_relevant"] == 0.5 and out["share_irrelevant"] == 0.5 and out["gap"] == 0.0
    assert out["n_queries"] == 1 and out["n_skipped"] == 1
    # a callable works too; lifting d02 to rank 1 pushes d09 (rank 3) out of the top quartile
    sc2 = sc.copy()
    sc2[2] = 20.0
    out2 = selectivity([s], qrels, lambda q: sc2)
    assert out2["relevant_top_quartile"] == 2 and out2["irrelevant_top_quartile"] == 1
    assert out2["share_relevant"] == 1.0 and out2["share_irrelevant"] == 0.5 and out2["gap"] == 0.5
    # ties broken by docid: all-equal scores put d00, d01, d02 on top
    out3 = selectivity([s], qrels, {"q1": np.zeros(k)})
    assert out3["relevant_top_quartile"] == 2 and out3["irrelevant_top_quartile"] == 0
    with pytest.raises(InputError, match="q1"):
        selectivity([s], qrels, {"q1": np.zeros(3)})


def test_trained_weights_raise_middle_zone_selectivity():
    scores, qrels = toy(n_queries=30, seed=4)
    train_s, test_s = scores[:20], scores[20:]
    res = train(train_s, qrels, HeadRankConfig(**CFG))
    trained = selectivity(test_s, qrels, lambda s: aggregate(s, res.selected_weights(), res.layers))
    uniform = selectivity(test_s, qrels, lambda s: aggregate(s, np.full((L, H), 1 / (L * H))))
    assert trained["gap"] > uniform["gap"] + 0.2, (trained, uniform)
