"""HeadRank training (torch): head weights fitted on the tuning split's cached score tensors with the model frozen
(the objective is described in ``attnrank.selection.headrank``, which holds the configuration, inference and storage)."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import torch

from ..errors import InputError
from .headrank import HeadRankConfig, TrainResult, normalise_scores, select_heads
from ..progress import progress
from ..attention.scores import QueryScores
from .selectivity import middle_mask, qrels_map

log = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------------------- training
def _check_scores(s: QueryScores, shape: tuple[int, int] | None) -> tuple[int, int]:
    k = len(s.docids)
    for name in ("raw", "na"):
        a = getattr(s, name)
        if a.ndim != 3 or a.shape[2] != k:
            raise InputError(f"scores of query {s.qid}: {name} has shape {a.shape}, expected [L, H, {k}]")
        if not np.isfinite(a).all():
            raise InputError(f"scores of query {s.qid}: {name} has non-finite values")
    if s.raw.shape != s.na.shape:
        raise InputError(f"scores of query {s.qid}: raw {s.raw.shape} and na {s.na.shape} differ")
    if len(s.positions) != k:
        raise InputError(f"scores of query {s.qid}: {len(s.positions)} positions for {k} documents")
    if shape is not None and s.raw.shape[:2] != shape:
        raise InputError(f"scores of query {s.qid}: {s.raw.shape[:2]} layers x heads, others have {shape}")
    return s.raw.shape[:2]


@dataclass
class Batch:
    z: torch.Tensor  # [Q, K, L*H] normalised scores, 0 on padding (heads last: scores are one matmul)
    valid: torch.Tensor  # [Q, K] bool
    level: torch.Tensor  # [Q, K] dense rank of the relevance level among the query's candidates; -1 = padding
    middle: torch.Tensor  # [Q, K] bool, middle-zone documents
    n_levels: int


def prepare_batch(scores: list[QueryScores], qmap: dict[str, dict[str, int]], normalise: str) -> Batch:
    lh = scores[0].n_layers * scores[0].n_heads
    kmax = max(len(s.docids) for s in scores)
    q = len(scores)
    z = np.zeros((q, kmax, lh))
    valid = np.zeros((q, kmax), dtype=bool)
    level = np.full((q, kmax), -1, dtype=np.int64)
    middle = np.zeros((q, kmax), dtype=bool)
    for i, s in enumerate(scores):
        k = len(s.docids)
        z[i, :k, :] = normalise_scores(s.calibrated, normalise).reshape(lh, k).T
        valid[i, :k] = True
        rel = np.array([max(qmap[s.qid].get(d, 0), 0) for d in s.docids])
        level[i, :k] = np.searchsorted(np.unique(rel), rel)
        middle[i, :k] = middle_mask(np.asarray(s.positions), k)
    return Batch(
        torch.from_numpy(z), torch.from_numpy(valid), torch.from_numpy(level), torch.from_numpy(middle),
        int(level.max()) + 1,
    )


def objective(logits: torch.Tensor, b: Batch, cfg: HeadRankConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its terms for head logits [L*H]."""
    w = torch.softmax(logits, dim=0)
    s = b.z @ w  # [Q, K]
    # standardise each query's scores over its candidates: the loss sees the ordering and shape of the list, not its
    # scale (else spreading weight over many near-independent heads shrinks the scale and "wins" on violated pairs)
    vf = b.valid.to(s.dtype)
    k_q = vf.sum(dim=1)
    mean = (s * vf).sum(dim=1, keepdim=True) / k_q[:, None]
    var = (((s - mean) ** 2) * vf).sum(dim=1, keepdim=True) / k_q[:, None]
    s = torch.where(b.valid, (s - mean) / torch.sqrt(var + 1e-12), 0.0)
    neg_inf = torch.tensor(-math.inf, dtype=s.dtype)

    # hard adjacent-level pairs: each doc of level r vs the highest-scoring doc of level r-1 (chosen on detached scores)
    pair_sum = torch.zeros(s.shape[0], dtype=s.dtype)
    pair_n = torch.zeros(s.shape[0], dtype=s.dtype)
    for r in range(1, b.n_levels):
        lower = b.level == r - 1
        hard = torch.where(lower, s.detach(), neg_inf).argmax(dim=1, keepdim=True)  # [Q, 1]
        s_neg = s.gather(1, hard)
        pos = b.level == r
        term = torch.nn.functional.softplus(-(s - s_neg - cfg.margin) / cfg.temperature)
        pair_sum = pair_sum + torch.where(pos, term, 0.0).sum(dim=1)
        pair_n = pair_n + pos.sum(dim=1)
    pair = (pair_sum / pair_n.clamp(min=1))[pair_n > 0].mean()

    n_heads = w.numel()
    w_ent = -(w * torch.log(w.clamp(min=1e-300))).sum() / math.log(n_heads) if n_heads > 1 else w.sum() * 0

    # finite fill (not -inf): padded entries get p = 0 and p * log p = 0 with finite gradients
    logp = torch.log_softmax(torch.where(b.valid, s / cfg.temperature, -1e30), dim=1)
    ent_q = -torch.where(b.valid, logp.exp() * logp, 0.0).sum(dim=1)
    s_ent = (ent_q / torch.log(k_q.clamp(min=2))).mean()

    mid = b.middle.to(s.dtype)
    n_mid = mid.sum(dim=1)
    mean_mid = (s * mid).sum(dim=1) / n_mid.clamp(min=1)
    var_q = (((s - mean_mid[:, None]) ** 2) * mid).sum(dim=1) / n_mid.clamp(min=1)
    has_mid = n_mid >= 2
    mid_var = var_q[has_mid].mean() if bool(has_mid.any()) else s.sum() * 0

    total = pair + cfg.entropy_weight * w_ent + cfg.reg_score_entropy * s_ent - cfg.reg_middle_var * mid_var
    return total, {"pair": pair, "weight_entropy": w_ent, "score_entropy": s_ent, "middle_var": mid_var}


