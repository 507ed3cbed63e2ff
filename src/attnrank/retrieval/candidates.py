"""Candidate lists handed to the re-rankers, and merging re-ranked heads back onto the first-stage tail.

``candidates.parquet`` columns: ``qid``, ``query``, ``docid``, ``rank`` (1-based first-stage rank), ``score``
(first-stage score), ``text`` (title + body, the body cut to ``max_doc_words`` words as the references cut it:
``' '.join(body.split(' ')[:n])``, the title prepended after; the policy is recorded in the file's metadata sidecar
``candidates.json``).
"""

from __future__ import annotations

import logging

import polars as pl

from ..data.sources import Dataset, doc_text
from ..errors import InputError
from ..io import rank_run

log = logging.getLogger(__name__)


def truncate_words(text: str, max_words: int | None) -> str:
    """The first ``max_words`` words of a body as ICR (experiments.py:218), QRHead (exp_scripts/retrieval/
    run_retrieval.py:67) and CoRe (experiments/reranking.py:86) cut it: split on single spaces only (a newline does
    not split; consecutive spaces count empty words)."""
    if max_words is None:
        return text
    return " ".join(text.split(" ")[:max_words])


def build(ds: Dataset, run: pl.DataFrame, depth: int, max_doc_words: int | None, key: str = "?") -> tuple[pl.DataFrame, dict]:
    """Top-``depth`` candidates per query with query and document text.

    Queries the run does not cover are skipped with a logged warning (they score 0 in evaluation); a run naming a
    document that is not in the corpus is an error.
    """
    if depth <= 0:
        raise InputError(f"config key 'candidates.depth': must be > 0 (got {depth})")
    top = run.filter(pl.col("rank") <= depth)
    # only the documents the run names are read (a lazy corpus is scanned with a docid predicate)
    corpus = ds.corpus.lazy().filter(pl.col("docid").is_in(top["docid"].unique().implode())).collect()
    unknown = top.join(corpus.select("docid"), on="docid", how="anti")
    if unknown.height:
        raise InputError(f"{key}: run names {unknown.height} document(s) not in the corpus, e.g. {unknown['docid'][:3].to_list()}")
    cands = (
        top.join(ds.queries.rename({"text": "query"}), on="qid", how="inner")
        .join(corpus, on="docid", how="left")
        .with_columns(
            text=pl.struct("title", "text").map_elements(
                lambda r: doc_text(r["title"], truncate_words(r["text"] or "", max_doc_words)), return_dtype=pl.String
            )
        )
        .select("qid", "query", "docid", "rank", "score", "text")
        .sort(["qid", "rank"])
    )
    missing = sorted(set(ds.queries["qid"]) - set(cands["qid"]))
    if missing:
        log.warning("%s: %d quer(y/ies) without candidates skipped (they score 0): %s", key, len(missing), missing[:5])
    meta = {"depth": depth, "max_doc_words": max_doc_words, "word_cut": "body, split(' '), title prepended", "n_queries": cands["qid"].n_unique(), "queries_without_candidates": missing}
    return cands, meta


CANDIDATE_COLUMNS = ("qid", "query", "docid", "rank", "text")


def per_query(cands: pl.DataFrame) -> list[tuple[str, str, list[str], list[str]]]:
    """The one reader of a candidates table for the re-rankers (attention engine and text re-rankers alike):
    (qid, query, docids, texts) per query, documents in first-stage rank order with ties broken by docid (as
    every run is ranked), queries in order of first appearance."""
    missing = [c for c in CANDIDATE_COLUMNS if c not in cands.columns]
    if missing:
        raise InputError(f"candidates: missing column(s) {missing}; expected {list(CANDIDATE_COLUMNS)}")
    df = cands.select(
        pl.col("qid").cast(pl.String), pl.col("query").cast(pl.String).fill_null(""), pl.col("docid").cast(pl.String),
        pl.col("rank"), pl.col("text").cast(pl.String).fill_null(""),
    )
    out = []
    for (qid,), g in df.group_by("qid", maintain_order=True):
        g = g.sort(["rank", "docid"])
        out.append((qid, g["query"][0], g["docid"].to_list(), g["text"].to_list()))
    return out


