"""Pointwise likelihood re-rankers: scores equal a hand computation from the model's own logits."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from attnrank.text import likelihood as L
from attnrank.text.lm import Frame
from attnrank.text.base import Stats, resolve_params
from attnrank.errors import InputError
from attnrank.models import build_tiny_model, load_model


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def tiny(request, tmp_path_factory):
    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / request.param, arch=request.param, seed=1)
    return load_model(path, device="cpu")


DOCS = [
    ("d3", "planet star orbit telescope galaxy comet moon solar"),
    ("d1", "recipe oven flour"),
    ("d2", "the planet"),
    ("d0", "court judge lawyer contract trial verdict statute appeal jury evidence rights witness"),
    ("d4", "planet star orbit telescope galaxy comet moon solar eclipse"),
]


def _full_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("batch_size,prefix_min", [(1, 8), (2, 2), (8, 2)])
def test_yesno_equals_hand_computation(tiny, chat, batch_size, prefix_min):
    model, tok = tiny
    params = {"batch_size": batch_size, "prefix_cache_min": prefix_min, "use_chat_template": chat, "max_doc_tokens": 6}
    st = Stats()
    ranked = L.rerank_yesno(model, tok, "planet orbit", DOCS, params, st)
    frame = Frame(tok, resolve_params("yesno", params))
    yes = tok.encode("Yes" if chat else " Yes", add_special_tokens=False)[0]
    no = tok.encode("No" if chat else " No", add_special_tokens=False)[0]
    assert yes != no
    hand = {}
    for d, t in DOCS:
        lg = _full_logits(model, L.yesno_prompt(frame, "planet orbit", t))[-1]
        hand[d] = float(lg[yes] - lg[no])
    got = dict(ranked)
    assert got.keys() == hand.keys()
    for d in hand:
        assert got[d] == pytest.approx(hand[d], abs=1e-4)
    assert [d for d, _ in ranked] == sorted(hand, key=lambda d: (-hand[d], d))
    assert st.forward_passes == len(DOCS)
    assert st.model_calls >= -(-len(DOCS) // batch_size)


@pytest.mark.parametrize("batch_size,prefix_cache", [(1, False), (2, True), (8, True)])
def test_qlm_equals_hand_computation(tiny, batch_size, prefix_cache):
    model, tok = tiny
    params = {"batch_size": batch_size, "prefix_cache": prefix_cache, "prefix_cache_min": 2}
    st = Stats()
    query = "planet orbit comet"
    ranked = L.rerank_qlm(model, tok, query, DOCS, params, st)
    frame = Frame(tok, resolve_params("qlm", params))
    q = tok.encode(query, add_special_tokens=False)
    assert len(q) == 3
    hand = {}
    for d, t in DOCS:
        prompt = L.qlm_prompt(frame, t)
        lp = torch.log_softmax(_full_logits(model, prompt + q), dim=-1)
        hand[d] = sum(float(lp[len(prompt) - 1 + j, q[j]]) for j in range(len(q))) / len(q)
    got = dict(ranked)
    for d in hand:
        assert got[d] == pytest.approx(hand[d], abs=1e-4)
    assert [d for d, _ in ranked] == sorted(hand, key=lambda d: (-hand[d], d))
    assert all(s < 0 for s in got.values())


def test_prefix_cache_is_used_and_exact(tiny):
    model, tok = tiny
    on, off = Stats(), Stats()
    a = L.rerank_yesno(model, tok, "planet", DOCS, {"batch_size": 2, "prefix_cache_min": 2}, on)
    b = L.rerank_yesno(model, tok, "planet", DOCS, {"batch_size": 2, "prefix_cache": False}, off)
    assert on.model_calls == off.model_calls + 1  # the shared prefix pass
    assert on.prompt_tokens < off.prompt_tokens
    for (d1, s1), (d2, s2) in zip(a, b):
        assert d1 == d2 and s1 == pytest.approx(s2, abs=1e-4)


def test_ties_broken_by_docid_and_edge_cases(tiny):
    model, tok = tiny
    same = [("b", "planet star"), ("a", "planet star"), ("c", "planet star")]
    for fn in (L.rerank_yesno, L.rerank_qlm):
        # one document per forward: identical inputs give bit-identical scores (rows of a batch may differ by 1 ulp)
        ranked = fn(model, tok, "planet", same, {"batch_size": 1, "prefix_cache": False}, Stats())
        assert len({s for _, s in ranked}) == 1
        assert [d for d, _ in ranked] == ["a", "b", "c"]
        assert fn(model, tok, "planet", [], {}, Stats()) == []
        one = fn(model, tok, "planet", same[:1], {}, Stats())
        assert [d for d, _ in one] == ["b"]
    st = Stats()
    assert L.rerank_qlm(model, tok, "  ", same, {}, st) == [("a", 0.0), ("b", 0.0), ("c", 0.0)]
    assert st.forward_passes == 0
    with pytest.raises(InputError, match="batch_size"):
        L.rerank_yesno(model, tok, "planet", same, {"batch_size": 0}, Stats())


def test_empty_document_text(tiny):
    model, tok = tiny
    ranked = L.rerank_yesno(model, tok, "planet", [("x", ""), ("y", "planet")], {}, Stats())
    assert sorted(d for d, _ in ranked) == ["x", "y"]
