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

The device path (default; ``legacy=False``), built for GPUs, gives the same numbers:

- Inputs are built on the host before any launch (numpy, pinned, ``non_blocking``): no host sync inside a pass; the
  next chunk of prompts is tokenised while the device runs the current batch (results are collected one batch late).
- Models whose layers are all full attention without softcapping take the *branch* path (``capture.BranchCapture``):
  the prefix pass keeps K/V in preallocated buffers, then one suffix pass runs the query and the "N/A" suffix as two
  branches of one sequence over the un-repeated buffer (4-D mask; each branch's positions start at its prefix
  length; GQA by folding head groups into rows). Others (sliding windows, softcapping) keep the repeated-cache pass.
- All post-processing (document sums, ICR's −2·std token mask per layer prefix, head and layer, the token scores) runs
  on the device, vectorised over the batch (segment sums as differences of a float64 cumulative sum), and comes back
  in one copy per batch. ``legacy=True`` is today's reference path (host loops), kept for the bench and the tests.

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
import torch.nn.functional as F
from torch.profiler import record_function
from transformers.cache_utils import DynamicCache

from .capture import (ATTN_NAME, BranchCapture, Capture, PrefixDone, attn_implementation, base_model, branch_supported,
                      branching, capturing, truncated_layers)
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


# ---------------------------------------------------------------------------------------------------- device path
TRANSFERS = {"blocking": 0, "sync": 0}  # blocking host->device copies and device->host syncs issued by the engine


def _span_tokens(spans: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Prefix token indices of all documents in candidate order and the candidate owning each (vectorised)."""
    se = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    lens = se[:, 1] - se[:, 0]
    owner = np.repeat(np.arange(len(se)), lens)
    offs = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return se[owner, 0] + offs, owner


def _segment_sums(v: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """[B, X, P] -> [B, X, K] float64 sums over the spans [starts, ends) (differences of a float64 cumsum)."""
    b, x, _ = v.shape
    cs = F.pad(v.double().cumsum(-1), (1, 0))
    k = starts.shape[1]
    return cs.gather(-1, ends[:, None].expand(b, x, k)) - cs.gather(-1, starts[:, None].expand(b, x, k))


def _masked_segments(c: torch.Tensor, seg: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """ICR's token mask on the device: [B, X, P] token scores -> [B, X, K] float64 document scores.

    Same rule as ``scores.masked_sum``: inside each span tokens <= mean - 2·std (unbiased) are dropped, the rest
    summed; a one-token span keeps its token, an empty one scores 0. ``seg`` [B, P]: owning span of each token (K: none).
    """
    c = c.double()
    b, x, p = c.shape
    idx = seg[:, None].expand(b, x, p)
    n = (ends - starts).double()[:, None]  # [B, 1, K]
    mean = _segment_sums(c, starts, ends) / n.clamp(min=1)
    d = c - F.pad(mean, (0, 1)).gather(-1, idx)
    std = (_segment_sums(d * d, starts, ends) / (n - 1).clamp(min=1)).sqrt()
    thr = torch.where(n > 1, mean - 2 * std, float("-inf"))
    keep = c > F.pad(thr, (0, 1)).gather(-1, idx)
    return _segment_sums(torch.where(keep, c, 0.0), starts, ends)


def device_scores(tok: torch.Tensor, seg: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor,
                  tok_idx: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """All per-query results of a batch from its token scores, on the device, vectorised over the batch.

    ``tok``: [2, B, L, H, P] fp32 (query, "N/A"); ``seg`` [B, P] owning candidate (K: none); ``starts``/``ends``
    [B, K] spans; ``tok_idx`` [B, T] prefix indices of the documents' tokens in candidate order (None: not kept).
    Precision as the host path: masked_prefix from fp32 calibrated sums, masked_head / masked_layer from fp32
    calibrated token scores in float64 (every statistic here is float64), all returned as fp32.
    """
    _, b, n_l, n_h, p = tok.shape
    k, lh = starts.shape[1], n_l * n_h
    q, na = tok[0], tok[1]
    cal = q - na  # [B, L, H, P] fp32, as the host path
    # one call per kind over stacked rows: [raw | na] sums, then [per head | per layer | layer prefix] masked sums
    sums = _segment_sums(tok.transpose(0, 1).reshape(b, 2 * lh, p), starts, ends)
    masked = _masked_segments(torch.cat([cal.reshape(b, lh, p).double(), cal.sum(2, dtype=torch.float64),
                                         torch.cumsum(q.sum(2) - na.sum(2), dim=1).double()], dim=1), seg, starts, ends)
    out = {
        "raw": sums[:, :lh].view(b, n_l, n_h, k),
        "na": sums[:, lh:].view(b, n_l, n_h, k),
        "masked_head": masked[:, :lh].view(b, n_l, n_h, k),
        "masked_layer": masked[:, lh : lh + n_l],
        "masked_prefix": masked[:, lh + n_l :],
    }
    out = {name: v.float() for name, v in out.items()}
    if tok_idx is not None:
        t = tok_idx.shape[1]
        out["tokens"] = cal.reshape(b, -1, p).gather(-1, tok_idx[:, None].expand(b, n_l * n_h, t)).view(b, n_l, n_h, t)
    return out


@dataclass
class _Pending:
    """One launched batch: its item indices, prompts and the (maybe still in flight) host copies of its results."""

    index: list[int]
    prompts: list[Prompt]
    host: dict[str, torch.Tensor]
    event: object | None


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
        legacy: today's reference path (repeated cache, host post-processing); default the device path.
        branches: the branch path (two suffixes over one un-repeated prefix); None: where the model allows it.
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
        legacy: bool = False,
        branches: bool | None = None,
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
        self.legacy = bool(legacy)
        ok = branch_supported(model.config)
        if branches and not ok:
            raise ValueError("branches=True: this model has sliding-window or softcapped attention layers")
        self.branches = ok if branches is None else bool(branches)
        self._sliding = any(getattr(layer, "is_sliding", False) for layer in DynamicCache(config=self.base.config).layers)
        self._cuda = self.device.type == "cuda"
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    @property
    def n_layers(self) -> int:
        return self.layers

    def score(self, items: Sequence[QueryInput], progress: bool = False) -> list[QueryScores]:
        """Scores for ``items`` in input order."""
        return list(self.iter_score(items, progress=progress, ordered=True))

    def iter_score(self, items: Sequence[QueryInput], progress: bool = False, ordered: bool = True) -> Iterator[QueryScores]:
        for it in items:
            if len(it.docids) != len(it.texts):
                raise ValueError(f"query {it.qid}: {len(it.docids)} docids but {len(it.texts)} texts")
        if self.legacy:
            yield from self._iter_legacy(items, progress, ordered)
            return
        done: dict[int, QueryScores] = {}
        nxt = 0
        bar = Progress(len(items), "attention", unit="q", enabled=progress)
        pending: list[_Pending] = []
        for index, prompts in self._batches(items):
            launched = self._launch(index, prompts)  # queued on the device; the previous batch finishes meanwhile
            for pend in pending:
                for i, qs in self._finish(pend, items):
                    done[i] = qs
                bar.update(len(pend.index))
            pending = launched
            while (nxt in done) if ordered else done:
                i = nxt if ordered else next(iter(done))
                yield done.pop(i)
                nxt += ordered
        for pend in pending:
            for i, qs in self._finish(pend, items):
                done[i] = qs
            bar.update(len(pend.index))
        while done:
            i = nxt if ordered else next(iter(done))
            yield done.pop(i)
            nxt += ordered
        bar.close()

    def _batches(self, items: Sequence[QueryInput]) -> Iterator[tuple[list[int], list[Prompt]]]:
        """Batches of similar length, prompts built one chunk (8 batches) ahead of need, lazily."""
        chunk = 8 * self.batch_size
        for c0 in range(0, len(items), chunk):
            with record_function("prompts"):
                prompts = {i: self.builder.build(items[i].query, list(items[i].texts), items[i].qid)
                           for i in range(c0, min(c0 + chunk, len(items)))}
            order = sorted(prompts, key=lambda i: (prompts[i].length, i))
            for j in range(0, len(order), self.batch_size):
                index = order[j : j + self.batch_size]
                yield index, [prompts[i] for i in index]

    # ------------------------------------------------------------------ device path
    def _put(self, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Host arrays -> device tensors; on CUDA pinned and non-blocking (no host sync)."""
        out = {}
        for name, a in arrays.items():
            t = torch.from_numpy(np.ascontiguousarray(a))
            if self._cuda:
                t = t.pin_memory().to(self.device, non_blocking=True)
            out[name] = t
        return out

    def _doc_inputs(self, prompts: list[Prompt], pm: int) -> dict[str, np.ndarray]:
        """Spans, token owners and the token index of the documents (host, numpy, before any launch)."""
        b = len(prompts)
        k = max((len(p.doc_spans) for p in prompts), default=0)
        starts = np.zeros((b, k), np.int64)
        ends = np.zeros((b, k), np.int64)
        seg = np.full((b, pm), k, np.int64)
        toks = [_span_tokens(p.doc_spans) for p in prompts]
        for i, (p, (pos, owner)) in enumerate(zip(prompts, toks)):
            se = np.asarray(p.doc_spans, dtype=np.int64).reshape(-1, 2)
            starts[i, : len(se)], ends[i, : len(se)] = se[:, 0], se[:, 1]
            seg[i, pos] = owner
        out = {"starts": starts, "ends": ends, "seg": seg}
        if self.token_scores:
            t = max((len(pos) for pos, _ in toks), default=0)
            tok_idx = np.zeros((b, t), np.int64)
            for i, (pos, _) in enumerate(toks):
                tok_idx[i, : len(pos)] = pos
            out["tok_idx"] = tok_idx
        return out

    def _padded(self, seqs: list[list[int]], width: int) -> np.ndarray:
        out = np.full((len(seqs), width), self.pad_id, np.int64)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        return out

    @torch.inference_mode()
    def _launch(self, index: list[int], prompts: list[Prompt]) -> list[_Pending]:
        """Run one batch on the device and queue the copy of its results back; returns without waiting."""
        p_lens = [len(p.prefix_ids) for p in prompts]
        if self.reuse_prefix and not self.branches and self._sliding and len(set(p_lens)) > 1:
            # right-padded prefixes shift cache indices, which sliding windows count in: one prompt at a time
            return [x for i, p in zip(index, prompts) for x in self._launch([i], [p])]
        b, pm = len(prompts), max(p_lens)
        with record_function("inputs"):
            host = self._doc_inputs(prompts, pm)
            host["prefix_ids"] = self._padded([p.prefix_ids for p in prompts], pm)
            host["p_lens"] = np.asarray(p_lens, np.int64)
            if not self.reuse_prefix:
                seqs = [p.full_ids(calibration=c) for c in (False, True) for p in prompts]
                tm, lo = max(map(len, seqs)), min(p_lens)
                host["full_ids"] = self._padded(seqs, tm)
                host["rows"] = np.arange(lo, tm)
                w = np.zeros((2, b, tm - lo), np.float32)
                for i, (pl, s) in enumerate(zip(p_lens + p_lens, seqs)):
                    w[i // b, i % b, pl - lo : len(s) - lo] = 1.0 / (len(s) - pl)
                host["weight"] = w
            elif self.branches:
                sq, sn = max(len(p.query_ids) for p in prompts), max(len(p.na_ids) for p in prompts)
                host["suffix_ids"] = np.concatenate([self._padded([p.query_ids for p in prompts], sq),
                                                     self._padded([p.na_ids for p in prompts], sn)], axis=1)
                host["suffix_pos"] = np.asarray(p_lens, np.int64)[:, None] + np.concatenate([np.arange(sq), np.arange(sn)])
                w = np.zeros((b, 2, sq + sn), np.float32)
                for i, p in enumerate(prompts):
                    w[i, 0, : len(p.query_ids)] = 1.0 / len(p.query_ids)
                    w[i, 1, sq : sq + len(p.na_ids)] = 1.0 / len(p.na_ids)
                host["weight"] = w
                blk = np.zeros((sq + sn, sq + sn), bool)
                blk[:sq, :sq] = np.tril(np.ones((sq, sq), bool))
                blk[sq:, sq:] = np.tril(np.ones((sn, sn), bool))
                host["block"] = blk
            else:
                sufs = [p.query_ids for p in prompts] + [p.na_ids for p in prompts]
                sm = max(map(len, sufs))
                w = np.zeros((2 * b, sm), np.float32)
                mask = np.zeros((2 * b, pm + sm), np.int64)
                for i, (pl, s) in enumerate(zip(p_lens + p_lens, sufs)):
                    w[i, : len(s)] = 1.0 / len(s)
                    mask[i, :pl] = 1
                    mask[i, pm : pm + len(s)] = 1
                host["suffix_ids"] = self._padded(sufs, sm)
                host["suffix_pos"] = np.asarray(p_lens + p_lens, np.int64)[:, None] + np.arange(sm)
                host["weight"] = w
                if not mask.all():
                    host["suffix_mask"] = mask
            dev = self._put(host)
        with attn_implementation(self.model, ATTN_NAME), truncated_layers(self.base, self.layers) as n_layers:
            if not self.reuse_prefix:
                tok = self._two_pass(dev, p_lens, n_layers, pm)
            elif self.branches:
                tok = self._branch_pass(dev, b, pm, n_layers)
            else:
                tok = self._repeat_pass(dev, b, pm, n_layers)
        with record_function("post"):
            res = device_scores(tok, dev["seg"], dev["starts"], dev["ends"], dev.get("tok_idx"))
            del tok
            tdt = torch.from_numpy(np.zeros(0, self.token_dtype)).dtype
            groups = {"f32": [(n, v) for n, v in res.items() if n != "tokens" or tdt == torch.float32]}
            if "tokens" in res and tdt != torch.float32:
                groups["tok"] = [("tokens", res["tokens"].to(tdt))]
            out, event = {}, None
            for key, members in groups.items():  # one flat tensor per dtype: one copy back per batch
                flat = torch.cat([v.reshape(b, -1) for _, v in members], dim=1)
                if self._cuda:
                    h = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
                    h.copy_(flat, non_blocking=True)
                    flat = h
                out[key] = (flat, [(n, tuple(v.shape[1:])) for n, v in members])
            if self._cuda:
                event = torch.cuda.Event()
                event.record()
        return [_Pending(index, prompts, out, event)]

    def _prefix(self, dev: dict, pm: int, cache=None) -> None:
        b = dev["prefix_ids"].shape[0]
        pos = torch.arange(pm, device=self.device)[None].expand(b, -1)
        # without a cache a 2-D mask keeps transformers from testing position_ids for packed sequences (a host sync);
        # the branch path's mask function then returns None: plain causal, as with today's cache
        am = None if cache is not None else torch.ones(b, pm, dtype=torch.long, device=self.device)
        with record_function("prefix"):
            self.base(input_ids=dev["prefix_ids"], attention_mask=am, position_ids=pos, past_key_values=cache,
                      use_cache=cache is not None)

    def _branch_pass(self, dev: dict, b: int, pm: int, n_layers: int) -> torch.Tensor:
        s = dev["suffix_ids"].shape[1]
        pre = torch.arange(pm, device=self.device)[None] < dev["p_lens"][:, None]  # [B, P]
        mask = torch.cat([pre[:, None].expand(b, s, pm), dev["block"][None].expand(b, s, s)], dim=-1)
        out = torch.zeros(2, b, n_layers, self.n_heads, pm, dtype=torch.float32, device=self.device)
        cap = BranchCapture(mask, dev["weight"], out)
        with branching(cap):
            try:
                self._prefix(dev, pm)
            except PrefixDone:  # the last layer's K/V are kept; the rest of the prefix pass is skipped
                pass
            else:
                raise RuntimeError("the branch prefix pass did not reach its last layer")
            cap.phase = "suffix"
            with record_function("suffix"):
                self.base(input_ids=dev["suffix_ids"], attention_mask=mask[:, None], position_ids=dev["suffix_pos"],
                          use_cache=False)  # a 4-D mask is taken as is (no mask building, no host sync)
        return out

    def _repeat_pass(self, dev: dict, b: int, pm: int, n_layers: int) -> torch.Tensor:
        """Today's suffix pass (sliding windows, softcapping): the prefix cache repeated for both suffixes."""
        cache = DynamicCache(config=self.base.config)
        self._prefix(dev, pm, cache)
        for layer in cache.layers:
            if getattr(layer, "is_initialized", False):
                layer.keys = layer.keys.repeat(2, 1, 1, 1)
                layer.values = layer.values.repeat(2, 1, 1, 1)
        sm = dev["suffix_ids"].shape[1]
        cap = Capture(dev["weight"], None, pm + sm, prefix_len=pm)
        with capturing(cap), record_function("suffix"):
            self.base(input_ids=dev["suffix_ids"], attention_mask=dev.get("suffix_mask"), position_ids=dev["suffix_pos"],
                      past_key_values=cache, use_cache=True)
        del cache
        tok = torch.stack([cap.tok[l] for l in range(n_layers)], dim=1)  # [2B, L, H, P]
        return tok.view(2, b, *tok.shape[1:])

    def _two_pass(self, dev: dict, p_lens: list[int], n_layers: int, pm: int) -> torch.Tensor:
        """Calibration by two full passes (no prefix reuse): rows of the query span captured in each."""
        ids, b = dev["full_ids"], len(p_lens)
        toks = []
        for c in range(2):
            cap = Capture(dev["weight"][c], None, ids.shape[1], rows=dev["rows"], prefix_len=pm)
            with capturing(cap), record_function("prefix"):
                self.base(input_ids=ids[c * b : (c + 1) * b], use_cache=False)
            toks.append(torch.stack([cap.tok[l] for l in range(n_layers)], dim=1))
        return torch.stack(toks)

    def _finish(self, pend: _Pending, items: Sequence[QueryInput]) -> Iterator[tuple[int, QueryScores]]:
        """Wait for one batch's copy (the one sync per batch) and build its ``QueryScores``."""
        with record_function("finish"):
            if pend.event is not None:
                pend.event.synchronize()
            TRANSFERS["sync"] += 1
            host = {}
            for flat, members in pend.host.values():
                a, o = flat.numpy(), 0
                for name, shape in members:
                    size = int(np.prod(shape))
                    host[name] = a[:, o : o + size].reshape(a.shape[0], *shape)
                    o += size
            out = []
            for row, (i, p) in enumerate(zip(pend.index, pend.prompts)):
                it, k, nt = items[i], len(p.doc_spans), sum(e - s for s, e in p.doc_spans)
                qs = QueryScores(
                    qid=it.qid, docids=list(it.docids),
                    raw=host["raw"][row, ..., :k].copy(), na=host["na"][row, ..., :k].copy(),
                    masked_prefix=host["masked_prefix"][row, :, :k].copy(),
                    positions=np.asarray(p.positions, dtype=np.int32), n_tokens=np.asarray(p.n_tokens, dtype=np.int32),
                    masked_head=host["masked_head"][row, ..., :k].copy(), masked_layer=host["masked_layer"][row, :, :k].copy(),
                    tokens=host["tokens"][row, ..., :nt].copy() if "tokens" in host else None,
                )
                out.append((i, _check_finite(qs)))
        return out

    def _iter_legacy(self, items: Sequence[QueryInput], progress: bool, ordered: bool) -> Iterator[QueryScores]:
        with record_function("prompts"):
            prompts = [self.builder.build(it.query, list(it.texts), it.qid) for it in items]
        order = sorted(range(len(items)), key=lambda i: (prompts[i].length, i))
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        done: dict[int, QueryScores] = {}
        nxt = 0
        bar = Progress(len(items), "attention", unit="q", enabled=progress)
        for batch in batches:
            results = self._run_batch_legacy([prompts[i] for i in batch])
            with record_function("post"):
                fin = self._finish_legacy(batch, results, prompts, items)
            for i, qs in fin:
                done[i] = qs
            bar.update(len(batch))
            if not ordered:
                for i in batch:
                    yield done.pop(i)
            else:
                while nxt in done:
                    yield done.pop(nxt)
                    nxt += 1
        bar.close()

    def _finish_legacy(self, batch, results, prompts, items) -> list[tuple[int, QueryScores]]:
        out = []
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
            out.append((i, _check_finite(qs)))
        return out

    # ------------------------------------------------------------------ legacy path (the reference)
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

    def _h2d(self, t: torch.Tensor) -> torch.Tensor:
        TRANSFERS["blocking"] += 1  # a pageable copy: on CUDA the host waits for the device
        return t.to(self.device)

    def _d2h(self, t: torch.Tensor) -> torch.Tensor:
        TRANSFERS["sync"] += 1
        return t.cpu()

    def _seg(self, prompts: list[Prompt], p_len: int) -> torch.Tensor:
        k = max((len(p.doc_spans) for p in prompts), default=0)
        seg = torch.zeros(len(prompts), p_len, k, dtype=torch.float32)
        for b, p in enumerate(prompts):
            for j, (s, e) in enumerate(p.doc_spans):
                seg[b, s:e, j] = 1.0
        return self._h2d(seg)

    def _ids(self, seqs: list[list[int]], width: int) -> torch.Tensor:
        out = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        for b, s in enumerate(seqs):
            out[b, : len(s)] = torch.tensor(s, dtype=torch.long)
        return self._h2d(out)

    def _collect(self, cap: Capture, n_layers: int) -> tuple[torch.Tensor, torch.Tensor]:
        doc = self._d2h(torch.stack([cap.doc[l] for l in range(n_layers)], dim=1))  # [B, L, H, K]
        tok = self._d2h(torch.stack([cap.tok[l] for l in range(n_layers)], dim=1))  # [B, L, H, P]
        return doc, tok

    @torch.inference_mode()
    def _run_batch_legacy(self, prompts: list[Prompt]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        b = len(prompts)
        p_lens = [len(p.prefix_ids) for p in prompts]
        pm = max(p_lens)
        seg = self._seg(prompts, pm)
        outs = {}
        with attn_implementation(self.model, ATTN_NAME), truncated_layers(self.base, self.layers) as n_layers:
            if self.reuse_prefix:
                cache = DynamicCache(config=self.base.config)  # prefix, then both suffixes over the repeated cache
                if len(set(p_lens)) > 1 and any(getattr(layer, "is_sliding", False) for layer in cache.layers):
                    # right-padded prefixes shift cache indices, which sliding windows count in: one prompt at a time
                    return [r for p in prompts for r in self._run_batch_legacy([p])]
                pos = torch.arange(pm, device=self.device)[None].expand(b, -1)
                with record_function("prefix"):
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
                cap = Capture(self._h2d(w), torch.cat([seg, seg]), pm + sm)
                am = None if bool(mask.all()) else self._h2d(mask)
                with capturing(cap), record_function("suffix"):
                    self.base(input_ids=self._ids(sufs, sm), attention_mask=am, position_ids=self._h2d(pos),
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
                    cap = Capture(self._h2d(w), seg, tm, rows=self._h2d(rows))
                    with capturing(cap), record_function("prefix"):
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
