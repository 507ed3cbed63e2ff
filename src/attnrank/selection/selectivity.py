"""HeadRank's middle-zone selectivity figure (torch-free, so every attention ranking job can report it cheaply)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import numpy as np
import polars as pl

from ..errors import InputError
from ..attention.scores import QueryScores

log = logging.getLogger(__name__)


def qrels_map(qrels: pl.DataFrame) -> dict[str, dict[str, int]]:
    for col in ("qid", "docid", "relevance"):
        if col not in qrels.columns:
            raise InputError(f"qrels: missing column '{col}' (need qid, docid, relevance)")
    out: dict[str, dict[str, int]] = {}
    for q, d, r in zip(
        qrels["qid"].cast(pl.String), qrels["docid"].cast(pl.String), qrels["relevance"].cast(pl.Int64)
    ):
        out.setdefault(q, {})[d] = int(r) if r is not None else 0
    return out


def middle_mask(positions: np.ndarray, k: int) -> np.ndarray:
    """Middle third of the prompt: slots p with k//3 <= p < k - k//3."""
    lo = k // 3
    return (positions >= lo) & (positions < k - lo)



def selectivity(
    scores: list[QueryScores],
    qrels: pl.DataFrame,
    ranking: Callable[[QueryScores], np.ndarray] | Mapping[str, np.ndarray],
) -> dict:
    """HeadRank's middle-zone selectivity, pooled over documents of all queries.

    Middle zone: prompt slots p with k//3 <= p < k - k//3 (k = the query's candidates). Top quartile: final rank
    <= ceil(k/4), ranking by score descending, ties by docid. Relevant: relevance > 0; everything else (judged
    non-relevant, negative grades, unjudged) is irrelevant. Queries absent from qrels are skipped and counted.
    ``ranking`` gives each query's document scores aligned with ``s.docids``: a function or a qid -> array map.
    Returns counts, ``share_relevant``, ``share_irrelevant`` (None when no such document) and ``gap``.
    """
    qmap = qrels_map(qrels)
    rel_mid = rel_top = irr_mid = irr_top = 0
    n_q = n_skip = 0
    for s in scores:
        if s.qid not in qmap:
            n_skip += 1
            continue
        k = len(s.docids)
        sc = ranking(s) if callable(ranking) else ranking.get(s.qid)
        if sc is None:
            raise InputError(f"selectivity: no document scores for query {s.qid}")
        sc = np.asarray(sc, dtype=np.float64)
        if sc.shape != (k,):
            raise InputError(f"selectivity: query {s.qid} has {k} documents but scores of shape {sc.shape}")
        order = sorted(range(k), key=lambda j: (-sc[j], s.docids[j]))
        rank = np.empty(k, dtype=np.int64)
        rank[order] = np.arange(1, k + 1)
        top = rank <= math.ceil(k / 4)
        mid = middle_mask(np.asarray(s.positions), k)
        rel = np.array([qmap[s.qid].get(d, 0) > 0 for d in s.docids])
        rel_mid += int((mid & rel).sum())
        rel_top += int((mid & rel & top).sum())
        irr_mid += int((mid & ~rel).sum())
        irr_top += int((mid & ~rel & top).sum())
        n_q += 1
    if n_skip:
        log.info("selectivity: skipped %d queries without qrels", n_skip)
    share_rel = rel_top / rel_mid if rel_mid else None
    share_irr = irr_top / irr_mid if irr_mid else None
    return {
        "n_queries": n_q,
        "n_skipped": n_skip,
        "relevant_middle": rel_mid,
        "relevant_top_quartile": rel_top,
        "irrelevant_middle": irr_mid,
        "irrelevant_top_quartile": irr_top,
        "share_relevant": share_rel,
        "share_irrelevant": share_irr,
        "gap": share_rel - share_irr if share_rel is not None and share_irr is not None else None,
    }
