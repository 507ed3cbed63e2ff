"""Paired significance tests of every run against a baseline run, with Holm correction per (dataset, metric).

Inputs are the per-query metric rows that ``evaluation.per_query`` writes (qid, metric, value + dataset, retriever,
model, method), so no run or qrels file is re-read.

Tests (both two-sided, paired by query id):

- ``fisher``: Fisher's randomization test (Smucker et al., CIKM'07): under H0 the two systems' scores of a query
  are exchangeable, i.e. each per-query difference keeps or flips its sign. When ``2**n <= n_permutations`` every
  sign pattern is enumerated (exact p-value); otherwise ``n_permutations`` random patterns from
  ``numpy.random.default_rng(seed)`` give ``p = (b + 1) / (n_permutations + 1)`` (b = patterns at least as extreme;
  never 0). Own code, not ``ranx.statistical_tests.fisher_randomization_test``: that numba kernel runs its
  permutations in parallel threads that ignore the seed, so the same call returns different p-values
  (measured: 0.144, 0.122, 0.123 for three identical calls with ``random_seed=42``).
- ``student``: paired t-test, ``scipy.stats.ttest_rel`` (what ranx's ``paired_student_t_test`` calls). Two
  identical runs (all differences 0) get p = 1 instead of scipy's NaN.

The same seed is used for every comparison, so a p-value does not depend on which other runs are in the table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import polars as pl

from ..errors import InputError
from ..progress import progress

log = logging.getLogger(__name__)

ID_COLS = ["dataset", "retriever", "model", "method"]
FIRST_STAGE = "first_stage"
FIRST_STAGE_MODEL = "-"
TESTS = ("fisher", "student")


@dataclass(frozen=True)
class TestConfig:
    """``evaluation.significance`` of the config."""

    test: str = "fisher"
    alpha: float = 0.05
    n_permutations: int = 10000
    seed: int = 0

    __test__ = False  # not a pytest class

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise InputError(f"config key 'evaluation.significance.test': {self.test!r} is not one of {list(TESTS)}")
        if not 0 < self.alpha < 1:
            raise InputError(f"config key 'evaluation.significance.alpha': {self.alpha} is not in (0, 1)")
        if self.n_permutations < 1:
            raise InputError("config key 'evaluation.significance.n_permutations': must be >= 1")

    @classmethod
    def from_config(cls, cfg: dict | None) -> "TestConfig":
        return cls(**(cfg or {}))

    def describe(self) -> str:
        if self.test == "student":
            return "two-sided paired t-test"
        return f"two-sided paired randomization test, {self.n_permutations:,} permutations"


def randomization_tests(diffs: np.ndarray, n_permutations: int = 10000, seed: int = 0) -> np.ndarray:
    """Two-sided paired Fisher randomization tests of mean = 0 for each column of ``diffs`` (queries x tests).

    All columns share the sign patterns (one generation, one matrix product); each column's p-value equals
    ``randomization_test`` on that column alone. Exact when 2**n <= n_permutations.
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[:, None] if d.ndim == 1 else d
    n, k = d.shape
    if n == 0:
        return np.ones(k)
    observed = np.abs(d.sum(axis=0))
    tol = 1e-12 * np.maximum(1.0, np.abs(d).sum(axis=0))  # the same terms summed in another order differ by ulps
    if n < 63 and 2**n <= n_permutations:
        bits = (np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)) & 1
        stats = np.abs((1 - 2 * bits).astype(np.float64) @ d)
        return np.mean(stats >= observed - tol, axis=0)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_permutations, 4_000_000 // n))
    extreme = np.zeros(k, dtype=np.int64)
    done = 0
    while done < n_permutations:
        m = min(chunk, n_permutations - done)
        signs = rng.integers(0, 2, size=(m, n), dtype=np.int8).astype(np.float64)
        signs *= -2.0
        signs += 1.0
        extreme += np.count_nonzero(np.abs(signs @ d) >= observed - tol, axis=0)
        done += m
    return (extreme + 1) / (n_permutations + 1)


