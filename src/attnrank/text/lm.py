"""Language-model helpers of the text re-rankers: prompt framing in the tokenizer's chat template (documents
truncated exactly as the attention prompt truncates them), greedy generation, and next-token logits at chosen
positions over a batch of prompts (with a shared-prefix KV cache)."""

from __future__ import annotations

import copy
from typing import Callable

import torch

from ..errors import InputError
from .base import Stats


class Frame:
    """Token-id helpers for one tokenizer: chat-template head/tail, piece encoding, document truncation."""

    def __init__(self, tokenizer, params: dict):
        from ..attention.prompts import PromptBuilder

        builder = PromptBuilder(tokenizer, {
            "max_doc_tokens": params.get("max_doc_tokens"),
            "max_doc_words": params.get("max_doc_words"),
            "use_chat_template": bool(params.get("use_chat_template", True)),
        })
        self.tok = tokenizer
        self.builder = builder
        self.head, self.tail = list(builder.head), list(builder.tail)
        self.chat = len(self.tail) > 0
        self._cache: dict[str, tuple[int, ...]] = {}

    def enc(self, text: str) -> list[int]:
        """Ids of ``text`` alone (no special tokens): a new list on every call (the memo holds immutable tuples,
        so a caller that extends the result cannot change what the next call returns)."""
        if text not in self._cache:
            self._cache[text] = tuple(self.tok.encode(text, add_special_tokens=False)) if text else ()
        return list(self._cache[text])

    def doc(self, text: str) -> list[int]:
        """Truncated document ids, the attention prompt's policy (leading space, first ``max_doc_tokens``)."""
        fn = getattr(self.builder, "doc_tokens", None) or self.builder._doc_tokens
        return list(fn(text))

    def wrap(self, body: list[int], answer_prefix: str = "") -> list[int]:
        """Head + body + tail; a plain prompt (no template) ends with ``answer_prefix`` instead of the tail."""
        if self.chat:
            return self.head + body + self.tail
        return self.head + body + (self.enc("\n" + answer_prefix) if answer_prefix else [])

    def answer_token(self, word: str, what: str) -> int:
        """First token id of ``word`` as the first answer token (no leading space in chat, one in plain text)."""
        ids = self.enc(word if self.chat else " " + word)
        if not ids:
            raise InputError(f"{what}: the tokenizer encodes '{word}' to no tokens")
        return ids[0]


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def stop_token_ids(model, tokenizer) -> list[int]:
    """EOS ids of the model's generation config and tokenizer, plus common end-of-turn tokens in the vocabulary."""
    ids: set[int] = set()
    gc = getattr(model, "generation_config", None)
    eos = getattr(gc, "eos_token_id", None) if gc is not None else None
    for v in (eos if isinstance(eos, (list, tuple)) else [eos]):
        if v is not None:
            ids.add(int(v))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for t in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>"):
        if t in vocab:
            ids.add(int(vocab[t]))
    return sorted(ids)


@torch.inference_mode()
def greedy_generate(model, tokenizer, ids: list[int], max_new_tokens: int, stats: Stats) -> str:
    """Greedy-decode (KV cached) up to ``max_new_tokens`` after ``ids``; the decoded answer, stripped."""
    from transformers import GenerationConfig

    stops = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
        eos_token_id=stops or None, use_cache=True,
    )
    device = model_device(model)
    x = torch.tensor([ids], dtype=torch.long, device=device)
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=gen_cfg)
    new = out[0, len(ids):].tolist()
    stats.generations += 1
    stats.generated_tokens += len(new)
    stats.forward_passes += max(len(new), 1)
    stats.model_calls += max(len(new), 1)
    stats.prompt_tokens += len(ids)
    stop = set(stops)
    while new and new[-1] in stop:
        new.pop()
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    if not text:
        stats.empty_generations += 1
    return text


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
        x, mask = _right_padded([seqs[i][P:] for i in idx], pad_id, device)
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


def _right_padded(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [B, L] right-padded with ``pad`` and their attention mask, on ``device``."""
    x = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
    mask = torch.zeros_like(x)
    for r, s in enumerate(seqs):
        x[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, : len(s)] = 1
    return x.to(device), mask.to(device)


def pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return int(tokenizer.eos_token_id or 0)


# ---------------------------------------------------------------------------------------------------- yes / no
