"""HeadRank: preference-aligned head weights over cached attention scores (our reading; see docs/headrank.md).

The model stays frozen. One weight per (layer, head) — a softmax over all heads — is trained on the cached
calibrated score tensors (``QueryScores.raw - QueryScores.na``) of a training split with

- a pairwise preference loss on hard adjacent-level pairs: every document of relevance level g is paired with the
  highest-scoring (hardest, by the current weights) document of the next lower level present among the query's
  candidates (binary qrels: each relevant document against the hardest non-relevant one);
- an entropy penalty on the head weights (so few heads keep mass);
- a distribution regulariser: the entropy of each query's softmax score distribution (pushed down: sharper lists)
  and the variance of the scores of middle-zone documents (pushed up: against middle-context homogenisation).

Per-head scores are z-scored per query over the query's candidates before weighting (``normalise="zscore"``), so
heads of very different scale compete on how they order documents, not on magnitude. The same normalisation is
applied by :func:`aggregate` at inference. It is per head, so truncating layers never changes a kept head's scores.

At inference only the selected heads (smallest set holding ``select_mass`` of the weight, or the ``select_top_m``
heaviest) are used, renormalised; the deepest selected layer is the truncation depth.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import polars as pl
import torch

from .errors import InputError
from .io import write_json
from .progress import progress
from .scores import QueryScores
from .selectivity import _middle_mask, _qrels_map, selectivity  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

NORMALISATIONS = ("zscore", "none")
SELECTIONS = ("mass", "top_m")
FORMAT = "attnrank.headrank/1"


# ------------------------------------------------------------------------------------------------------ config
@dataclass
class HeadRankConfig:
    """Hyper-parameters of HeadRank training (all in config; defaults are our choice, not the paper's).

    Attributes:
        lr: Adam learning rate on the head logits.
        steps: full-batch optimisation steps.
        entropy_weight: weight of the head-weight entropy, normalised by log(L*H); larger -> fewer heads survive.
        reg_score_entropy: weight of the mean entropy of softmax(score / temperature) over each query's candidates
            (normalised by log k); minimised.
        reg_middle_var: weight of the variance of the middle-zone documents' scores; maximised (enters as minus).
        temperature: scale of score differences in the pairwise logistic loss and in the score softmax.
        margin: required score gap in the pairwise loss, in normalised score units.
        n_train_queries: train on a seeded sample of this many usable queries (None = all).
        seed: seed of the query sample (training itself is deterministic full-batch from uniform weights).
        select: "mass" (smallest set of heads holding ``select_mass`` of the weight) or "top_m".
        select_mass: cumulative weight mass of the selected heads when ``select == "mass"``.
        select_top_m: number of selected heads when ``select == "top_m"``.
        normalise: per-query per-head normalisation of calibrated scores: "zscore" or "none".
        progress: log progress lines over steps (``attnrank.progress``).
    """

    lr: float = 0.1
    steps: int = 300
    entropy_weight: float = 2.0
    reg_score_entropy: float = 0.01
    reg_middle_var: float = 0.01
    temperature: float = 0.5
    margin: float = 0.0
    n_train_queries: int | None = None
    seed: int = 0
    select: str = "mass"
    select_mass: float = 0.9
    select_top_m: int = 8
    normalise: str = "zscore"
    progress: bool = True

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> InputError:
            return InputError(f"headrank.{key}: {why}")

        if not self.lr > 0:
            raise bad("lr", f"must be > 0, got {self.lr}")
        if int(self.steps) != self.steps or self.steps < 1:
            raise bad("steps", f"must be an integer >= 1, got {self.steps}")
        for key in ("entropy_weight", "reg_score_entropy", "reg_middle_var", "margin"):
            if not getattr(self, key) >= 0:
                raise bad(key, f"must be >= 0, got {getattr(self, key)}")
        if not self.temperature > 0:
            raise bad("temperature", f"must be > 0, got {self.temperature}")
        if self.n_train_queries is not None and (int(self.n_train_queries) != self.n_train_queries or self.n_train_queries < 1):
            raise bad("n_train_queries", f"must be null or an integer >= 1, got {self.n_train_queries}")
        if self.select not in SELECTIONS:
            raise bad("select", f"must be one of {SELECTIONS}, got {self.select!r}")
        if not 0 < self.select_mass <= 1:
            raise bad("select_mass", f"must be in (0, 1], got {self.select_mass}")
        if int(self.select_top_m) != self.select_top_m or self.select_top_m < 1:
            raise bad("select_top_m", f"must be an integer >= 1, got {self.select_top_m}")
        if self.normalise not in NORMALISATIONS:
            raise bad("normalise", f"must be one of {NORMALISATIONS}, got {self.normalise!r}")

    @classmethod
    def from_dict(cls, d: Mapping | None, key: str = "headrank") -> "HeadRankConfig":
        """Build from a config mapping; an unknown key raises InputError naming ``key.<name>``."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise InputError(f"{key}.{k}: unknown HeadRank option (known: {', '.join(sorted(known))})")
        try:
            return cls(**d)
        except InputError as e:
            raise InputError(str(e).replace("headrank.", f"{key}.", 1)) from None


@dataclass
class TrainResult:
    """Trained head weights and what it took to get them.

    Attributes:
        weights: float64 [L, H], softmax over all heads (sums to 1).
        selected: selected heads as (layer, head), 0-based, heaviest first.
        depth: deepest selected layer, 1-based (layers ``< depth`` are needed at inference).
        loss_history: total objective per step (before that step's update), then the final value.
        train_seconds: wall time of the optimisation.
        normalise: per-head score normalisation used in training (aggregate must use the same).
        train_qids: the queries trained on.
        skipped: counts of unusable queries: ``no_positive``, ``no_negative``.
        final_terms: the objective's terms at the final weights.
        config: the HeadRankConfig as a dict.
    """

    weights: np.ndarray
    selected: list[tuple[int, int]]
    depth: int
    loss_history: list[float]
    train_seconds: float
    normalise: str
    train_qids: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    final_terms: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def selected_weights(self) -> np.ndarray:
        """[L, H] weights restricted to the selected heads and renormalised to sum 1 (what inference uses)."""
        return restrict_weights(self.weights, self.selected)


# ------------------------------------------------------------------------------------------------ scoring math
def normalise_scores(cal: np.ndarray, how: str = "zscore") -> np.ndarray:
    """Per-head normalisation over the last axis (the candidates), float64.

    ``zscore``: (x - mean) / std per (layer, head); a head with std 0 (e.g. one that cannot see any document)
    gives all zeros. ``none``: unchanged.
    """
    x = np.asarray(cal, dtype=np.float64)
    if how == "none":
        return x
    if how != "zscore":
        raise InputError(f"headrank.normalise: must be one of {NORMALISATIONS}, got {how!r}")
    mu = x.mean(axis=-1, keepdims=True)
    sd = x.std(axis=-1, keepdims=True)
    tiny = sd <= 1e-12 * np.maximum(1.0, np.abs(mu))
    return np.where(tiny, 0.0, (x - mu) / np.where(tiny, 1.0, sd))


def aggregate(s: QueryScores, weights: np.ndarray, depth: int | None = None, normalise: str = "zscore") -> np.ndarray:
    """Document scores [k]: sum over (layer, head) of weight × normalised calibrated score (s.raw - s.na).

    Only layers ``< depth`` are read when ``depth`` is given (the cache may then hold just those layers); without
    it, ``weights`` must have exactly ``s.n_layers`` rows. ``normalise`` must match training (TrainResult.normalise).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != s.n_heads:
        raise InputError(f"headrank weights: shape {w.shape} does not match {s.n_heads} heads of query {s.qid}")
    if depth is None:
        if w.shape[0] != s.n_layers:
            raise InputError(f"headrank weights: {w.shape[0]} layers but query {s.qid} has {s.n_layers} (give depth)")
        n = s.n_layers
    else:
        n = int(depth)
        if not 1 <= n <= min(w.shape[0], s.n_layers):
            raise InputError(
                f"headrank depth: {depth} outside 1..{min(w.shape[0], s.n_layers)} "
                f"(weights have {w.shape[0]} layers, query {s.qid} has {s.n_layers})"
            )
    cal = s.raw[:n].astype(np.float64) - s.na[:n].astype(np.float64)
    return np.einsum("lh,lhk->k", w[:n], normalise_scores(cal, normalise))


def restrict_weights(weights: np.ndarray, heads: list[tuple[int, int]]) -> np.ndarray:
    """Zero all but ``heads`` and renormalise to sum 1."""
    w = np.asarray(weights, dtype=np.float64)
    out = np.zeros_like(w)
    for l, h in heads:
        out[l, h] = w[l, h]
    total = out.sum()
    if not total > 0:
        raise InputError("headrank weights: the selected heads carry no weight")
    return out / total


def select_heads(weights: np.ndarray, cfg: HeadRankConfig) -> tuple[list[tuple[int, int]], int]:
    """Selected heads (heaviest first; ties by layer, then head) and the depth (deepest selected layer, 1-based)."""
    w = np.asarray(weights, dtype=np.float64)
    flat = w.ravel()
    order = np.argsort(-flat, kind="stable")
    if cfg.select == "top_m":
        m = min(int(cfg.select_top_m), flat.size)
    else:
        cum = np.cumsum(flat[order])
        m = int(np.searchsorted(cum, cfg.select_mass * cum[-1] - 1e-12, side="left")) + 1
        m = min(m, flat.size)
    heads = [(int(i // w.shape[1]), int(i % w.shape[1])) for i in order[:m]]
    return heads, max(l for l, _ in heads) + 1


# -------------------------------------------------------------------------------------------------- training
def _check(s: QueryScores, shape: tuple[int, int] | None) -> tuple[int, int]:
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
class _Batch:
    z: torch.Tensor  # [Q, K, L*H] normalised scores, 0 on padding (heads last: scores are one matmul)
    valid: torch.Tensor  # [Q, K] bool
    level: torch.Tensor  # [Q, K] dense rank of the relevance level among the query's candidates; -1 = padding
    middle: torch.Tensor  # [Q, K] bool, middle-zone documents
    n_levels: int


def _prepare(scores: list[QueryScores], qmap: dict[str, dict[str, int]], normalise: str) -> _Batch:
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
        middle[i, :k] = _middle_mask(np.asarray(s.positions), k)
    return _Batch(
        torch.from_numpy(z), torch.from_numpy(valid), torch.from_numpy(level), torch.from_numpy(middle),
        int(level.max()) + 1,
    )


def _objective(logits: torch.Tensor, b: _Batch, cfg: HeadRankConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
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
    return _usable(scores, _qrels_map(qrels))


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


def train(scores: list[QueryScores], qrels: pl.DataFrame, cfg: HeadRankConfig | None = None) -> TrainResult:
    """Train head weights on a training split's cached scores (model frozen); deterministic on CPU."""
    cfg = cfg or HeadRankConfig()
    if not scores:
        raise InputError("headrank: no training queries given")
    shape = None
    for s in scores:
        shape = _check(s, shape)
    qmap = _qrels_map(qrels)
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
    batch = _prepare(keep, qmap, cfg.normalise)
    det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    try:
        logits = torch.zeros(n_layers * n_heads, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([logits], lr=cfg.lr)
        history: list[float] = []
        for _ in progress(range(int(cfg.steps)), "headrank", unit="step", enabled=bool(cfg.progress)):
            opt.zero_grad()
            loss, _ = _objective(logits, batch, cfg)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
        with torch.no_grad():
            loss, terms = _objective(logits, batch, cfg)
            history.append(float(loss))
            weights = torch.softmax(logits, dim=0).numpy().reshape(n_layers, n_heads).copy()
    finally:
        torch.use_deterministic_algorithms(det)
    seconds = time.perf_counter() - t0
    selected, depth = select_heads(weights, cfg)
    log.info(
        "headrank: %d queries, %d steps, loss %.4f -> %.4f, %d heads selected, depth %d/%d, %.2fs",
        len(keep), cfg.steps, history[0], history[-1], len(selected), depth, n_layers, seconds,
    )
    return TrainResult(
        weights=weights,
        selected=selected,
        depth=depth,
        loss_history=history,
        train_seconds=seconds,
        normalise=cfg.normalise,
        train_qids=[s.qid for s in keep],
        skipped=skipped,
        final_terms={k: float(v) for k, v in terms.items()},
        config=asdict(cfg),
    )


# --------------------------------------------------------------------------------------------------- storage
def save_weights(result: TrainResult, path: str | os.PathLike) -> None:
    """Write weights (layer, head, weight, selected rows) plus meta as JSON, atomically (floats round-trip exactly)."""
    sel = set(result.selected)
    n_layers, n_heads = result.weights.shape
    write_json(
        path,
        {
            "format": FORMAT,
            "n_layers": n_layers,
            "n_heads": n_heads,
            "depth": result.depth,
            "normalise": result.normalise,
            "selected": [list(x) for x in result.selected],
            "heads": [
                {"layer": l, "head": h, "weight": float(result.weights[l, h]), "selected": (l, h) in sel}
                for l in range(n_layers)
                for h in range(n_heads)
            ],
            "loss_history": result.loss_history,
            "train_seconds": result.train_seconds,
            "train_qids": result.train_qids,
            "skipped": result.skipped,
            "final_terms": result.final_terms,
            "config": result.config,
        },
    )


def load_weights(path: str | os.PathLike) -> TrainResult:
    """Read a file written by :func:`save_weights`; a malformed file raises InputError naming it."""
    import json

    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: HeadRank weights file not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    try:
        if d.get("format") != FORMAT:
            raise InputError(f"{path}: not a HeadRank weights file (format {d.get('format')!r}, expected {FORMAT})")
        n_layers, n_heads = int(d["n_layers"]), int(d["n_heads"])
        w = np.full((n_layers, n_heads), np.nan)
        for row in d["heads"]:
            w[int(row["layer"]), int(row["head"])] = float(row["weight"])
        if np.isnan(w).any():
            raise InputError(f"{path}: weights missing for some (layer, head)")
        return TrainResult(
            weights=w,
            selected=[(int(l), int(h)) for l, h in d["selected"]],
            depth=int(d["depth"]),
            loss_history=[float(x) for x in d["loss_history"]],
            train_seconds=float(d["train_seconds"]),
            normalise=str(d["normalise"]),
            train_qids=[str(q) for q in d.get("train_qids", [])],
            skipped={k: int(v) for k, v in d.get("skipped", {}).items()},
            final_terms={k: float(v) for k, v in d.get("final_terms", {}).items()},
            config=dict(d.get("config", {})),
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{path}: malformed HeadRank weights file ({type(e).__name__}: {e})") from None
