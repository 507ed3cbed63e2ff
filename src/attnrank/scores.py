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
    """

    qid: str
    docids: list[str]
    raw: np.ndarray
    na: np.ndarray
    masked_prefix: np.ndarray
    positions: np.ndarray
    n_tokens: np.ndarray

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
