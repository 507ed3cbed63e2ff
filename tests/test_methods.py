"""Attention methods: each aggregation equals a direct computation from per-head scores; bad params fail clearly."""

from __future__ import annotations

import types

import numpy as np
import polars as pl
import pytest

from attnrank.attention import methods
from attnrank.errors import InputError
from attnrank.selection.heads import head_table
from attnrank.attention.scores import QueryScores

L, H, K = 6, 4, 5


def make_scores(qid: str, seed: int, n_layers: int = L) -> QueryScores:
    rng = np.random.default_rng(seed)
    raw = rng.random((n_layers, H, K)).astype(np.float32)
    na = (0.5 * rng.random((n_layers, H, K))).astype(np.float32)
    return QueryScores(
        qid=qid,
        docids=[f"{qid}-d{j}" for j in range(K)],
        raw=raw,
        na=na,
        masked_prefix=rng.standard_normal((n_layers, K)).astype(np.float32),
        positions=np.arange(K, dtype=np.int32),
        n_tokens=np.full(K, 10, dtype=np.int32),
    )


@pytest.fixture()
def heads_table() -> pl.DataFrame:
    # QR prefers deep heads (layer-major), CoRe prefers shallow heads of the last index: distinct orders.
    qr = np.arange(L * H, dtype=float).reshape(L, H)
    core = np.zeros((L, H))
    core[1, 3], core[0, 2], core[4, 0], core[2, 1] = 0.9, 0.8, 0.7, 0.6
    return head_table({"qr_mass": qr, "qrhead": qr, "core": core})


def direct_heads(s: QueryScores, pairs, calibrated=True) -> np.ndarray:
    out = np.zeros(K)
    for l, h in pairs:
        for j in range(K):
            out[j] += float(s.raw[l, h, j]) - (float(s.na[l, h, j]) if calibrated else 0.0)
    return out


def direct_layers(s: QueryScores, layers, calibrated=True) -> np.ndarray:
    return direct_heads(s, [(l, h) for l in layers for h in range(H)], calibrated)


def test_registry_kinds_and_needs():
    assert {"icr", "qrhead", "qr-mass", "core", "selective", "headrank"} <= set(methods.METHODS)
    assert "qr" not in methods.METHODS
    assert methods.needs("icr") == set()
    assert methods.needs("qrhead") == methods.needs("qr-mass") == methods.needs("core") == {"heads"}
    assert methods.needs("selective") == {"window"}
    assert methods.needs("headrank") == {"weights"}


def test_icr_calibrations_and_pruning():
    s = make_scores("q1", 1)
    np.testing.assert_allclose(methods.aggregate(s, "icr", {}, None), s.masked_prefix[L - 1])
    np.testing.assert_allclose(methods.aggregate(s, "icr", {"calibration": "masked", "max_layer": 2}, None), s.masked_prefix[2])
    np.testing.assert_allclose(methods.aggregate(s, "icr", {"calibration": "na"}, None), direct_layers(s, range(L)), rtol=1e-6)
    np.testing.assert_allclose(
        methods.aggregate(s, "icr", {"calibration": "none"}, None), direct_layers(s, range(L), False), rtol=1e-6
    )
    np.testing.assert_allclose(
        methods.aggregate(s, "icr", {"calibration": "na", "max_layer": 3}, None), direct_layers(s, range(4)), rtol=1e-6
    )
    # prune 0.5 of 6 layers keeps layers 0..2 (CoRe's floor(L * (1 - p)))
    np.testing.assert_allclose(
        methods.aggregate(s, "icr", {"calibration": "na", "prune": 0.5}, None, n_layers=L), direct_layers(s, range(3)), rtol=1e-6
    )


def test_qr_and_core_use_their_own_top_heads(heads_table):
    s = make_scores("q1", 2)
    qr_top3 = [(5, 3), (5, 2), (5, 1)]
    core_top3 = [(1, 3), (0, 2), (4, 0)]
    a = {"heads": heads_table}
    np.testing.assert_allclose(methods.aggregate(s, "qr-mass", {"k_heads": 3, "calibration": "na"}, a), direct_heads(s, qr_top3), rtol=1e-6)
    np.testing.assert_allclose(methods.aggregate(s, "core", {"k_heads": 3, "calibration": "na"}, a), direct_heads(s, core_top3), rtol=1e-6)
    np.testing.assert_allclose(
        methods.aggregate(s, "core", {"k_heads": 3, "calibration": "none"}, a), direct_heads(s, core_top3, False), rtol=1e-6
    )