def usable_queries(scores: list[QueryScores], qrels: pl.DataFrame) -> tuple[list[QueryScores], dict[str, int]]:
    """Queries with at least one relevant (relevance > 0) and one non-relevant candidate; skips are counted."""
    return _usable(scores, qrels_map(qrels))


def _usable(scores: list[QueryScores], qmap: dict[str, dict[str, int]]) -> tuple[list[QueryScores], dict[str, int]]:
    keep: list[QueryScores] = []
    skipped = {"no_positive": 0, "no_negative": 0}
    for s in scores:
        rels = [qmap.get(s.qid, {}).get(d, 0) for d in s.docids]
        if not any(r > 0 for r in rels):
            skipped["no_positive"] += 1
        elif all(r > 0 for r in rels):
            skipped["no_negative"] += 1
        else:
            keep.append(s)
    if skipped["no_positive"] or skipped["no_negative"]:
        log.info(
            "headrank: skipped %d queries without a relevant candidate and %d without a non-relevant one (%d kept)",
            skipped["no_positive"], skipped["no_negative"], len(keep),
        )
    return keep, skipped


def _optimise(batch: Batch, n_layers: int, n_heads: int, cfg: HeadRankConfig):
    """Adam on the head logits (deterministic algorithms on): (weights [L, H], loss history, final loss terms)."""
    det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        logits = torch.zeros(n_layers * n_heads, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=cfg.lr)
        history: list[float] = []
        for _ in progress(range(int(cfg.steps)), "headrank", unit="step", enabled=bool(cfg.progress)):
            opt.zero_grad()
            loss, _ = objective(logits, batch, cfg)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
        with torch.no_grad():
            loss, terms = objective(logits, batch, cfg)
            history.append(float(loss))
            weights = torch.softmax(logits, dim=0).numpy().reshape(n_layers, n_heads).copy()
    finally:
        torch.use_deterministic_algorithms(det)
    return weights, history, terms


def train(scores: list[QueryScores], qrels: pl.DataFrame, cfg: HeadRankConfig | None = None) -> TrainResult:
    """Train head weights on the tuning split's cached scores (model frozen); deterministic on CPU."""
    cfg = cfg or HeadRankConfig()
    if not scores:
        raise InputError("headrank: no training queries given")
    shape = None
    for s in scores:
        shape = _check_scores(s, shape)
    qmap = qrels_map(qrels)
    keep, skipped = _usable(scores, qmap)
    if not keep:
        raise InputError("headrank: no training query has both a relevant and a non-relevant candidate")
    keep = sorted(keep, key=lambda s: s.qid)
    if cfg.n_train_queries is not None:
        if cfg.n_train_queries < len(keep):
            idx = np.sort(np.random.default_rng(cfg.seed).choice(len(keep), cfg.n_train_queries, replace=False))
            keep = [keep[i] for i in idx]
        elif cfg.n_train_queries > len(keep):
            log.warning("headrank: n_train_queries=%d but only %d usable queries; using all", cfg.n_train_queries, len(keep))

    n_layers, n_heads = shape
    t0 = time.perf_counter()
    weights, history, terms = _optimise(prepare_batch(keep, qmap, cfg.normalise), n_layers, n_heads, cfg)
    seconds = time.perf_counter() - t0
    selected, layers = select_heads(weights, cfg)
    log.info(
        "headrank: %d queries, %d steps, loss %.4f -> %.4f, %d heads selected, layers %d/%d, %.2fs",
        len(keep), cfg.steps, history[0], history[-1], len(selected), layers, n_layers, seconds,
    )
    return TrainResult(
        weights=weights,
        selected=selected,
        layers=layers,
        loss_history=history,
        train_seconds=seconds,
        normalise=cfg.normalise,
        train_qids=[s.qid for s in keep],
        skipped=skipped,
        final_terms={k: float(v) for k, v in terms.items()},
        config=asdict(cfg),
    )


def train_from_cache(scores_manifest: str, qrels_path: str, spec: dict, out_path: str) -> dict:
    """The ``train_headrank`` job: train on the tuning split's score cache with the method's HeadRank options
    (``spec`` keys that are ``HeadRankConfig`` fields) and save the weights. Returns counts."""
    from pathlib import Path

    from .headrank import save_weights
    from ..attention.scorecache import load_scores

    params = {k: v for k, v in spec.items() if k in HeadRankConfig.__dataclass_fields__}
    result = train(load_scores(Path(scores_manifest).parent), pl.read_parquet(qrels_path), HeadRankConfig(**params))
    save_weights(result, out_path)
    return {"train_queries": len(result.train_qids), "skipped": sum(result.skipped.values()),
            "selected_heads": len(result.selected), "layers": result.layers}
