"""Every prompt a text re-ranker builds holds exactly its own passages, however many prompts came before it.

The failure class: a memoised token list returned by reference and extended by its caller, so that each later
prompt carries the passages of every earlier one. The tests drive whole re-rankings (many prompts in a row, one
shared ``Frame``) and check each prompt against the passages it was built for and against a fresh build.
"""

import re

import pytest

from attnrank.text import rankgpt as G
from attnrank.text import lm
from attnrank.text import base as T
from attnrank.text import setwise as S
from attnrank.models import build_tiny_tokenizer

PARAMS = {"max_doc_tokens": 40, "max_doc_words": None, "use_chat_template": True}
MARK = re.compile(r"galaxy (\d) (\d) (\d) comet")


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def _docs(n):
    # each passage carries its number as three digit tokens between two marker words
    return [(f"d{i:03d}", f"planet star galaxy {' '.join(f'{i:03d}')} comet orbit moon") for i in range(n)]


def _marks(tok, ids):
    return sorted(int("".join(m)) for m in MARK.findall(tok.decode(ids)))


def _check(tok, calls, build_fresh):
    assert calls, "no prompt was built"
    for k, (texts, ids, args) in enumerate(calls):
        want = sorted(int("".join(MARK.search(t).groups())) for t in texts)
        assert _marks(tok, ids) == want, f"prompt {k + 1} holds other passages than its own"
        assert ids == build_fresh(texts, args), f"prompt {k + 1} differs from a fresh build of the same passages"


def test_rankgpt_100_candidates_window_20_stride_10(tok, monkeypatch):
    calls, real = [], G.rankgpt_prompt

    def spy(frame, query, texts):
        ids = real(frame, query, texts)
        calls.append((list(texts), list(ids), None))
        return ids

    monkeypatch.setattr(G, "rankgpt_prompt", spy)
    monkeypatch.setattr(G, "greedy_generate", lambda *a, **k: "[2] > [1]")  # swap the first two of every window
    docs = _docs(100)
    ranked = G.rerank_rankgpt(None, tok, "planet orbit", docs, {"window": 20, "stride": 10, **PARAMS}, T.Stats())
    assert sorted(d for d, _ in ranked) == sorted(d for d, _ in docs)
    assert len(calls) == len(list(G.sliding_windows(100, 20, 10))) == 9
    assert all(len(texts) == 20 for texts, _, _ in calls)
    _check(tok, calls, lambda texts, _: real(lm.Frame(tok, PARAMS), "planet orbit", texts))


@pytest.mark.parametrize("scorer", ["likelihood", "generation"])
def test_setwise_30_candidates(tok, monkeypatch, scorer):
    calls, real = [], S.setwise_prompt

    def spy(frame, query, texts, labels):
        ids = real(frame, query, texts, labels)
        calls.append((list(texts), list(ids), list(labels)))
        return ids

    monkeypatch.setattr(S, "setwise_prompt", spy)
    # the last passage of every set wins: many swaps, so the heap visits many different sets
    monkeypatch.setattr(S, "position_logits", lambda model, prompts, positions, fn, *a: [len(calls[-1][0]) - 1])
    monkeypatch.setattr(S, "greedy_generate", lambda *a, **k: calls[-1][2][-1])
    monkeypatch.setattr(S, "pad_id", lambda tokenizer: 0)
    docs = _docs(30)
    ranked = S.rerank_setwise(None, tok, "planet orbit", docs, {"c": 3, "scorer": scorer, **PARAMS}, T.Stats())
    assert sorted(d for d, _ in ranked) == sorted(d for d, _ in docs)
    assert len(calls) > 15
    _check(tok, calls, lambda texts, labels: real(lm.Frame(tok, PARAMS), "planet orbit", texts, labels))


def test_frame_enc_returns_a_new_list(tok):
    frame = lm.Frame(tok, PARAMS)
    a = frame.enc("planet star")
    a += [1, 2, 3]
    assert frame.enc("planet star") == list(tok.encode("planet star", add_special_tokens=False))