def test_pruned_head_methods_pick_heads_below_the_cut(heads_table):
    s = make_scores("q1", 3)
    a = {"heads": heads_table}
    # QR, layers 0..2 only: best are (2,3), (2,2)
    np.testing.assert_allclose(
        methods.aggregate(s, "qr-mass", {"k_heads": 2, "max_layer": 2, "calibration": "na"}, a), direct_heads(s, [(2, 3), (2, 2)]), rtol=1e-6
    )
    # CoRe, layers 0..1: (1,3), (0,2), then ties at 0 broken by (layer, head): (0,0)
    np.testing.assert_allclose(
        methods.aggregate(s, "core", {"k_heads": 3, "max_layer": 1, "calibration": "na"}, a), direct_heads(s, [(1, 3), (0, 2), (0, 0)]), rtol=1e-6
    )


def test_selective_window_and_cut():
    s = make_scores("q1", 4)
    np.testing.assert_allclose(methods.aggregate(s, "selective", {"calibration": "na"}, {"window": (2, 4)}), direct_layers(s, [2, 3, 4]), rtol=1e-6)
    np.testing.assert_allclose(
        methods.aggregate(s, "selective", {"calibration": "na"}, {"window": {"first_layer": 1, "last_layer": 2}}), direct_layers(s, [1, 2]), rtol=1e-6
    )
    np.testing.assert_allclose(
        methods.aggregate(s, "selective", {"max_layer": 3, "calibration": "na"}, {"window": (2, 5)}), direct_layers(s, [2, 3]), rtol=1e-6
    )
    np.testing.assert_allclose(
        methods.aggregate(s, "selective", {"calibration": "masked"}, {"window": (0, 3)}), s.masked_prefix[3]
    )
    # a window not starting at layer 0 needs the per-head token scores, which this cache lacks
    with pytest.raises(InputError, match=r"methods.sel.calibration: 'masked'.*engine.token_scores"):
        methods.aggregate(s, "selective", {}, {"window": (1, 3)}, name="sel")


def test_headrank_delegates(monkeypatch):
    calls = []
    fake = types.ModuleType("attnrank.selection.headrank")

    def aggregate(s, weights, layers=None, normalise="zscore"):
        calls.append((layers, normalise))
        return np.einsum("lh,lhk->k", weights[:layers], s.raw[:layers].astype(float))

    fake.aggregate = aggregate
    monkeypatch.setattr(methods, "hr", fake)
    s = make_scores("q1", 5)
    w = np.zeros((L, H))
    w[1, 2] = 2.0
    w[3, 0] = -1.0
    expect = 2 * s.raw[1, 2].astype(float) - s.raw[3, 0]
    np.testing.assert_allclose(methods.aggregate(s, "headrank", {}, {"weights": w}), expect, rtol=1e-6)
    np.testing.assert_allclose(methods.aggregate(s, "headrank", {"max_layer": 2}, {"weights": w}), 2 * s.raw[1, 2], rtol=1e-6)
    # a TrainResult-like artifact: its selected weights, layers and normalisation are used
    trained = types.SimpleNamespace(selected_weights=lambda: w, layers=4, normalise="none")
    np.testing.assert_allclose(methods.aggregate(s, "headrank", {}, {"weights": trained}), expect, rtol=1e-6)
    assert calls == [(4, "zscore"), (3, "zscore"), (4, "none")]
    # a cache truncated at the weights' layers is enough
    np.testing.assert_allclose(methods.aggregate(methods.truncate(s, 4), "headrank", {}, {"weights": w}), expect, rtol=1e-6)
    assert methods.required_layers("headrank", {}, {"weights": w}, L) == 4
    assert methods.required_layers("headrank", {"max_layer": 1}, {"weights": w}, L) == 2
    assert methods.required_layers("headrank", {}, None, L) is None
    with pytest.raises(InputError, match=r"methods.hr.weights: needs 4 layers"):
        methods.aggregate(methods.truncate(s, 3), "headrank", {}, {"weights": w}, name="hr")
    with pytest.raises(InputError, match=r"methods.hr.weights: all head weights are zero"):
        methods.aggregate(s, "headrank", {}, {"weights": np.zeros((L, H))}, name="hr")


def test_rank_frame_order_and_values(heads_table):
    scores = [make_scores("qa", 6), make_scores("qb", 7)]
    run = methods.rank(scores, "core", {"k_heads": 2, "calibration": "na"}, {"heads": heads_table}, name="core2")
    assert run.columns == ["qid", "docid", "score"]
    assert run["qid"].to_list() == ["qa"] * K + ["qb"] * K
    assert run["docid"].to_list() == scores[0].docids + scores[1].docids
    expect = np.concatenate([direct_heads(s, [(1, 3), (0, 2)]) for s in scores])
    np.testing.assert_allclose(run["score"].to_numpy(), expect, rtol=1e-6)


