"""The attention engine equals the eager output_attentions reference, on tiny GQA models and SmolLM2 real weights."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from attnrank.attention.capture import Capture
from attnrank.attention.engine import QueryInput, Scorer, masked_prefix_scores
from engine_oracle import reference_scores
from attnrank.models import build_tiny_model, load_model

ATOL = 1e-5

ITEMS = [
    QueryInput("q1", "planet star orbit", ["d1", "d2", "d3"],
               ["planet star comet the moon orbit of a galaxy", "bank loan interest and the market of credit", ""]),
    QueryInput("q2", "", ["a", "b"], ["recipe oven flour butter sugar bake dough " * 3, "court judge lawyer"]),
    QueryInput("q3", "whale coral reef", ["z"], ["whale coral reef tide wave salt fish shark"]),
    QueryInput("q4", "garden soil", ["g1", "g2", "g3", "g4"],
               ["soil seed garden flower", "compost tomato prune water sunlight", "root leaf harvest the garden",
                "football match goal team player"]),
]


def assert_same(a, b, atol=ATOL):
    assert a.qid == b.qid and a.docids == b.docids
    np.testing.assert_allclose(a.raw, b.raw, atol=atol, rtol=0)
    np.testing.assert_allclose(a.na, b.na, atol=atol, rtol=0)
    np.testing.assert_allclose(a.masked_prefix, b.masked_prefix, atol=atol, rtol=0)
    for name in ("masked_head", "masked_layer"):  # per-head / per-layer masked calibration, computed in the pass
        if getattr(a, name) is not None and getattr(b, name) is not None:
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=atol, rtol=0)
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.n_tokens, b.n_tokens)


@pytest.fixture(params=["llama", "qwen3"])
def tiny(request, tiny_llama, tiny_qwen3):
    return tiny_llama if request.param == "llama" else tiny_qwen3


@pytest.mark.parametrize("cfg", [{"order": "retrieval"}, {"order": "reversed"}, {"order": "shuffle", "seed": 3}])
def test_engine_equals_eager_reference(tiny, cfg):
    model, tok = tiny
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA
    got = Scorer(model, tok, cfg).score(ITEMS)
    for item, g in zip(ITEMS, got):
        ref = reference_scores(model, tok, item, cfg)
        assert g.raw.shape == (model.config.num_hidden_layers, model.config.num_attention_heads, len(item.docids))
        assert g.raw.dtype == np.float32
        assert_same(g, ref)
    # the scores carry signal: not all heads/documents equal
    assert np.ptp(got[3].raw) > 1e-3
    assert model.config._attn_implementation == "sdpa"  # restored after scoring


def test_calibration_prefix_reuse_equals_two_passes(tiny):
    model, tok = tiny
    reuse = Scorer(model, tok, {}, reuse_prefix=True).score(ITEMS)
    two = Scorer(model, tok, {}, reuse_prefix=False).score(ITEMS)
    for a, b in zip(reuse, two):
        assert_same(a, b)
    assert np.abs(reuse[0].raw - reuse[0].na).max() > 1e-4  # the N/A pass really differs from the query pass


def test_truncated_depth_equals_full_for_kept_layers(tiny):
    model, tok = tiny
    full = Scorer(model, tok, {}).score(ITEMS)
    part = Scorer(model, tok, {}, layers=2).score(ITEMS)
    for f, p in zip(full, part):
        assert p.n_layers == 2
        np.testing.assert_array_equal(p.raw, f.raw[:2])
        np.testing.assert_array_equal(p.na, f.na[:2])
        np.testing.assert_allclose(p.masked_prefix, f.masked_prefix[:2], atol=1e-6, rtol=0)
    assert model.config.num_hidden_layers == 3


@pytest.mark.parametrize("reuse", [True, False])
def test_batched_equals_one_by_one(tiny, reuse):
    model, tok = tiny
    one = Scorer(model, tok, {"order": "reversed"}, batch_size=1, reuse_prefix=reuse).score(ITEMS)
    many = Scorer(model, tok, {"order": "reversed"}, batch_size=3, reuse_prefix=reuse).score(ITEMS)
    assert [s.qid for s in many] == [it.qid for it in ITEMS]
    for a, b in zip(one, many):
        assert_same(a, b)


def test_sliding_window_layers(tmp_path):
    d = build_tiny_model(tmp_path / "sw", arch="qwen3", seed=2, sliding_window=6)
    model, tok = load_model(d)
    assert "sliding_attention" in model.config.layer_types
    got = Scorer(model, tok, {}, batch_size=4).score(ITEMS)
    for item, g in zip(ITEMS, got):
        assert_same(g, reference_scores(model, tok, item, {}))
    # the window hides far documents from the query span in sliding layers, not in full ones
    sliding = [i for i, t in enumerate(model.config.layer_types) if t == "sliding_attention"]
    assert np.all(got[3].raw[sliding][..., :3] == 0)
    assert np.all(got[3].raw[0][..., :3] > 0)


def test_k1_empty_doc_empty_query(tiny_llama):
    model, tok = tiny_llama
    items = [QueryInput("k1", "planet", ["only"], ["planet star"]),
             QueryInput("empty-doc", "planet", ["x", "y"], ["", "planet"]),
             QueryInput("empty-query", "  ", ["x"], ["planet"])]
    got = Scorer(model, tok, {}).score(items)
    for item, g in zip(items, got):
        assert g.raw.shape[-1] == len(item.docids)
        assert_same(g, reference_scores(model, tok, item, {}))
    assert got[1].n_tokens[0] > 0  # an empty document still owns its "[1]" marker
    assert got[1].n_tokens[0] < got[1].n_tokens[1]


def test_no_chat_template(tiny_llama, caplog):
    model, tok = tiny_llama
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    with caplog.at_level(logging.INFO, logger="attnrank.attention.prompts"):
        got = Scorer(model, plain, {}).score(ITEMS[:2])
    assert "no chat template" in caplog.text
    for item, g in zip(ITEMS[:2], got):
        assert_same(g, reference_scores(model, plain, item, {}))
    with_tmpl = Scorer(model, tok, {}).score(ITEMS[:1])[0]
    assert not np.allclose(with_tmpl.raw, got[0].raw)


def test_overlong_prompt_truncated_with_warning(tiny_llama, caplog):
    model, tok = tiny_llama
    cfg = {"max_length": 60, "max_doc_tokens": None}
    with caplog.at_level(logging.WARNING, logger="attnrank.attention.prompts"):
        got = Scorer(model, tok, cfg).score(ITEMS[3:])
    assert "exceeds max_length 60" in caplog.text
    assert_same(got[0], reference_scores(model, tok, ITEMS[3], cfg))
    full = Scorer(model, tok, {"max_doc_tokens": None}).score(ITEMS[3:])[0]
    assert (got[0].n_tokens < full.n_tokens).all()


def test_nan_scores_name_the_query(tiny_llama_dir):
    model, tok = load_model(tiny_llama_dir)
    with torch.no_grad():
        model.model.embed_tokens.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="query q1"):
        Scorer(model, tok, {}).score(ITEMS[:1])


def test_masked_prefix_direct_computation():
    g = torch.Generator().manual_seed(0)
    tok_q = torch.rand(3, 12, generator=g)
    tok_na = torch.rand(3, 12, generator=g) * 0.1
    tok_q[:, 5] = -5.0  # an outlier token of document 1: dropped by the mean - 2 std rule at every depth
    spans = [(0, 3), (3, 11), (11, 12)]
    got = masked_prefix_scores(tok_q, tok_na, spans)
    assert got.shape == (3, 3) and got.dtype == np.float32
    q, na = tok_q.double().numpy(), tok_na.double().numpy()
    for l in range(3):
        cal = q[: l + 1].sum(0) - na[: l + 1].sum(0)
        for j, (s, e) in enumerate(spans):
            c = cal[s:e]
            keep = c > c.mean() - 2 * c.std(ddof=1) if e - s > 1 else np.ones(1, bool)
            assert got[l, j] == pytest.approx(c[keep].sum(), abs=1e-5)
        assert got[l, 1] > cal[3:11].sum() + 1  # the outlier was really dropped


def test_capture_softcap_and_float_mask_match_manual():
    torch.manual_seed(0)
    b, h, kvh, s, t, d = 2, 4, 2, 3, 7, 8
    q, k = torch.randn(b, h, s, d), torch.randn(b, kvh, t, d)
    mask = torch.zeros(b, 1, s, t)
    mask[1, :, :, :2] = torch.finfo(torch.float32).min  # sample 1 cannot see its first two keys
    w = torch.full((b, s), 1.0 / s)
    w[1, 2] = 0.0
    w[1, :2] = 0.5
    seg = torch.zeros(b, t, 2)
    seg[:, 1:3, 0] = 1
    seg[:, 4:6, 1] = 1
    cap = Capture(w, seg, total_len=t)
    cap.record(0, q, k, mask, scaling=0.3, softcap=2.0)
    kk = k.repeat_interleave(h // kvh, dim=1)
    sc = torch.tanh((q @ kk.transpose(-1, -2)) * 0.3 / 2.0) * 2.0 + mask
    p = torch.softmax(sc, -1)
    a = (p * w[:, None, :, None]).sum(2)
    torch.testing.assert_close(cap.doc[0], a @ seg, atol=1e-6, rtol=0)
    torch.testing.assert_close(cap.tok[0], a, atol=1e-6, rtol=0)  # per-head token attention [b, h, t]


@pytest.mark.slow
def test_smollm2_real_weights_equal_reference(smollm2):
    model, tok = smollm2
    item = QueryInput("s1", "Which planet has rings?", ["a", "b", "c"],
                      ["Saturn is a gas giant with a large ring system.", "Bread is baked in an oven.",
                       "Jupiter is the largest planet."])
    got = Scorer(model, tok, {}).score([item])[0]
    ref = reference_scores(model, tok, item, {})
    assert got.raw.shape == (30, 9, 3)
    assert_same(got, ref)


# ---------------------------------------------------------------------------------------------------- device path
# The device path (default) against today's engine (``legacy=True``: repeated cache, host loops) and the eager
# output_attentions oracle: both to ATOL in fp32, token scores included.

def assert_same_tokens(a, b, atol=ATOL):
    assert_same(a, b, atol)
    assert a.tokens is not None and b.tokens is not None and a.tokens.shape == b.tokens.shape
    np.testing.assert_allclose(a.tokens, b.tokens, atol=atol, rtol=0)


@pytest.fixture(scope="module")
def tiny_sliding(tmp_path_factory):
    return load_model(build_tiny_model(tmp_path_factory.mktemp("sw") / "sw", arch="qwen3", seed=2, sliding_window=6))


@pytest.mark.parametrize("arch", ["llama", "qwen3", "sliding"])
def test_device_path_equals_legacy_and_reference(arch, tiny_llama, tiny_qwen3, tiny_sliding):
    model, tok = {"llama": tiny_llama, "qwen3": tiny_qwen3, "sliding": tiny_sliding}[arch]
    cfg = {"order": "reversed"}
    new = Scorer(model, tok, cfg, batch_size=3, token_scores=True)
    assert new.branches == (arch != "sliding")  # sliding windows keep the repeated-cache suffix pass
    got = new.score(ITEMS)  # batches of 3 with different prefix lengths: right padding
    old = Scorer(model, tok, cfg, batch_size=3, token_scores=True, legacy=True).score(ITEMS)
    for item, g, o in zip(ITEMS, got, old):
        assert_same_tokens(g, o)
        assert_same_tokens(g, reference_scores(model, tok, item, cfg))
        assert g.raw.dtype == g.masked_head.dtype == g.tokens.dtype == np.float32
    assert np.ptp(got[3].masked_head) > 1e-3  # signal, not zeros


@pytest.mark.parametrize("reuse", [True, False])
def test_device_path_two_pass_and_batches(tiny_llama, reuse):
    model, tok = tiny_llama
    one = Scorer(model, tok, {}, batch_size=1, reuse_prefix=reuse, token_scores=True).score(ITEMS)
    many = Scorer(model, tok, {}, batch_size=4, reuse_prefix=reuse, token_scores=True).score(ITEMS)
    for a, b in zip(one, many):
        assert_same_tokens(a, b)


@pytest.mark.parametrize("arch", ["llama", "qwen3", "sliding"])
def test_zero_one_two_token_documents(arch, tiny_llama, tiny_qwen3, tiny_sliding):
    """Hand-made spans (as when a span starts after its marker): documents of 0, 1 and 2 tokens, batched."""
    model, tok = {"llama": tiny_llama, "qwen3": tiny_qwen3, "sliding": tiny_sliding}[arch]
    scorer = Scorer(model, tok, {}, batch_size=4, token_scores=True)
    prompts = {}
    for it in ITEMS:
        p = scorer.builder.build(it.query, list(it.texts), it.qid)
        spans = list(p.doc_spans)
        for j, keep in zip(range(len(spans)), (0, 1, 2)):
            s, e = spans[j]
            spans[j] = (e - keep, e)
        p = copy.deepcopy(p)
        p.doc_spans, p.n_tokens = spans, [e - s for s, e in spans]
        prompts[it.qid] = p
    scorer.builder.build = lambda query, docs, qid="": copy.deepcopy(prompts[qid])
    legacy = Scorer(model, tok, {}, batch_size=4, token_scores=True, legacy=True)
    legacy.builder.build = scorer.builder.build
    got, old = scorer.score(ITEMS), legacy.score(ITEMS)
    for it, g, o in zip(ITEMS, got, old):
        assert list(g.n_tokens[:3]) == [0, 1, 2][: len(it.docids)]
        assert_same_tokens(g, o)
        assert_same_tokens(g, reference_scores(model, tok, it, {}, prompt=prompts[it.qid]))
        assert np.all(g.raw[..., 0] == 0) and np.all(g.masked_head[..., 0] == 0)  # an empty span scores 0


def test_branch_dispatch(tiny_llama, tiny_sliding):
    from attnrank.attention.capture import branch_supported

    assert branch_supported(tiny_llama[0].config)
    assert not branch_supported(tiny_sliding[0].config)
    with pytest.raises(ValueError, match="sliding-window"):
        Scorer(*tiny_sliding, {}, branches=True)
    cfg = copy.deepcopy(tiny_llama[0].config)
    cfg.attn_logit_softcapping = 50.0
    assert not branch_supported(cfg)
    # the repeated-cache pass also serves full-attention models when asked (the same numbers)
    model, tok = tiny_llama
    a = Scorer(model, tok, {}, batch_size=3, branches=False, token_scores=True).score(ITEMS)
    b = Scorer(model, tok, {}, batch_size=3, token_scores=True).score(ITEMS)
    for x, y in zip(a, b):
        assert_same_tokens(x, y)


def test_masked_segments_equal_host_masked_sum():
    from attnrank.attention.engine import _masked_segments, _span_tokens
    from attnrank.attention.scores import masked_sum

    g = torch.Generator().manual_seed(0)
    spans = [[(2, 2), (3, 4), (5, 7), (7, 19), (20, 31)], [(0, 9), (9, 9), (12, 14), (14, 15), (0, 0)]]
    n_docs = [5, 4]
    p = 33
    c = torch.rand(2, 6, p, generator=g, dtype=torch.float64) * 1e-2
    c[0, :, 10] = -1.0  # an outlier of document 3 of query 0: dropped
    starts = torch.tensor([[s for s, _ in sp] for sp in spans])
    ends = torch.tensor([[e for _, e in sp] for sp in spans])
    seg = torch.full((2, p), 5, dtype=torch.long)
    for b, sp in enumerate(spans):
        pos, owner = _span_tokens(sp[: n_docs[b]])
        seg[b, torch.from_numpy(pos)] = torch.from_numpy(owner)
    got = _masked_segments(c, seg, starts, ends)
    for b, sp in enumerate(spans):
        sp = sp[: n_docs[b]]
        pos, _ = _span_tokens(sp)
        want = masked_sum(c[b].numpy()[:, pos], [e - s for s, e in sp])
        np.testing.assert_allclose(got[b, :, : n_docs[b]].numpy(), want, atol=1e-12, rtol=0)
    assert got[0, 0, 3] > c[0, 0, 7:19].sum() + 0.5  # the outlier was really dropped


def test_device_path_has_no_host_sync_inside_the_pass(tiny_qwen3):
    """No scalar read-back (item / bool / nonzero) in a whole device-path run, no blocking copy; one wait per batch."""
    from attnrank.attention import engine

    model, tok = tiny_qwen3
    scorer = Scorer(model, tok, {}, batch_size=2, token_scores=True)
    scorer.score(ITEMS[:1])
    before = dict(engine.TRANSFERS)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        scorer.score(ITEMS)
    names = [e.name for e in prof.events()]
    assert not [n for n in names if n in ("aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::is_nonzero")]
    assert engine.TRANSFERS["blocking"] == before["blocking"]
    assert engine.TRANSFERS["sync"] - before["sync"] == 2  # 4 queries, batch 2: one wait per batch
    assert names.count("prefix") == 2 and names.count("suffix") == 2
    legacy = Scorer(model, tok, {}, batch_size=2, legacy=True)
    before = dict(engine.TRANSFERS)
    legacy.score(ITEMS)
    assert engine.TRANSFERS["blocking"] - before["blocking"] >= 2 * 5  # today's path: blocking copies every batch
