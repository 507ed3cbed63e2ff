"""RankGPT listwise re-ranking: permutation parser, sliding windows, tiny-model runs, bad generations, driver."""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl
import pytest
import torch

from attnrank.text import rankgpt as G
from attnrank.text import lm, rerank
from attnrank.text import base as T
from attnrank.errors import InputError
from attnrank.models import build_tiny_model, load_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "llama", arch="llama", seed=0)
    return load_model(path, device="cpu")


def _docs(n):
    words = "planet star orbit telescope galaxy comet moon solar eclipse nebula".split()
    return [(f"d{i:02d}", " ".join(words[(i + j) % len(words)] for j in range(6))) for i in range(n)]


def _is_permutation(ranked, docs):
    return sorted(d for d, _ in ranked) == sorted(d for d, _ in docs) and len(ranked) == len(docs)


def _mute(model, tokenizer):
    """A copy of the model whose every next token is EOS (it 'emits nothing')."""
    import copy

    m = copy.deepcopy(model)
    head = torch.nn.Linear(m.config.hidden_size, m.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[tokenizer.eos_token_id] = 10.0
    m.lm_head = head
    return m


# ---------------------------------------------------------------------------------------------------- parser
@pytest.mark.parametrize(
    "text,n,order,valid,dup,oor,missing",
    [
        ("[2] > [1] > [3]", 3, [1, 0, 2], 3, 0, 0, 0),
        ("2 > 1", 3, [1, 0, 2], 2, 0, 0, 1),
        ("[2] > [2] > [1] > [3]", 3, [1, 0, 2], 3, 1, 0, 0),
        ("[5] > [1] > [0] > [-1]", 3, [0, 1, 2], 1, 0, 3, 2),
        ("I cannot rank these passages.", 3, [0, 1, 2], 0, 0, 0, 3),
        ("", 3, [0, 1, 2], 0, 0, 0, 3),
        ("[3] > [1] (passage 2 of 10 is off-topic)", 3, [2, 0, 1], 2, 0, 0, 1),  # brackets win over bare numbers
        ("[10] > [9] > [1]", 10, [9, 8, 0, 1, 2, 3, 4, 5, 6, 7], 3, 0, 0, 7),
    ],
)
def test_parse_permutation_cases(text, n, order, valid, dup, oor, missing):
    p = G.parse_permutation(text, n)
    assert p.order == order
    assert (p.n_valid, p.n_duplicate, p.n_out_of_range, p.n_missing) == (valid, dup, oor, missing)
    assert sorted(p.order) == list(range(n))
    assert p.failed == (valid == 0)
    assert p.repaired == (valid > 0 and bool(dup or oor or missing))


def test_parse_permutation_no_items():
    p = G.parse_permutation("[1] > [2]", 0)
    assert p.order == [] and not p.failed and p.n_out_of_range == 2


# ---------------------------------------------------------------------------------------------------- windows
def test_sliding_windows():
    w = G.sliding_windows(100, 20, 10)
    assert w[0] == (80, 100) and w[-1] == (0, 20) and len(w) == 9
    assert G.sliding_windows(25, 20, 10) == [(5, 25), (0, 15)]  # the top is covered even when 25-20 % 10 != 0
    assert G.sliding_windows(3, 20, 10) == [(0, 3)]
    assert G.sliding_windows(20, 20, 10) == [(0, 20)]
    assert G.sliding_windows(0, 20, 10) == []


@pytest.mark.parametrize("n,window,stride", [(10, 4, 2), (23, 6, 3), (7, 20, 10), (9, 3, 1)])
def test_sliding_window_order_bubbles_up_the_top(n, window, stride):
    rng = random.Random(n)
    rel = [rng.random() for _ in range(n)]
    order = G.sliding_window_order(n, window, stride, lambda idx: sorted(idx, key=lambda j: -rel[j]))
    truth = sorted(range(n), key=lambda j: -rel[j])
    keep = min(window - stride, n) if n > window else n  # one pass fixes the top window - stride (all if one window)
    assert order[:keep] == truth[:keep]
    assert sorted(order) == list(range(n))


def test_sliding_window_order_rejects_non_permutation():
    with pytest.raises(ValueError):
        G.sliding_window_order(5, 3, 1, lambda idx: idx[:-1])


# ---------------------------------------------------------------------------------------------------- tiny model
@pytest.mark.parametrize("n,window,stride", [(7, 4, 2), (5, 20, 10), (1, 4, 2), (0, 4, 2)])
def test_rankgpt_full_permutation(tiny, n, window, stride):
    model, tok = tiny
    docs = _docs(n)
    st = T.Stats()
    ranked = G.rerank_rankgpt(model, tok, "planet orbit", docs, {"window": window, "stride": stride}, st)
    assert _is_permutation(ranked, docs)
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert st.generations == (len(G.sliding_windows(n, window, stride)) if n > 1 else 0)
    assert st.generated_tokens >= st.generations and st.forward_passes == st.generated_tokens
    assert st.parse_failures + st.parse_repairs <= st.generations


def test_rankgpt_model_that_emits_nothing(tiny):
    model, tok = tiny
    mute = _mute(model, tok)
    docs = _docs(6)
    st = T.Stats()
    ranked = G.rerank_rankgpt(mute, tok, "planet orbit", docs, {"window": 4, "stride": 2}, st)
    assert [d for d, _ in ranked] == [d for d, _ in docs]  # input order kept
    assert st.generations == 2 and st.empty_generations == 2 and st.parse_failures == 2
    assert st.generated_tokens == 2  # the EOS token each


def test_rankgpt_repairs_are_applied_and_counted(tiny, monkeypatch):
    model, tok = tiny
    answers = iter(["[2] > [2] > [9] > [1]"])
    monkeypatch.setattr(G, "greedy_generate", lambda *a, **k: next(answers))
    st = T.Stats()
    ranked = G.rerank_rankgpt(model, tok, "q", _docs(3), {"window": 5, "stride": 2}, st)
    assert [d for d, _ in ranked] == ["d01", "d00", "d02"]
    assert st.parse_repairs == 1 and st.parse_failures == 0


def test_rankgpt_prompt_lists_every_passage(tiny):
    _, tok = tiny
    frame = lm.Frame(tok, T.resolve_params("rankgpt", {}))
    text = tok.decode(G.rankgpt_prompt(frame, "planet orbit", ["comet moon", "solar eclipse", "galaxy"]))
    for i in (1, 2, 3):
        assert f"[ {i} ]" in text
    assert text.count("planet orbit") == 2 and text.endswith("assistant")


def test_truncation_matches_attention_prompt(tiny):
    from attnrank.attention.prompts import PromptBuilder

    _, tok = tiny
    long = " ".join(["planet"] * 50)
    frame = lm.Frame(tok, T.resolve_params("rankgpt", {"max_doc_tokens": 7}))
    assert frame.doc(long) == PromptBuilder(tok, {"max_doc_tokens": 7})._doc_tokens(long)
    assert len(frame.doc(long)) == 7


def test_params_validation(tiny):
    model, tok = tiny
    with pytest.raises(InputError, match="stride"):
        G.rerank_rankgpt(model, tok, "q", _docs(3), {"window": 2, "stride": 3}, T.Stats())
    with pytest.raises(InputError, match=r"methods.rankgpt.windw: unknown parameter for kind 'rankgpt' \(allowed: "):
        G.rerank_rankgpt(model, tok, "q", _docs(3), {"windw": 2}, T.Stats())
    with pytest.raises(InputError, match="max_doc_tokens"):
        G.rerank_rankgpt(model, tok, "q", _docs(3), {"max_doc_tokens": 0}, T.Stats())
    with pytest.raises(InputError, match="methods.rankgpt.doc_max_tokens: was renamed: use 'max_doc_tokens'"):
        T.resolve_params("rankgpt", {"doc_max_tokens": 5})
    assert T.resolve_params("rankgpt", {"kind": "rankgpt", "max_doc_tokens": 5})["max_doc_tokens"] == 5


# ---------------------------------------------------------------------------------------------------- driver
def _candidates():
    rows = []
    for qid, query, n in (("q1", "planet orbit", 5), ("q2", "comet moon", 1), ("q3", "solar", 3)):
        for r, (d, t) in enumerate(_docs(n), 1):
            rows.append({"qid": qid, "query": query, "docid": d, "rank": r, "score": 10.0 - r, "text": t})
    return pl.DataFrame(rows)


@pytest.mark.parametrize("kind,params", [
    ("rankgpt", {"window": 3, "stride": 1}),
    ("yesno", {"batch_size": 2}),
    ("qlm", {"batch_size": 2}),
    ("setwise", {"scorer": "likelihood", "c": 2}),
    ("setwise", {"scorer": "generation", "c": 2}),
])
def test_rerank_candidates_every_kind(tiny, kind, params):
    cands = _candidates()
    run, stats = rerank.rerank_candidates(kind, tiny, cands, params, progress=False)
    assert run.columns == ["qid", "docid", "score"]
    got = sorted(zip(run["qid"], run["docid"]))
    assert got == sorted(zip(cands["qid"], cands["docid"]))
    assert stats["n_queries"] == 3 and stats["method_kind"] == kind
    assert stats["forward_passes"] > 0 and stats["seconds_total"] >= 0


def test_rerank_candidates_bad_input(tiny):
    with pytest.raises(InputError, match="unknown re-ranker kind"):
        rerank.rerank_candidates("bogus", tiny, _candidates(), {}, progress=False)
    with pytest.raises(InputError, match="missing column"):
        rerank.rerank_candidates("yesno", tiny, _candidates().drop("text"), {}, progress=False)
