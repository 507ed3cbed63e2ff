"""The per-query attention score record that every attention method aggregates.

One attention pass per (model, dataset, retriever) produces, for each query and its k candidates, a document
score for every computed layer and head. Methods (ICR, QR/CoRe heads, Selective-ICR windows, pruning, HeadRank)
are functions of these arrays only, so adding a method never needs a new forward pass.

Definitions (ICR, Chen et al. ICLR'25): for layer l, head h and prompt token t, a(l, h, t) is the attention weight
from the query span to token t, averaged over the query-span tokens. The score of document j is the sum of
a(l, h, t) over the tokens t of document j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QueryScores:
    """Attention scores of one query's candidates.

    Attributes:
        qid: query id.
        docids: candidate ids, in first-stage rank order (index j below).
        raw: float32 [L, H, k], the query's document scores per layer and head.
        na: float32 [L, H, k], the same for the content-free calibration query "N/A" (same prompt otherwise).
        masked_prefix: float32 [L, k]; row l is ICR's masked calibration using all heads of layers 0..l: token
            scores summed over those layers and heads, calibrated (query - N/A), tokens whose calibrated score is
            <= mean - 2 std within the document dropped, then summed. Row L-1 is ICR's default score.
        positions: int32 [k], the slot (0-based) of each candidate in the prompt (prompt order may be reversed or
            shuffled by config).
        n_tokens: int32 [k], the number of prompt tokens of each candidate after truncation.
        masked_head: float32 [L, H, k] or None; ICR's masked calibration of each single head (QRHead's per-head
            detection score).
        masked_layer: float32 [L, k] or None; ICR's masked calibration of all heads of each single layer (the
            per-layer profile).
        tokens: float32/float16 [L, H, T] or None; calibrated (query - N/A) token scores of every head, for the
            documents' tokens only, concatenated in candidate order (document j owns ``n_tokens[j]`` of them).
            Kept when the engine is asked to (``engine.token_scores``); masked calibration over any head subset
            or layer window (:func:`masked_group`) needs them.
    """

    qid: str
    docids: list[str]
    raw: np.ndarray
    na: np.ndarray
    masked_prefix: np.ndarray
    positions: np.ndarray
    n_tokens: np.ndarray
    masked_head: np.ndarray | None = None
    masked_layer: np.ndarray | None = None
    tokens: np.ndarray | None = None

    @property
    def calibrated(self) -> np.ndarray:
        """[L, H, k] query minus N/A scores (linear, so any head/layer subset sums exactly)."""
        return self.raw - self.na

    @property
    def n_layers(self) -> int:
        return self.raw.shape[0]

    @property
    def n_heads(self) -> int:
        return self.raw.shape[1]


def masked_sum(cal: np.ndarray, n_tokens) -> np.ndarray:
    """ICR's token mask per document: [..., T] calibrated token scores -> [..., k] document scores.

    Document j owns the next ``n_tokens[j]`` tokens. Inside it, tokens whose score is <= mean - 2·std (unbiased)
    are dropped and the rest summed; a one-token document keeps its token, an empty one scores 0. float64.
    """
    c = np.asarray(cal, dtype=np.float64)
    n = np.asarray(n_tokens, dtype=np.int64)
    if c.shape[-1] != int(n.sum()):
        raise ValueError(f"masked_sum: {c.shape[-1]} tokens but the documents own {int(n.sum())}")
    out = np.zeros(c.shape[:-1] + (n.size,), np.float64)
    start = 0
    for j, m in enumerate(n.tolist()):
        seg = c[..., start : start + m]
        start += m
        if m == 0:
            continue
        if m == 1:
            out[..., j] = seg[..., 0]
            continue
        thr = seg.mean(-1, keepdims=True) - 2 * seg.std(-1, ddof=1, keepdims=True)
        out[..., j] = np.where(seg > thr, seg, 0.0).sum(-1)
    return out


def masked_group(s: QueryScores, layers, heads=None) -> np.ndarray:
    """[k] masked calibration over a head subset or a layer window, as the reference repositories compute it:
    the calibrated token scores of the chosen heads are summed, then masked per document and summed.

    ``layers``/``heads``: index arrays of (layer, head) pairs; ``heads=None`` means every head of ``layers``.
    Needs ``s.tokens`` (the score cache must keep per-head token scores: ``engine.token_scores: true``).
    """
    if s.tokens is None:
        raise ValueError(
            f"query {s.qid}: the score cache keeps no per-head token scores; masked calibration over a head "
            "subset or layer window needs them (set engine.token_scores: true)"
        )
    layers = np.asarray(layers, dtype=np.int64)
    if heads is None:
        cal = s.tokens[layers].astype(np.float64).sum(axis=(0, 1))
    else:
        cal = s.tokens[layers, np.asarray(heads, dtype=np.int64)].astype(np.float64).sum(axis=0)
    return masked_sum(cal, s.n_tokens)
