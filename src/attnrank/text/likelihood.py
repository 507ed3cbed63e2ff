"""Pointwise likelihood re-rankers: yes/no relevance logits (Liang et al., HELM) and query likelihood (UPR).

- ``yesno``: prompt ``Passage: <doc>\\nQuery: <q>\\nDoes the passage answer the query? Answer Yes or No.``;
  score = logit(Yes) - logit(No) at the first answer position (= log P(Yes)/P(No) restricted to the two).
  "Yes"/"No" are the first tokens of the answer words (no leading space inside a chat template, one in plain
  text, where the prompt ends with ``Answer:``).
- ``qlm`` (Sachan et al. UPR): prompt ``Passage: <doc>\\nPlease write a question based on this passage.``, then
  the query tokens teacher-forced; score = mean log-probability of the query tokens.

One forward per document, batched (sorted by length, right padded); only the needed positions go through the LM
head. When all of a query's prompts share a token prefix of at least ``prefix_cache_min`` tokens (chat-template
head, system prompt), it is run once and its KV cache reused by every batch.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from .lm import Frame, model_device, pad_id, position_logits
from .base import Doc, Ranked, Stats, resolve_params, sort_ranked

def _likelihood_params(kind: str, params: dict) -> dict:
    return resolve_params(kind, params)


def yesno_prompt(frame: Frame, query: str, text: str) -> list[int]:
    """HELM-style relevance question for one passage, as token ids (ends where the answer starts)."""
    body = (
        frame.enc("Passage:") + frame.doc(text)
        + frame.enc("\nQuery: " + query.strip() + "\nDoes the passage answer the query? Answer Yes or No.")
    )
    return frame.wrap(body, answer_prefix="Answer:")


def yesno_tokens(frame: Frame) -> tuple[int, int]:
    """Token ids of the answers "Yes" and "No" (InputError when the tokenizer cannot tell them apart)."""
    yes, no = frame.answer_token("Yes", "yesno"), frame.answer_token("No", "yesno")
    unk = frame.tok.unk_token_id
    if yes == no or unk is not None and unk in (yes, no):
        raise InputError("methods.yesno: the tokenizer maps 'Yes' and 'No' to the same or an unknown token")
    return yes, no


def rerank_yesno(model, tokenizer, query: str, docs: list[Doc], params: dict, stats: Stats) -> Ranked:
    """Pointwise yes/no: score = logit(Yes) - logit(No) after the relevance question."""
    p = _likelihood_params("yesno", params)
    frame = Frame(tokenizer, p)
    yes, no = yesno_tokens(frame)
    seqs = [yesno_prompt(frame, query, t) for _, t in docs]
    scores = position_logits(
        model, seqs, [[len(s) - 1] for s in seqs], lambda lg, i: lg[0, yes] - lg[0, no], stats,
        p["batch_size"], p["prefix_cache"], p["prefix_cache_min"], pad_id(tokenizer),
    )
    return sort_ranked([(d, s) for (d, _), s in zip(docs, scores)])


# ---------------------------------------------------------------------------------------------------- query likelihood
def qlm_prompt(frame: Frame, text: str) -> list[int]:
    """UPR's question-generation prompt for one passage (the query tokens follow it)."""
    body = frame.enc("Passage:") + frame.doc(text) + frame.enc("\nPlease write a question based on this passage.")
    return frame.wrap(body, answer_prefix="Question:")


def qlm_query_ids(frame: Frame, query: str) -> list[int]:
    """The teacher-forced query tokens (a leading space in a plain prompt, none after a chat template)."""
    q = query.strip()
    return frame.enc(q if frame.chat else " " + q) if q else []


def rerank_qlm(model, tokenizer, query: str, docs: list[Doc], params: dict, stats: Stats) -> Ranked:
    """Query likelihood: mean log P(query token | passage prompt, earlier query tokens)."""
    p = _likelihood_params("qlm", params)
    frame = Frame(tokenizer, p)
    q = qlm_query_ids(frame, query)
    if not q or not docs:
        return sort_ranked([(d, 0.0) for d, _ in docs])
    prompts = [qlm_prompt(frame, t) for _, t in docs]
    seqs = [s + q for s in prompts]
    positions = [list(range(len(s) - 1, len(s) - 1 + len(q))) for s in prompts]
    target = torch.tensor(q, dtype=torch.long, device=model_device(model))

    def mean_logprob(logits: torch.Tensor, i: int) -> float:
        lp = torch.log_softmax(logits, dim=-1)
        return float(lp.gather(1, target[:, None]).mean())

    scores = position_logits(
        model, seqs, positions, mean_logprob, stats,
        p["batch_size"], p["prefix_cache"], p["prefix_cache_min"], pad_id(tokenizer),
    )
    return sort_ranked([(d, s) for (d, _), s in zip(docs, scores)])
