"""The attention engine: one forward pass per query -> per-layer, per-head document scores (``QueryScores``).

How it works (see docs/attention.md):

- A custom attention function, registered under ``ATTN_NAME`` in transformers' ``AttentionInterface`` (and the
  same name in ``AttentionMaskInterface``, so the model still builds its causal / sliding-window / padding masks),
  runs the normal SDPA forward. While a capture is active it also recomputes softmax(q Kᵀ·scaling + mask) in fp32
  for the query-span rows only and averages them over those rows: [B, H, T] per layer, never the T×T matrix.
  GQA: head h reads kv head h // G. ``softcap`` is honoured. A ``None`` mask means plain causal.
- Calibration by prefix reuse: the prefix (instruction + documents) runs once with a KV cache; the cache is then
  repeated along the batch and the query suffix and the "N/A" suffix run together in one pass over it (the weights
  are read once for both; on CPU a 27-token pass costs ~1/10 of a 2.4k-token one). Captures happen only there.
- Depth truncation: ``config.num_hidden_layers`` (and ``layer_types``) are lowered for the call and the base model
  (no ``lm_head``) is run; kept layers are bit-identical.
- Batching (GPU): prompts sorted by length, right-padded; the prefix pass runs with the plain causal mask (padding
  at the right is never seen by real tokens), suffix passes get a 2-D padding mask, padded query rows weigh 0.

The attention capture (the custom attention function, depth truncation) is in ``attnrank.attention.capture``; the slow,
obvious implementation the tests compare against (eager attention, ``output_attentions=True``, two full passes)
is ``tests/engine_oracle.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from transformers.cache_utils import DynamicCache

from .capture import ATTN_NAME, Capture, attn_implementation, base_model, capturing, truncated_layers
from ..progress import Progress
from .prompts import Prompt, PromptBuilder, PromptConfig, model_max_length
from .scores import QueryScores, masked_sum

log = logging.getLogger(__name__)



@dataclass
class QueryInput:
    """One query and its candidates in first-stage rank order."""

    qid: str
    query: str
    docids: list[str]
    texts: list[str]


# ---------------------------------------------------------------------------------------------------- scoring
def masked_prefix_scores(tok_q: torch.Tensor, tok_na: torch.Tensor, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """ICR masked calibration for every layer prefix 0..l: [L, k] float32.

    ``tok_q``/``tok_na``: [L, T] token scores summed over heads, per layer. Calibrated token scores are summed over
    layers 0..l; inside each document tokens with a score <= mean - 2·std (unbiased) are dropped, the rest summed.
    A one-token document keeps its token (its std is undefined).
    """
    cal = torch.cumsum(tok_q.float() - tok_na.float(), dim=0)
    out = torch.zeros(cal.shape[0], len(spans), dtype=torch.float32)
    for j, (s, e) in enumerate(spans):
        c = cal[:, s:e]
        if e - s == 0:
            continue
        if e - s == 1:
            out[:, j] = c[:, 0]
            continue
        thr = c.mean(1, keepdim=True) - 2 * c.std(1, keepdim=True)
        out[:, j] = (c * (c > thr)).sum(1)
    return out.numpy()


def _check_finite(qs: QueryScores) -> QueryScores:
    for name in ("raw", "na", "masked_prefix", "masked_head", "masked_layer"):
        if getattr(qs, name) is not None and not np.isfinite(getattr(qs, name)).all():
            raise FloatingPointError(f"query {qs.qid}: non-finite {name} attention scores (NaN/inf); check dtype/model")
    return qs


class Scorer:
    """Scores queries with one model: ``Scorer(model, tokenizer, prompt_cfg).score(items)``.

    Args:
        model: a ``*ForCausalLM`` (from ``models.load_model``), any device/dtype.
        prompt_cfg: ``PromptConfig`` or dict of its keys.
        layers: number of leading layers to compute (None: all).
        batch_size: queries per forward (default 1 on CPU, 8 on GPU).
        reuse_prefix: calibration by prefix reuse (default); False runs two full passes (for tests and the bench).
        token_scores: also keep the calibrated per-head token scores of the documents (``QueryScores.tokens``,
            in ``token_dtype``), for masked calibration over any head subset or layer window.
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompt_cfg: PromptConfig | dict | None = None,
        layers: int | None = None,
        batch_size: int | None = None,
        reuse_prefix: bool = True,
        token_scores: bool = False,
        token_dtype: str = "float32",
    ):
        self.model = model
        self.base = base_model(model)
        self.builder = PromptBuilder(tokenizer, prompt_cfg, model_max_length(model))
        n = model.config.num_hidden_layers
        self.layers = n if layers is None else min(int(layers), n)
        self.n_heads = model.config.num_attention_heads
        self.device = next(model.parameters()).device
        self.batch_size = batch_size or (8 if self.device.type == "cuda" else 1)
        self.reuse_prefix = reuse_prefix
        self.token_scores = bool(token_scores)
        self.token_dtype = np.dtype(token_dtype)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    @property
    def n_layers(self) -> int:
        return self.layers

    def score(self, items: Sequence[QueryInput], progress: bool = False) -> list[QueryScores]:
        """Scores for ``items`` in input order."""
        return list(self.iter_score(items, progress=progress, ordered=True))

    def iter_score(self, items: Sequence[QueryInput], progress: bool = False, ordered: bool = True) -> Iterator[QueryScores]:
        prompts = [self.builder.build(it.query, list(it.texts), it.qid) for it in items]
        for it, p in zip(items, prompts):
            if len(it.docids) != len(it.texts):
                raise ValueError(f"query {it.qid}: {len(it.docids)} docids but {len(it.texts)} texts")
        order = sorted(range(len(items)), key=lambda i: (prompts[i].length, i))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        done: dict[int, QueryScores] = {}
        nxt = 0
        bar = Progress(len(items), "attention", unit="q", enabled=progress)
        for batch in batches:
            results = self._run_batch([prompts[i] for i in batch])
            for i, (doc_q, doc_na, tok_q, tok_na) in zip(batch, results):
                p, it = prompts[i], items[i]
                qs = QueryScores(
                    qid=it.qid,
                    docids=list(it.docids),
                    raw=doc_q.numpy(),
                    na=doc_na.numpy(),
                    masked_prefix=masked_prefix_scores(tok_q.sum(1), tok_na.sum(1), p.doc_spans),
                    positions=np.asarray(p.positions, dtype=np.int32),
                    n_tokens=np.asarray(p.n_tokens, dtype=np.int32),
                    **self._token_fields(tok_q, tok_na, p),
                )
                done[i] = _check_finite(qs)
            bar.update(len(batch))
            if not ordered:
                for i in batch:
                    yield done.pop(i)
            else:
                while nxt in done:
                    yield done.pop(nxt)
                    nxt += 1
        bar.close()

    # ------------------------------------------------------------------ forward passes
    def _token_fields(self, tok_q: torch.Tensor, tok_na: torch.Tensor, p: Prompt) -> dict:
        """Per-head token scores of the documents -> masked_head [L, H, k], masked_layer [L, k] (and the tokens)."""
        idx = [t for s, e in p.doc_spans for t in range(s, e)]
        cal = (tok_q.float() - tok_na.float())[:, :, idx].numpy()  # [L, H, T] in candidate order
        n_layers, n_heads = cal.shape[:2]
        out = {
            "masked_head": masked_sum(cal.reshape(n_layers * n_heads, -1), p.n_tokens).reshape(n_layers, n_heads, -1).astype(np.float32),
            "masked_layer": masked_sum(cal.sum(1, dtype=np.float64), p.n_tokens).astype(np.float32),
        }
        if self.token_scores:
            out["tokens"] = cal.astype(self.token_dtype)
        return out

    def _seg(self, prompts: list[Prompt], p_len: int) -> torch.Tensor:
        k = max((len(p.doc_spans) for p in prompts), default=0)
        seg = torch.zeros(len(prompts), p_len, k, dtype=torch.float32)
        for b, p in enumerate(prompts):
            for j, (s, e) in enumerate(p.doc_spans):
                seg[b, s:e, j] = 1.0
        return seg.to(self.device)

    def _ids(self, seqs: list[list[int]], width: int) -> torch.Tensor:
        out = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        for b, s in enumerate(seqs):
            out[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out.to(self.device)

    def _collect(self, cap: Capture, n_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        doc = torch.stack([cap.doc[l] for l in range(n_layers)], dim=1).cpu()  # [B, L, H, K]
        tok = torch.stack([cap.tok[l] for l in range(n_layers)], dim=1).cpu()  # [B, L, H, P]
        return doc, tok

    @torch.inference_mode()
    def _run_batch(self, prompts: list[Prompt]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        b = len(prompts)
        p_lens = [len(p.prefix_ids) for p in prompts]
        pm = max(p_lens)
        seg = self._seg(prompts, pm)
        outs = {}
        with attn_implementation(self.model, ATTN_NAME), truncated_layers(self.base, self.layers) as n_layers:
            if self.reuse_prefix:
                cache = DynamicCache(config=self.base.config)
                if len(set(p_lens)) > 1 and any(getattr(layer, "is_sliding", False) for layer in cache.layers):
                    # right-padded prefixes shift cache indices, which sliding windows count in: one prompt at a time
                    return [r for p in prompts for r in self._run_batch([p])]
                pos = torch.arange(pm, device=self.device)[None].expand(b, -1)
                self.base(input_ids=self._ids([p.prefix_ids for p in prompts], pm), position_ids=pos,
                          past_key_values=cache, use_cache=True)
                # both suffixes in one pass (weights are read once): rows [query_0..query_B-1, na_0..na_B-1]
                for layer in cache.layers:
                    if getattr(layer, "is_initialized", False):
                        layer.keys = layer.keys.repeat(2, 1, 1, 1)
                        layer.values = layer.values.repeat(2, 1, 1, 1)
                sufs = [p.query_ids for p in prompts] + [p.na_ids for p in prompts]
                p2 = p_lens + p_lens
                sm = max(map(len, sufs))
                w = torch.zeros(2 * b, sm, dtype=torch.float32)
                mask = torch.zeros(2 * b, pm + sm, dtype=torch.long)
                pos = torch.zeros(2 * b, sm, dtype=torch.long)
                for i, (pl, s) in enumerate(zip(p2, sufs)):
                    w[i, : len(s)] = 1.0 / len(s)
                    mask[i, :pl] = 1
                    mask[i, pm : pm + len(s)] = 1
                    pos[i] = pl + torch.arange(sm)
                cap = Capture(w.to(self.device), torch.cat([seg, seg]), pm + sm)
                am = None if bool(mask.all()) else mask.to(self.device)
                with capturing(cap):
                    self.base(input_ids=self._ids(sufs, sm), attention_mask=am, position_ids=pos.to(self.device),
                              past_key_values=cache, use_cache=True)
                doc, tok = self._collect(cap, n_layers)
                outs["query"], outs["na"] = (doc[:b], tok[:b]), (doc[b:], tok[b:])
                del cache
            else:
                for which in ("query", "na"):
                    seqs = [p.full_ids(calibration=(which == "na")) for p in prompts]
                    tm = max(map(len, seqs))
                    lo = min(p_lens)
                    rows = torch.arange(lo, tm)
                    w = torch.zeros(b, tm - lo, dtype=torch.float32)
                    for i, (pl, s) in enumerate(zip(p_lens, seqs)):
                        w[i, pl - lo : len(s) - lo] = 1.0 / (len(s) - pl)
                    cap = Capture(w.to(self.device), seg, tm, rows=rows.to(self.device))
                    with capturing(cap):
                        self.base(input_ids=self._ids(seqs, tm), use_cache=False)
                    outs[which] = self._collect(cap, n_layers)
        res = []
        for i, pl in enumerate(p_lens):
            k = len(prompts[i].doc_spans)
            res.append((outs["query"][0][i, :, :, :k], outs["na"][0][i, :, :, :k],
                        outs["query"][1][i, :, :, :pl], outs["na"][1][i, :, :, :pl]))
        return res


def score_queries(
    model,
    tokenizer,
    items: Sequence[QueryInput],
    prompt_cfg: PromptConfig | dict | None = None,
    layers: int | None = None,
    batch_size: int | None = None,
    progress: bool = False,
    token_scores: bool = False,
) -> list[QueryScores]:
    """Convenience wrapper: ``Scorer(...).score(items)``."""
    return Scorer(model, tokenizer, prompt_cfg, layers=layers, batch_size=batch_size,
                  token_scores=token_scores).score(items, progress=progress)


def iter_candidates(candidates) -> Iterable[QueryInput]:
    """``QueryInput``s from a candidates frame (``attnrank.retrieval.candidates.per_query``: rank order, ties by docid)."""
    from ..retrieval.candidates import per_query

    for qid, query, docids, texts in per_query(candidates):
        yield QueryInput(qid, query, docids, texts)