def randomization_test(a: np.ndarray, b: np.ndarray, n_permutations: int = 10000, seed: int = 0) -> float:
    """Two-sided paired Fisher randomization test of mean(b - a) = 0; exact when 2**n <= n_permutations."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    return float(randomization_tests(d, n_permutations, seed)[0])


def t_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value (scipy); 1.0 when every difference is 0."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.all(a == b):
        return 1.0
    p = float(ttest_rel(b, a, alternative="two-sided").pvalue)
    return 1.0 if np.isnan(p) else p


def paired_p_value(a: np.ndarray, b: np.ndarray, cfg: TestConfig) -> float:
    if cfg.test == "student":
        return t_test(a, b)
    return randomization_test(a, b, cfg.n_permutations, cfg.seed)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given): step-down, monotone, capped at 1.

    Written here because statsmodels (``multipletests(method="holm")``) is not a dependency; a hypothesis is
    rejected at level alpha iff its adjusted p-value <= alpha.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


RunKey = tuple[str, str, str, str]  # dataset, retriever, model, method


def resolve_baseline(run: RunKey, available: set[RunKey], baseline: str) -> RunKey | None:
    """The run that ``run`` is tested against, or None (the run is the baseline, or no baseline exists).

    ``baseline = "first_stage"``: the first-stage run that the run re-ranks, (dataset, retriever, "-", retriever).
    Any other name B: the run of method B with the same dataset, first stage and model (e.g. ``icr`` to test
    QR / CoRe heads against all-heads ICR of the same model) if it exists, else the first-stage run of retriever
    B on the same dataset (e.g. ``bm25``: every run against BM25). With several prompt orders, runs are labelled
    ``method@order``: B without an order means B in the run's own order (``icr`` tests ``qrhead@reversed``
    against ``icr@reversed``); ``B@order`` names one run.
    """
    dataset, retriever, model, method = run
    if baseline == FIRST_STAGE:
        candidates = [(dataset, retriever, FIRST_STAGE_MODEL, retriever)]
    else:
        _, at, order = method.partition("@")
        same_order = [(dataset, retriever, model, f"{baseline}@{order}")] if at and "@" not in baseline else []
        candidates = same_order + [(dataset, retriever, model, baseline), (dataset, baseline, FIRST_STAGE_MODEL, baseline)]
    for c in candidates:
        if c in available:
            return None if c == run else c
    return None


SIG_SCHEMA = {
    "dataset": pl.String, "retriever": pl.String, "model": pl.String, "method": pl.String, "metric": pl.String,
    "baseline_retriever": pl.String, "baseline_model": pl.String, "baseline_method": pl.String, "n_pairs": pl.Int64,
    "p_value": pl.Float64, "p_holm": pl.Float64, "significant": pl.Boolean,
}


def compare_to_baseline(per_query: pl.DataFrame, baseline: str = FIRST_STAGE, cfg: TestConfig = TestConfig()) -> pl.DataFrame:
    """One row per tested (run, metric): its baseline, query pairs, raw and Holm-adjusted p-value, significance.

    Holm's family is every run tested on the same (dataset, metric). ``significant`` is ``p_holm <= alpha``
    in either direction; the sign of the mean difference says which way.
    """
    missing = set(ID_COLS + ["qid", "metric", "value"]) - set(per_query.columns)
    if missing:
        raise InputError(f"per-query metrics: missing column(s) {sorted(missing)}")
    values: dict[tuple, dict[str, float]] = {}
    for key, part in per_query.partition_by(ID_COLS + ["metric"], as_dict=True, maintain_order=True).items():
        values[tuple(key)] = dict(zip(part["qid"].to_list(), part["value"].to_list()))
    runs = {k[:4] for k in values}
    rows, pairs = [], []
    untested = []
    for key in sorted(values):
        run, metric = key[:4], key[4]
        base = resolve_baseline(run, runs, baseline)
        if base is None or (*base, metric) not in values:
            untested.append(run)
            continue
        bvals = values[(*base, metric)]
        qids = tuple(sorted(set(values[key]) & set(bvals)))
        if len(qids) != len(values[key]) or len(qids) != len(bvals):
            log.warning("%s vs %s (%s): only %d shared queries are paired", run, base, metric, len(qids))
        pairs.append((qids, np.array([bvals[q] for q in qids]), np.array([values[key][q] for q in qids])))
        rows.append({**dict(zip(ID_COLS, run)), "metric": metric, "baseline_retriever": base[1], "baseline_model": base[2],
                     "baseline_method": base[3], "n_pairs": len(qids), "p_value": 1.0})
    # randomization tests over the same queries share one set of sign patterns (same seed, same p-values)
    by_queries: dict[tuple, list[int]] = {}
    for i, (qids, _, _) in enumerate(pairs):
        by_queries.setdefault(qids, []).append(i)
    for idx in progress(list(by_queries.values()), f"significance ({cfg.test})", unit="group", enabled=len(by_queries) >= 5):
        if cfg.test == "fisher":
            diffs = np.stack([pairs[i][2] - pairs[i][1] for i in idx], axis=1)
            for i, p in zip(idx, randomization_tests(diffs, cfg.n_permutations, cfg.seed)):
                rows[i]["p_value"] = float(p)
        else:
            for i in idx:
                rows[i]["p_value"] = t_test(pairs[i][1], pairs[i][2])
    if untested:
        log.info("not tested against baseline %r (baselines themselves or no baseline run): %s",
                 baseline, sorted(set(untested)))
    if not rows:
        return pl.DataFrame(schema=SIG_SCHEMA)
    out = pl.DataFrame(rows).with_columns(p_holm=pl.lit(None, pl.Float64), significant=pl.lit(None, pl.Boolean))
    parts = []
    for part in out.partition_by(["dataset", "metric"], maintain_order=True):
        adj = holm(part["p_value"].to_list())
        parts.append(part.with_columns(p_holm=pl.Series(adj), significant=pl.Series(adj) <= cfg.alpha))
    return pl.concat(parts).select(list(SIG_SCHEMA)).cast(SIG_SCHEMA).sort(ID_COLS + ["metric"])
