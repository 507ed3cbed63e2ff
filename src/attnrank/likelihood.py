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

import copy
from typing import Callable

import torch

from .errors import InputError
from .generation import Doc, Frame, Ranked, Stats, model_device, resolve_params, sort_ranked

def _common_prefix(seqs: list[list[int]]) -> int:
    if not seqs:
        return 0
    n = min(map(len, seqs))
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def _split_model(model):
    """(decoder body, LM head) when the model exposes them, else (None, None) (then the full model is run)."""
    base = getattr(model, "model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if base is None or head is None or getattr(model.config, "logit_scale", None) is not None:
        return None, None
    return base, head


def _head_logits(model, head, hidden: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


@torch.inference_mode()
def position_logits(
    model,
    seqs: list[list[int]],
    positions: list[list[int]],
    reduce: Callable[[torch.Tensor, int], float],
    stats: Stats,
    batch_size: int = 8,
    prefix_cache: bool = True,
    prefix_cache_min: int = 8,
    pad_id: int = 0,
) -> list[float]:
    """For each sequence i, ``reduce(logits[positions[i]] as float32 [len, V], i)``; one forward per sequence.

    ``logits[t]`` is the next-token distribution after token t. Batches are length-sorted and right padded.
    """
    n = len(seqs)
    if n == 0:
        return []
    device = model_device(model)
    base, head = _split_model(model)
    # a shared prefix that ends before every requested position and leaves >= 1 token per sequence
    P = min(_common_prefix(seqs), min(min(p) for p in positions), min(map(len, seqs)) - 1)
    past = None
    if prefix_cache and base is not None and P >= max(prefix_cache_min, 1) and n > 1:
        pre = torch.tensor([seqs[0][:P]], dtype=torch.long, device=device)
        past = base(input_ids=pre, use_cache=True).past_key_values
        stats.model_calls += 1
        stats.prompt_tokens += P
    else:
        P = 0
    order = sorted(range(n), key=lambda i: (len(seqs[i]), i))
    out: list[float] = [0.0] * n
    for b in range(0, n, batch_size):
        idx = order[b : b + batch_size]
        B = len(idx)
        L = max(len(seqs[i]) for i in idx) - P
        x = torch.full((B, L), pad_id, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        for r, i in enumerate(idx):
            s = seqs[i][P:]
            x[r, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[r, : len(s)] = 1
        x, mask = x.to(device), mask.to(device)
        stats.model_calls += 1
        stats.forward_passes += B
        stats.prompt_tokens += int(mask.sum())
        if past is not None:
            cache = copy.deepcopy(past)
            cache.batch_repeat_interleave(B)
            full_mask = torch.cat([torch.ones((B, P), dtype=torch.long, device=device), mask], dim=1)
            hidden = base(input_ids=x, attention_mask=full_mask, past_key_values=cache, use_cache=True).last_hidden_state
        elif base is not None:
            hidden = base(input_ids=x, attention_mask=mask, use_cache=False).last_hidden_state
        else:
            hidden = None
            all_logits = model(input_ids=x, attention_mask=mask, use_cache=False).logits.float()
        for r, i in enumerate(idx):
            pos = torch.tensor([p - P for p in positions[i]], dtype=torch.long, device=device)
            if hidden is not None:
                logits = _head_logits(model, head, hidden[r, pos])
            else:
                logits = all_logits[r, pos]
            out[i] = float(reduce(logits, i))
    return out


def _likelihood_params(kind: str, params: dict) -> dict:
    return resolve_params(kind, params)


def _pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id or 0)


# ---------------------------------------------------------------------------------------------------- yes / no
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
        p["batch_size"], p["prefix_cache"], p["prefix_cache_min"], _pad_id(tokenizer),
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
        p["batch_size"], p["prefix_cache"], p["prefix_cache_min"], _pad_id(tokenizer),
    )
    return sort_ranked([(d, s) for (d, _), s in zip(docs, scores)])