def test_required_layers(heads_table):
    a = {"heads": heads_table}
    assert methods.required_layers("icr", {}, None, L) == L
    assert methods.required_layers("icr", {}, None, None) is None
    assert methods.required_layers("icr", {"max_layer": 2}, None, L) == 3
    assert methods.required_layers("icr", {"prune": 0.5}, None, 24) == 12
    assert methods.required_layers("qr-mass", {"k_heads": 3}, a, L) == 6
    assert methods.required_layers("core", {"k_heads": 2}, a, L) == 2
    assert methods.required_layers("core", {"k_heads": 3}, a, L) == 5
    assert methods.required_layers("qr-mass", {"k_heads": 3, "max_layer": 2}, a, L) == 3
    assert methods.required_layers("qr-mass", {"k_heads": 3}, None, L) is None
    assert methods.required_layers("selective", {}, {"window": (1, 3)}, L) == 4
    assert methods.required_layers("selective", {}, None, L) is None
    assert methods.required_layers("selective", {"max_layer": 2}, {"window": (1, 3)}, L) == 3
    cfg = {"icr_cut": {"kind": "icr", "max_layer": 1}, "core2": {"kind": "core", "k_heads": 2}}
    assert methods.engine_layers(cfg, {"core2": a}, L) == 2
    assert methods.engine_layers({**cfg, "icr": {"kind": "icr"}}, {"core2": a}, L) == L


def test_bad_params_name_the_key(heads_table):
    s = make_scores("q1", 8)
    a = {"heads": heads_table}
    with pytest.raises(InputError, match=r"methods.foo.kind: unknown method kind 'nope'"):
        methods.rank([s], "nope", {}, None, name="foo")
    with pytest.raises(InputError, match=r"methods.core8.k_heads: 100 heads asked, only 24"):
        methods.rank([s], "core", {"k_heads": 100}, a, name="core8")
    with pytest.raises(InputError, match=r"methods.core8.k_heads: expected an integer >= 1, got 0"):
        methods.rank([s], "core", {"k_heads": 0}, a, name="core8")
    with pytest.raises(InputError, match=r"methods.core8.heads: method kind 'core' needs the 'heads' artifact"):
        methods.rank([s], "core", {"k_heads": 2}, None, name="core8")
    with pytest.raises(InputError, match=r"methods.icr.calibration"):
        methods.rank([s], "icr", {"calibration": "bogus"}, None)
    with pytest.raises(InputError, match=r"methods.icr.topk: unknown parameter"):
        methods.rank([s], "icr", {"topk": 3}, None)
    with pytest.raises(InputError, match=r"methods.icr.max_layer"):
        methods.rank([s], "icr", {"max_layer": L}, None)
    with pytest.raises(InputError, match=r"methods.icr.prune"):
        methods.rank([s], "icr", {"prune": 0.5}, None)  # fraction without the model's layer count
    with pytest.raises(InputError, match=r"methods.icr.prune"):
        methods.required_layers("icr", {"prune": 1.5}, None, L)
    # head index out of range: a head table from a model with more heads per layer
    w8 = np.arange(L * 8, dtype=float).reshape(L, 8)
    wide = head_table({"qr_mass": w8, "qrhead": w8, "core": np.zeros((L, 8))})
    with pytest.raises(InputError, match=r"methods.qr4.heads: head \(5, 7\) is out of range"):
        methods.rank([s], "qr-mass", {"k_heads": 4}, {"heads": wide}, name="qr4")
    # a head deeper than the model / the cache
    d10 = np.arange(10 * H, dtype=float).reshape(10, H)
    deep = head_table({"qr_mass": d10, "qrhead": d10, "core": np.zeros((10, H))})
    with pytest.raises(InputError, match=r"methods.qr4.heads: needs 10 layers"):
        methods.rank([s], "qr-mass", {"k_heads": 4}, {"heads": deep}, name="qr4")
    with pytest.raises(InputError, match=r"methods.qr4.heads: needs 10 layers but the model has 6"):
        methods.required_layers("qr-mass", {"k_heads": 4, "name": "qr4"}, {"heads": deep}, L)
    # window wider than the model / reversed / removed by the cut
    with pytest.raises(InputError, match=r"methods.sel.window: \(2, 9\) reaches beyond"):
        methods.rank([s], "selective", {}, {"window": (2, 9)}, name="sel")
    with pytest.raises(InputError, match=r"methods.sel.window"):
        methods.rank([s], "selective", {}, {"window": (3, 1)}, name="sel")
    with pytest.raises(InputError, match=r"methods.sel.max_layer: cut at layer 1 removes the whole window"):
        methods.rank([s], "selective", {"max_layer": 1}, {"window": (2, 4)}, name="sel")


