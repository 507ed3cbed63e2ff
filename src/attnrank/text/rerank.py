"""Running a text re-ranker over a candidates table: the registry of kinds (``rankgpt``, ``yesno``, ``qlm``,
``setwise``, ``pointwise``), and ``rerank_candidates(kind, model_dir, candidates, params)``, which returns the run
(qid, docid, score) and the cost counters (``texttypes.Stats``) with logged progress."""

from __future__ import annotations

import logging
import math
import time
from typing import Callable

import polars as pl
import torch

from .attnscoring import rerank_pointwise
from ..errors import InputError
from .rankgpt import rerank_rankgpt
from .likelihood import rerank_qlm, rerank_yesno
from .lm import model_device
from ..progress import progress as progress_lines
from .setwise import rerank_setwise
from .kinds import TEXT_KINDS
from .base import Doc, Stats, resolve_params

log = logging.getLogger(__name__)

RERANKERS: dict[str, Callable] = {"rankgpt": rerank_rankgpt, "yesno": rerank_yesno, "qlm": rerank_qlm,
                                  "setwise": rerank_setwise, "pointwise": rerank_pointwise}
RERANKER_KINDS = tuple(TEXT_KINDS)


def get_reranker(kind: str) -> Callable:
    """The re-ranker function of a method kind (InputError for an unknown kind)."""
    if kind not in RERANKERS:
        raise InputError(f"methods: unknown re-ranker kind '{kind}'; known: {sorted(RERANKERS)}")
    return RERANKERS[kind]


def iter_queries(candidates: pl.DataFrame) -> list[tuple[str, str, list[Doc]]]:
    """(qid, query, [(docid, text)]) per query (``attnrank.retrieval.candidates.per_query``: rank order, ties by docid)."""
    from ..retrieval.candidates import per_query

    return [(qid, query, list(zip(docids, texts))) for qid, query, docids, texts in per_query(candidates)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rerank_candidates(
    method_kind: str,
    model_dir,
    candidates: pl.DataFrame,
    params: dict | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    name: str | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Re-rank every query of ``candidates`` with one method kind.

    ``model_dir`` is a prepared model folder (``attnrank.models.load_model``) or an already loaded
    ``(model, tokenizer)`` pair. Returns the run (qid, docid, score; every candidate) and ``Stats.as_dict()``.
    Parameters are checked before the model loads; errors name ``methods.<name>.<key>``.
    """
    fn = get_reranker(method_kind)
    params = resolve_params(method_kind, {**(params or {}), "_name": name or method_kind})
    if isinstance(model_dir, tuple):
        model, tokenizer = model_dir
    else:
        from ..models import load_model

        model, tokenizer = load_model(model_dir, device=device)
    dev = model_device(model)
    stats = Stats()
    qids: list[str] = []
    docids: list[str] = []
    scores: list[float] = []
    n_q = candidates["qid"].n_unique()
    for qid, query, docs in progress_lines(iter_queries(candidates), f"rerank {method_kind}", total=n_q, unit="q", enabled=progress):
        _sync(dev)
        t0 = time.perf_counter()
        ranked = fn(model, tokenizer, query, docs, params or {}, stats)
        _sync(dev)
        stats.seconds.append(time.perf_counter() - t0)
        stats.n_queries += 1
        if sorted(d for d, _ in ranked) != sorted(d for d, _ in docs):
            raise RuntimeError(f"{method_kind}: query {qid}: ranking is not a permutation of the candidates")
        for d, s in ranked:
            qids.append(qid)
            docids.append(d)
            scores.append(float(s) if math.isfinite(s) else -math.inf)
    run = pl.DataFrame({"qid": qids, "docid": docids, "score": scores},
                       schema={"qid": pl.String, "docid": pl.String, "score": pl.Float64})
    summary = stats.as_dict()
    summary["method_kind"] = method_kind
    summary["device"] = str(dev)
    if summary["parse_failures"] or summary["empty_generations"]:
        log.warning("%s: %d parse failures, %d empty generations over %d generations", method_kind,
                    summary["parse_failures"], summary["empty_generations"], summary["generations"])
    return run, summary


def rerank_job(name: str, spec: dict, prompt: dict, inputs: dict, outputs: dict) -> dict:
    """The ``rerank_text`` job: re-rank the candidates with one text method (its artifacts among ``inputs`` when it
    scores by attention; ``prompt`` carries the truncation every cell of the grid shares), merge the first-stage
    tail below, write the run and its ``.json`` sidecar (spec and cost counters). Returns counts."""
    from .. import io
    from ..retrieval import candidates
    from . import attnscoring
    from ..wiring import counts

    spec = dict(spec)
    params = attnscoring.text_params(name, spec, prompt, inputs)
    run, stats = rerank_candidates(spec["kind"], inputs["model"], pl.read_parquet(inputs["candidates"]), params, name=name)
    full = candidates.merge_with_tail(run, io.read_trec(inputs["run"]))
    io.write_trec(full, outputs["run"], tag=name)
    io.write_json(outputs["used"], {"method": name, "spec": spec, "stats": stats})
    return {"queries": run["qid"].n_unique(), "reranked": run.height, **counts(stats)}
