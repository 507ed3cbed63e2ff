"""ICR prompt builder: exact spans, shared prefix, order, truncation, templates."""

from __future__ import annotations

import copy
import logging

import pytest

from attnrank.errors import InputError
from attnrank.models import build_tiny_tokenizer
from attnrank.attention.prompts import PromptBuilder, PromptConfig, prompt_order

DOCS = ["planet star orbit telescope", "bank loan interest market stock bond", "", "whale coral reef"]


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


def words(tok, ids):
    return tok.decode(ids).split()


def test_spans_are_exact_and_prefix_is_shared(tok):
    b = PromptBuilder(tok, {})
    p = b.build("planet orbit", DOCS, qid="q")
    for j, (s, e) in enumerate(p.doc_spans):
        assert words(tok, p.prefix_ids[s:e]) == ["[", str(p.positions[j] + 1), "]"] + DOCS[j].split()
        assert p.n_tokens[j] == e - s
    assert p.full_ids() == p.prefix_ids + p.query_ids
    assert p.full_ids(calibration=True)[: len(p.prefix_ids)] == p.prefix_ids
    assert words(tok, p.query_ids)[-7:] == ["query", ":", "planet", "orbit", "<|im_end|>", "<|im_start|>", "assistant"]
    assert words(tok, p.na_ids)[-6:-3] == ["n", "/", "a"]
    # the query span starts with the late instruction, the prefix ends before it
    assert words(tok, p.query_ids)[:3] == ["please", "find", "information"]
    assert tok.decode(p.prefix_ids).startswith("<s> <|im_start|> user")


def test_plain_prompt_without_chat_template(tok, caplog):
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    with caplog.at_level(logging.INFO, logger="attnrank.attention.prompts"):
        p = PromptBuilder(plain, {}).build("planet", DOCS[:1])
    assert "no chat template" in caplog.text
    assert "<|im_start|>" not in tok.decode(p.prefix_ids + p.query_ids)
    assert words(plain, p.query_ids)[-3:] == ["query", ":", "planet"]


def test_enable_thinking_false_is_passed(tok):
    t = copy.deepcopy(tok)
    t.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                       "{% if enable_thinking is defined and enable_thinking is false %} [ n / a ]{% endif %}")
    p = PromptBuilder(t, {}).build("planet", DOCS[:1])
    assert words(t, p.query_ids)[-5:] == ["[", "n", "/", "a", "]"]


@pytest.mark.parametrize("order", ["retrieval", "reversed", "shuffle"])
def test_order(tok, order):
    p = PromptBuilder(tok, {"order": order, "seed": 5}).build("q", DOCS, qid="q7")
    assert sorted(p.positions) == list(range(len(DOCS)))
    starts = [p.doc_spans[j][0] for j in range(len(DOCS))]
    # the candidate placed in slot s comes s-th in the prompt
    assert sorted(range(len(DOCS)), key=lambda j: starts[j]) == sorted(range(len(DOCS)), key=lambda j: p.positions[j])
    if order == "retrieval":
        assert p.positions == [0, 1, 2, 3]
    if order == "reversed":
        assert p.positions == [3, 2, 1, 0]


def test_shuffle_deterministic_per_seed_and_query():
    a = prompt_order(20, "shuffle", 1, "q1")
    assert a == prompt_order(20, "shuffle", 1, "q1")
    assert a != prompt_order(20, "shuffle", 2, "q1")
    assert a != prompt_order(20, "shuffle", 1, "q2")
    assert sorted(a) == list(range(20))


def test_doc_truncation_tokens_and_words(tok):
    long = " ".join(["planet"] * 50)
    p = PromptBuilder(tok, {"max_doc_tokens": 10}).build("q", [long])
    assert p.n_tokens[0] == 3 + 10
    p = PromptBuilder(tok, {"max_doc_words": 4, "max_doc_tokens": None}).build("q", [long + " star"])
    assert words(tok, p.prefix_ids[slice(*p.doc_spans[0])])[3:] == ["planet"] * 4


def test_overlong_prompt_proportional_truncation(tok, caplog):
    docs = [" ".join(["star"] * 40), " ".join(["moon"] * 20)]
    b = PromptBuilder(tok, {"max_length": 80, "max_doc_tokens": None})
    with caplog.at_level(logging.WARNING, logger="attnrank.attention.prompts"):
        p = b.build("planet", docs, qid="long-q")
    assert "long-q" in caplog.text and "exceeds max_length 80" in caplog.text
    assert p.truncated and p.length <= 80
    body = [n - 3 for n in p.n_tokens]  # minus the "[i]" marker
    assert 0 < body[1] < 20 and body[0] == pytest.approx(2 * body[1], abs=1)
    # the model's context is the default limit
    assert PromptBuilder(tok, {"max_doc_tokens": None}, model_max_length=80).build("planet", docs).truncated


def test_empty_query_and_no_docs(tok):
    p = PromptBuilder(tok, {}).build("", [])
    assert p.doc_spans == [] and len(p.query_ids) > 5
    assert words(tok, p.query_ids)[:1] == ["please"]


def test_config_validation():
    with pytest.raises(InputError, match="unknown key"):
        PromptConfig.from_dict({"orderr": "x"})
    with pytest.raises(InputError, match="prompt.order"):
        PromptConfig.from_dict({"order": "random"})
    with pytest.raises(InputError, match="max_doc_tokens"):
        PromptConfig.from_dict({"max_doc_tokens": -1})
    assert PromptConfig.from_dict(None) == PromptConfig()


@pytest.mark.slow
def test_real_bpe_tokenizer_spans(smollm2_dir):
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(smollm2_dir)
    docs = ["Saturn has rings.", "Bread is baked in an oven."]
    p = PromptBuilder(t, {}).build("Which planet has rings?", docs)
    for j, (s, e) in enumerate(p.doc_spans):
        assert t.decode(p.prefix_ids[s:e]) == f"[{j + 1}] {docs[j]}"
    assert t.decode(p.query_ids).endswith("Query: Which planet has rings?<|im_end|>\n<|im_start|>assistant\n")
    # concatenated pieces give the same text as the template applied to the whole message
    whole = t.apply_chat_template([{"role": "user", "content": t.decode(p.prefix_ids + p.query_ids).split("user\n", 1)[1]
                                    .rsplit("<|im_end|>", 1)[0]}], tokenize=False, add_generation_prompt=True)
    assert t.decode(p.prefix_ids + p.query_ids) == whole