def test_engine_layers_too_shallow_is_an_error(heads_table):
    shallow = make_scores("q1", 9, n_layers=3)
    with pytest.raises(InputError, match=r"methods.qr3.heads: needs 6 layers but the score cache of query 'q1' has 3"):
        methods.rank([shallow], "qr-mass", {"k_heads": 3}, {"heads": heads_table}, name="qr3")
    with pytest.raises(InputError, match=r"methods.icr.max_layer: needs 5 layers"):
        methods.rank([shallow], "icr", {"max_layer": 4}, None)


def test_headrank_with_the_real_module():
    hr = pytest.importorskip("attnrank.selection.headrank")
    s = make_scores("q1", 11)
    w = np.zeros((L, H))
    w[2, 1], w[0, 3] = 0.7, 0.3
    got = methods.aggregate(s, "headrank", {}, {"weights": w})
    np.testing.assert_allclose(got, hr.aggregate(s, w, layers=3), rtol=1e-12)
    np.testing.assert_allclose(got, hr.aggregate(s, w), rtol=1e-12)  # layers beyond 3 carry no weight


def with_tokens(s: QueryScores, seed: int, n_tok: int = 6) -> QueryScores:
    """``s`` with random per-head token scores (one planted outlier token per document) and matching n_tokens."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    tok = rng.random((s.n_layers, s.n_heads, n_tok * K))
    tok[..., ::n_tok] -= 5.0  # the first token of each document is far below the rest in every head
    return replace(s, tokens=tok.astype(np.float32), n_tokens=np.full(K, n_tok, np.int32))


def direct_masked(s: QueryScores, pairs) -> np.ndarray:
    """By hand: sum the chosen heads' tokens, then per document drop tokens <= mean - 2 std, sum the rest."""
    c = sum(s.tokens[l, h].astype(float) for l, h in pairs)
    out, start = [], 0
    for n in s.n_tokens:
        d = c[start : start + n]
        start += n
        thr = d.mean() - 2 * d.std(ddof=1)
        out.append(sum(x for x in d if x > thr))
    return np.array(out)


def test_head_methods_default_to_masked_calibration_over_their_heads(heads_table):
    s = with_tokens(make_scores("q1", 5), 5)
    a = {"heads": heads_table}
    np.testing.assert_allclose(methods.aggregate(s, "qrhead", {"k_heads": 3}, a), direct_masked(s, [(5, 3), (5, 2), (5, 1)]), rtol=1e-9)
    np.testing.assert_allclose(methods.aggregate(s, "qr-mass", {"k_heads": 2}, a), direct_masked(s, [(5, 3), (5, 2)]), rtol=1e-9)
    np.testing.assert_allclose(methods.aggregate(s, "core", {"k_heads": 2}, a), direct_masked(s, [(1, 3), (0, 2)]), rtol=1e-9)
    np.testing.assert_allclose(methods.aggregate(s, "selective", {}, {"window": (2, 3)}),
                               direct_masked(s, [(l, h) for l in (2, 3) for h in range(H)]), rtol=1e-9)
    # the planted outliers are really dropped: masked differs from the plain token sum
    plain = direct_masked(s, [(1, 3)]) - 0
    assert not np.allclose(plain, [s.tokens[1, 3, j * 6 : j * 6 + 6].sum() for j in range(K)])
    # defaults: CoRe 8 heads (paper), QRHead 16 (paper, <= 8B models)
    assert len(methods.describe("core", {}, a)["heads"]) == 8
    assert len(methods.describe("qrhead", {}, a)["heads"]) == 16


def test_old_qr_kind_and_core_temperature_are_checked(heads_table):
    with pytest.raises(InputError, match=r"methods.qr.kind: kind 'qr' was renamed: use 'qr-mass'.*'qrhead'"):
        methods.validate("qr", {"k_heads": 4}, "qr")
    tab = head_table({"qr_mass": np.ones((L, H)), "qrhead": np.ones((L, H)), "core": np.ones((L, H))}, temperature=0.1)
    s = make_scores("q1", 6)
    methods.aggregate(s, "core", {"temperature": 0.1, "calibration": "na"}, {"heads": tab})
    with pytest.raises(InputError, match=r"methods.c.temperature: 0.001 asked, but the head table was ranked at temperature \[0.1\]"):
        methods.aggregate(s, "core", {"temperature": 0.001, "calibration": "na"}, {"heads": tab}, name="c")
