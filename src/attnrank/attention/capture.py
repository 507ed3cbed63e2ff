"""Capturing attention inside transformers' own forward (see docs/attention.md).

A custom attention function, registered under ``ATTN_NAME`` in transformers' ``AttentionInterface`` (and the same
name in ``AttentionMaskInterface``, so the model still builds its causal / sliding-window / padding masks), runs
the normal SDPA forward. While a :class:`Capture` is active (:func:`capturing`) it also recomputes
softmax(q Kᵀ·scaling + mask) in fp32 for the chosen query rows only and averages them over those rows: [B, H, T]
per layer, never the T×T matrix. GQA: head h reads kv head h // G. ``softcap`` is honoured. A ``None`` mask means
plain causal. :func:`truncated_layers` runs only the first layers of a decoder (kept layers bit-identical).

:class:`BranchCapture` is the engine's branch path (models without sliding windows or softcapping): the prefix pass
writes every layer's K/V into a preallocated buffer (no ``DynamicCache``, no ``repeat``, no ``torch.cat``), then one
suffix pass runs the query suffix and the "N/A" suffix as two branches of one sequence over that un-repeated buffer,
kept blind to each other by a 4-D mask; GQA by folding the G query heads of a kv head into rows (no ``repeat_kv``),
both for the SDPA output and for the captured attention. The captured rows go straight into one device tensor
[2, B, L, H, P] (branch, query, layer, head, prefix token).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_NAME = "attnrank_capture"


class Capture:
    """State of one capturing forward: which rows to score, how to weigh them, where the documents are."""

    def __init__(self, row_weight: torch.Tensor, seg: torch.Tensor | None, total_len: int, rows: torch.Tensor | None = None,
                 prefix_len: int | None = None):
        self.row_weight = row_weight  # [B, R] fp32, 1/S_b on valid query rows, 0 on padding
        self.rows = rows  # None: all query rows of the call; else indices of the rows to score
        self.seg = seg  # [B, P, K] fp32 one-hot: prefix token -> candidate (None: token scores only)
        self.prefix_len = seg.shape[1] if seg is not None else int(prefix_len)
        self.total_len = total_len  # absolute length of the sequence (cache + this call)
        self.doc: dict[int, torch.Tensor] = {}  # layer -> [B, H, K]
        self.tok: dict[int, torch.Tensor] = {}  # layer -> [B, H, P] per-head prefix token scores

    def record(self, layer: int, query, key, mask, scaling: float, softcap: float | None) -> None:
        b, h, q_len, d = query.shape
        kvh, t = key.shape[1], key.shape[2]
        g = h // kvh
        q_abs = torch.arange(q_len, device=query.device) + (self.total_len - q_len)  # absolute query positions
        if self.rows is not None:
            query = query[:, :, self.rows]
            q_abs = q_abs[self.rows]
            if mask is not None and mask.shape[2] != 1:
                mask = mask[:, :, self.rows]
        r = query.shape[2]
        qf = query.float().reshape(b, kvh, g * r, d)
        s = torch.matmul(qf, key.float().transpose(-1, -2)).view(b, h, r, t) * scaling
        if softcap is not None:
            s = torch.tanh(s / softcap) * softcap
        k_abs = torch.arange(t, device=query.device) + (self.total_len - t)  # sliding caches hold only the tail
        if mask is None:
            s = s.masked_fill(k_abs[None, :] > q_abs[:, None], float("-inf"))
        elif mask.dtype == torch.bool:
            s = s.masked_fill(~mask[..., :t], float("-inf"))
        else:
            s = s + mask[..., :t].float()
        p = torch.softmax(s, dim=-1)
        w = self.row_weight
        p = torch.where((w > 0)[:, None, :, None], p, 0.0)
        a = torch.einsum("bhrt,br->bht", p, w)  # [B, H, T] mean over query rows
        start, pl = self.total_len - t, self.prefix_len
        if start == 0:
            ap = a[..., :pl]
        else:
            ap = a.new_zeros(b, h, pl)
            if start < pl:
                ap[..., start:] = a[..., : pl - start]
        if self.seg is not None:
            self.doc[layer] = torch.bmm(ap, self.seg)
        self.tok[layer] = ap


class PrefixDone(Exception):
    """Raised by the branch prefix pass once the last layer's K/V are kept: that layer's attention, o_proj and MLP
    (and the final norm) over the prefix would only feed outputs nobody reads."""


class BranchCapture:
    """State of the branch path for one batch (see the module docstring).

    ``mask``: [B, S, P + S] bool, True where suffix row s may see key t (its own prefix, its own branch causally).
    ``weight``: [B, 2, S] fp32, 1/len on the rows of branch c (0: query, 1: "N/A"), 0 elsewhere (padding).
    ``out``: [2, B, L, H, P] fp32, filled layer by layer in the suffix phase.
    """

    def __init__(self, mask: torch.Tensor, weight: torch.Tensor, out: torch.Tensor):
        self.mask, self.weight, self.out = mask, weight, out
        self.b, self.s = weight.shape[0], weight.shape[2]
        self.prefix_len = out.shape[-1]
        self.phase = "prefix"
        self.last_layer = out.shape[2] - 1  # the prefix pass stops after keeping this layer's K/V
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self._folded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # G -> (mask, ~mask) [B, 1, G*S, P+S]

    def folded_mask(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask with its rows in folded order (head group g, then suffix row), and its complement."""
        if g not in self._folded:
            b, s, t = self.mask.shape
            m = self.mask[:, None, None].expand(b, 1, g, s, t).reshape(b, 1, g * s, t)
            self._folded[g] = (m, ~m)
        return self._folded[g]

    def prefix(self, layer: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Keep this layer's prefix K/V in a buffer with room for the suffix (one write, no later copy)."""
        b, kvh, p, d = key.shape
        kb = key.new_empty(b, kvh, p + self.s, d)
        vb = value.new_empty(b, kvh, p + self.s, value.shape[-1])
        kb[:, :, :p] = key
        vb[:, :, :p] = value
        self.keys[layer], self.values[layer] = kb, vb

    def suffix(self, layer: int, query, key, value, scaling: float) -> torch.Tensor:
        """SDPA of both branches over the un-repeated buffer, plus the captured rows. Returns [B, S, H, D]."""
        kb, vb = self.keys.pop(layer), self.values.pop(layer)
        pl = self.prefix_len
        kb[:, :, pl:] = key
        vb[:, :, pl:] = value
        b, h, s, d = query.shape
        kvh = kb.shape[1]
        g = h // kvh
        qf = query.reshape(b, kvh, g * s, d)  # head h = kv head h // G: its rows follow its group's other heads
        mask, blocked = self.folded_mask(g)
        out = F.scaled_dot_product_attention(qf, kb, vb, attn_mask=mask, scale=scaling)
        out = out.view(b, h, s, vb.shape[-1]).transpose(1, 2).contiguous()
        with torch.profiler.record_function("capture"):
            sc = torch.matmul(qf.float(), kb.float().transpose(-1, -2)) * scaling  # [B, KVH, G*S, T]
            p = torch.softmax(sc.masked_fill_(blocked, float("-inf")), dim=-1).view(b, h, s, -1)
            self.out[:, :, layer] = torch.matmul(self.weight[:, None], p[..., :pl]).permute(2, 0, 1, 3)  # [2, B, H, P]
        return out


_ACTIVE: Capture | None = None
_BRANCH: BranchCapture | None = None


def _eager_softcap_forward(module, query, key, value, attention_mask, scaling, softcap, dropout=0.0):
    g = query.shape[1] // key.shape[1]
    k, v = repeat_kv(key, g), repeat_kv(value, g)
    s = torch.matmul(query, k.transpose(2, 3)) * scaling
    s = torch.tanh(s / softcap) * softcap
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            s = s.masked_fill(~attention_mask[..., : k.shape[-2]], torch.finfo(s.dtype).min)
        else:
            s = s + attention_mask[..., : k.shape[-2]]
    elif query.shape[2] > 1:
        t, q = k.shape[-2], query.shape[2]
        causal = torch.arange(t, device=s.device)[None, :] > (torch.arange(q, device=s.device)[:, None] + t - q)
        s = s.masked_fill(causal, torch.finfo(s.dtype).min)
    p = torch.softmax(s, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(p, v).transpose(1, 2).contiguous()


def capture_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """SDPA forward; when a capture is active, also records the query-span attention of this layer."""
    softcap = kwargs.get("softcap")
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if _BRANCH is not None:
        if softcap is not None or kwargs.get("sliding_window") is not None or kwargs.get("s_aux") is not None:
            raise RuntimeError("the branch path supports neither softcapping, sliding windows nor attention sinks")
        if _BRANCH.phase == "suffix":
            return _BRANCH.suffix(module.layer_idx, query, key, value, scaling), None
        _BRANCH.prefix(module.layer_idx, key, value)
        if module.layer_idx == _BRANCH.last_layer:
            raise PrefixDone
    if softcap is not None:
        out = _eager_softcap_forward(module, query, key, value, attention_mask, scaling, softcap, dropout)
    else:
        out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    if _ACTIVE is not None:
        with torch.profiler.record_function("capture"):
            _ACTIVE.record(module.layer_idx, query, key, attention_mask, scaling, softcap)
    return out, None


AttentionInterface.register(ATTN_NAME, capture_attention_forward)
def _capture_mask(*args, **kwargs):
    """The model's SDPA mask; None (plain causal, no host sync) in the branch prefix pass, whose right padding is
    never seen by real tokens (the suffix pass brings its own 4-D mask)."""
    if _BRANCH is not None:
        return None
    return sdpa_mask(*args, **kwargs)


AttentionMaskInterface.register(ATTN_NAME, _capture_mask)


@contextlib.contextmanager
def capturing(cap: Capture):
    global _ACTIVE
    _ACTIVE = cap
    try:
        yield cap
    finally:
        _ACTIVE = None


@contextlib.contextmanager
def branching(cap: BranchCapture):
    global _BRANCH
    _BRANCH = cap
    try:
        yield cap
    finally:
        _BRANCH = None


def branch_supported(config) -> bool:
    """Whether a model can take the branch path: every layer full attention, no attention softcapping."""
    types = getattr(config, "layer_types", None)
    if types:
        if any(t != "full_attention" for t in types):
            return False
    elif getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False
    return getattr(config, "attn_logit_softcapping", None) is None


@contextlib.contextmanager
def attn_implementation(model, name: str):
    """Temporarily switch ``model`` to attention implementation ``name``."""
    old = model.config._attn_implementation
    model.set_attn_implementation(name)
    try:
        yield model
    finally:
        model.set_attn_implementation(old)


@contextlib.contextmanager
def truncated_layers(model, layers: int | None):
    """Run only the first ``layers`` decoder layers (``None``: all) for the duration of the block."""
    cfg = model.config
    n = cfg.num_hidden_layers
    if layers is None or layers >= n:
        yield n
        return
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    old_types = getattr(cfg, "layer_types", None)
    cfg.num_hidden_layers = layers
    if old_types is not None:
        cfg.layer_types = list(old_types[:layers])
    try:
        yield layers
    finally:
        cfg.num_hidden_layers = n
        if old_types is not None:
            cfg.layer_types = old_types


def base_model(model):
    """The decoder without the LM head (``model.model`` for ``*ForCausalLM``)."""
    return getattr(model, getattr(model, "base_model_prefix", "model"), model)
