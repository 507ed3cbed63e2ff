"""Masked calibration over a head subset / a layer window, as the reference repositories compute it, equals a direct
computation from eager ``output_attentions`` on a tiny model (and the single-head / single-layer rows too)."""

from __future__ import annotations

import numpy as np
import torch

from attnrank.attention import methods
from attnrank.attention.capture import attn_implementation
from attnrank.attention.engine import Scorer
from attnrank.attention.prompts import PromptBuilder, model_max_length
from attnrank.attention.scores import masked_group, masked_sum

from test_engine import ITEMS

ATOL = 1e-5


def direct(model, tok, item, cfg, pairs):
    """Eager attention, two full passes; sum the chosen heads' calibrated token scores, mask per document, sum."""
    p = PromptBuilder(tok, cfg, model_max_length(model)).build(item.query, list(item.texts), item.qid)
    pl = len(p.prefix_ids)
    att = {}
    with torch.inference_mode(), attn_implementation(model, "eager"):
        for which in ("query", "na"):
            ids = torch.tensor([p.full_ids(calibration=(which == "na"))])
            out = model(input_ids=ids, output_attentions=True, use_cache=False)
            att[which] = torch.stack([a[0, :, pl:, :pl].double().mean(1) for a in out.attentions])  # [L, H, P]
    cal = att["query"] - att["na"]
    c = sum(cal[l, h] for l, h in pairs)
    scores = []
    for s, e in p.doc_spans:
        d = c[s:e]
        if e - s == 0:
            scores.append(0.0)
            continue
        keep = d > d.mean() - 2 * d.std() if e - s > 1 else torch.ones_like(d, dtype=torch.bool)
        scores.append(float((d * keep).sum()))
    return np.array(scores)


def test_masked_subset_and_window_equal_direct(tiny_llama):
    model, tok = tiny_llama
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    cfg = {"order": "reversed"}
    got = Scorer(model, tok, cfg, token_scores=True).score(ITEMS)
    subset = [(0, 1), (n_layers - 1, 0), (1, n_heads - 1)]
    window = (1, n_layers - 1)
    win_pairs = [(l, h) for l in range(window[0], window[1] + 1) for h in range(n_heads)]
    heads_tab = methods_heads_table(n_layers, n_heads, subset)
    for item, s in zip(ITEMS, got):
        want = direct(model, tok, item, cfg, subset)
        np.testing.assert_allclose(masked_group(s, [l for l, _ in subset], [h for _, h in subset]), want, atol=ATOL, rtol=0)
        # the methods use exactly this: a QRHead method whose top-3 heads are the subset, a Selective-ICR window
        np.testing.assert_allclose(methods.aggregate(s, "qrhead", {"k_heads": 3}, {"heads": heads_tab}), want, atol=ATOL, rtol=0)
        want_w = direct(model, tok, item, cfg, win_pairs)
        np.testing.assert_allclose(masked_group(s, range(window[0], window[1] + 1)), want_w, atol=ATOL, rtol=0)
        np.testing.assert_allclose(methods.aggregate(s, "selective", {}, {"window": window}), want_w, atol=ATOL, rtol=0)
        # single head / single layer rows computed in the pass
        for l in range(n_layers):
            np.testing.assert_allclose(s.masked_layer[l], direct(model, tok, item, cfg, [(l, h) for h in range(n_heads)]), atol=ATOL, rtol=0)
        np.testing.assert_allclose(s.masked_head[1, 2], direct(model, tok, item, cfg, [(1, 2)]), atol=ATOL, rtol=0)
        # the whole model through the tokens = ICR's cached score
        np.testing.assert_allclose(masked_group(s, range(n_layers)), s.masked_prefix[-1], atol=ATOL, rtol=0)


def methods_heads_table(n_layers, n_heads, best):
    """A head table whose qrhead ranking puts ``best`` first (in that order)."""
    from attnrank.selection.heads import head_table

    score = np.zeros((n_layers, n_heads))
    for i, (l, h) in enumerate(best):
        score[l, h] = 10 - i
    return head_table({"qr_mass": score, "core": score, "qrhead": score})


def test_masked_sum_rules():
    # one-token document keeps its token; empty scores 0; an outlier token below mean - 2 std is dropped
    c = np.array([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -10.0, 2.0])
    got = masked_sum(c, [1, 0, 9, 1])
    assert got[0] == 0.5 and got[1] == 0.0 and got[3] == 2.0
    assert got[2] == 8.0  # -10 dropped
    # rows are independent
    np.testing.assert_allclose(masked_sum(np.stack([c, 2 * c]), [1, 0, 9, 1])[1], 2 * got)


def test_tokens_survive_the_cache(tmp_path, tiny_llama_dir):
    import polars as pl

    from attnrank.attention import scorecache

    rows = [(it.qid, it.query, d, r + 1, 1.0, t) for it in ITEMS for r, (d, t) in enumerate(zip(it.docids, it.texts))]
    cands = pl.DataFrame(rows, schema=["qid", "query", "docid", "rank", "score", "text"], orient="row")
    for dtype, atol in (("float32", 0.0), ("float16", 1e-3)):
        out = scorecache.compute_cache(tiny_llama_dir, cands, tmp_path / dtype, shard_size=3, progress=False,
                                       token_scores=True, token_dtype=dtype)
        got = scorecache.load_scores(out)
        assert [s.qid for s in got] == [it.qid for it in ITEMS]
        for s in got:
            assert s.tokens.dtype == np.dtype(dtype) and s.tokens.shape[-1] == s.n_tokens.sum()
            np.testing.assert_allclose(masked_group(s, range(s.n_layers)), s.masked_prefix[-1], atol=atol + 1e-5, rtol=0)
    plain = scorecache.load_scores(scorecache.compute_cache(tiny_llama_dir, cands, tmp_path / "none", progress=False))
    assert all(s.tokens is None and s.masked_head is not None for s in plain)
