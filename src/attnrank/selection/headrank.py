"""HeadRank: preference-aligned head weights over cached attention scores (our reading; see docs/headrank.md).

The model stays frozen. One weight per (layer, head) — a softmax over all heads — is trained on the cached
calibrated score tensors (``QueryScores.raw - QueryScores.na``) of the tuning split with

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
heaviest) are used, renormalised; the deepest selected layer is the truncation layers.

This module (configuration, inference, storage) needs no torch; training is in ``attnrank.selection.headrank_fit``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from ..errors import InputError
from ..io import write_json
from ..attention.scores import QueryScores

log = logging.getLogger(__name__)

NORMALISATIONS = ("zscore", "none")
SELECTIONS = ("mass", "top_m")
FORMAT = "attnrank.selection.headrank/2"  # 2: "layers" (was "depth")


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
        layers: layers needed at inference: the deepest selected layer, 1-based (layers ``0 .. layers-1``).
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
    layers: int
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


def aggregate(s: QueryScores, weights: np.ndarray, layers: int | None = None, normalise: str = "zscore") -> np.ndarray:
    """Document scores [k]: sum over (layer, head) of weight × normalised calibrated score (s.raw - s.na).

    Only the first ``layers`` layers are read when ``layers`` is given (the cache may then hold just those layers); without
    it, ``weights`` must have exactly ``s.n_layers`` rows. ``normalise`` must match training (TrainResult.normalise).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != s.n_heads:
        raise InputError(f"headrank weights: shape {w.shape} does not match {s.n_heads} heads of query {s.qid}")
    if layers is None:
        if w.shape[0] != s.n_layers:
            raise InputError(f"headrank weights: {w.shape[0]} layers but query {s.qid} has {s.n_layers} (give layers)")
        n = s.n_layers
    else:
        n = int(layers)
        if not 1 <= n <= min(w.shape[0], s.n_layers):
            raise InputError(
                f"headrank layers: {layers} outside 1..{min(w.shape[0], s.n_layers)} "
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
    """Selected heads (heaviest first; ties by layer, then head) and the layers they need (deepest selected layer, 1-based)."""
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
            "layers": result.layers,
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
            layers=int(d["layers"]),
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