def drop_self_matches(run: pl.DataFrame, qrels: pl.DataFrame | None = None, where: str = "run") -> tuple[pl.DataFrame, dict]:
    """Drop retrieved documents whose id equals the query id, as BEIR's evaluation (``ignore_identical_ids``) and
    ICR do (ArguAna, Quora: the query is itself a corpus document). Returns the run (ranks renumbered from 1 in
    the old order) and counts for the run's metadata. With ``qrels`` (qid, docid, relevance), a dropped document
    judged relevant is counted and warned about: query and document ids then collide by accident (CISI's do),
    and the dataset's ``drop_self_matches`` should be false."""
    same = pl.col("qid").cast(pl.String) == pl.col("docid").cast(pl.String)
    dropped = run.filter(same)
    judged: list[str] = []
    if qrels is not None and dropped.height:
        rel = qrels.filter(pl.col("relevance") > 0).select(pl.col("qid").cast(pl.String), pl.col("docid").cast(pl.String))
        judged = sorted(dropped.select(pl.col("qid").cast(pl.String), pl.col("docid").cast(pl.String)).join(rel, on=["qid", "docid"])["qid"].to_list())
        if judged:
            log.warning("%s: %d dropped self-match(es) are judged relevant (queries %s): query and document ids collide "
                        "by accident here; set datasets.<name>.drop_self_matches: false", where, len(judged), judged[:10])
    kept = run.filter(~same)
    if "rank" in kept.columns:
        kept = kept.sort(["qid", "rank"]).with_columns(rank=pl.int_range(1, pl.len() + 1).over("qid").cast(run.schema["rank"]))
    info = {"self_matches_dropped": dropped.height, "queries_with_self_match": sorted(dropped["qid"].cast(pl.String).unique().to_list())[:20],
            "self_matches_judged_relevant": len(judged)}
    return kept, info


def merge_with_tail(reranked: pl.DataFrame, first_stage: pl.DataFrame) -> pl.DataFrame:
    """Put re-ranked candidates (qid, docid, score) above the rest of the first-stage run (qid, docid, rank).

    The result is a full run whose order is: the re-ranked top-k by their new scores, then the first-stage
    documents that were not re-ranked in first-stage order, so deep metrics (Recall@100) stay comparable.
    Scores are rewritten as descending ranks to make the order explicit.
    """
    head = rank_run(reranked.select("qid", "docid", "score")).select("qid", "docid", rank_head="rank")
    tail = first_stage.join(head.select("qid", "docid"), on=["qid", "docid"], how="anti").filter(
        pl.col("qid").is_in(head["qid"].unique().implode())
    )
    n_head = head.group_by("qid").agg(n=pl.len())
    tail = (
        tail.sort(["qid", "rank"])
        .join(n_head, on="qid")
        .with_columns(pos=pl.col("n") + pl.int_range(1, pl.len() + 1).over("qid"))
        .select("qid", "docid", "pos")
    )
    full = pl.concat([head.rename({"rank_head": "pos"}).with_columns(pl.col("pos").cast(pl.Int64)), tail.with_columns(pl.col("pos").cast(pl.Int64))])
    return full.with_columns(score=(-pl.col("pos")).cast(pl.Float64)).select("qid", "docid", "score")


def write_candidates(data_dir: str, run_path: str, depth: int, max_doc_words: int | None, key: str,
                     out_parquet: str, out_meta: str, run_out: str | None = None) -> dict:
    """The ``candidates`` job: the top ``depth`` of a first-stage run with query and document text (see
    :func:`build`), and its ``.json`` sidecar (depth, truncation, counts); ``run_out``: that top ``depth`` as a
    TREC run (the first-stage row of the candidate list). Returns counts."""
    from .. import io
    from ..data import sources
    from ..wiring import counts

    run = io.read_trec(run_path)
    cands, meta = build(sources.read(data_dir, lazy=True), run, depth, max_doc_words, key=key)
    io.write_parquet(cands, out_parquet)
    io.write_json(out_meta, meta)
    if run_out is not None:
        io.write_trec(run.filter(pl.col("rank") <= depth), run_out, tag=key.replace("/", "-"), depth=depth)
    return {"queries": cands["qid"].n_unique(), "candidates": cands.height, **counts(meta)}
