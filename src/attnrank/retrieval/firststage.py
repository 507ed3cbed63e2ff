"""First-stage retrieval of a dataset's queries: BM25 (``attnrank.retrieval.bm25``, pyserini) or a dense encoder
(``attnrank.retrieval.dense``), chosen by the retriever's ``kind``; BRIGHT's excluded documents and (optionally) documents
whose id is the query id removed, with counts for the run's ``.json`` sidecar."""

from __future__ import annotations

import polars as pl

from ..data import bright
from . import candidates


def first_stage(spec: dict, queries: pl.DataFrame, corpus_path: str | None = None, index: str | None = None,
                embeddings: str | None = None, threads: int = 1) -> pl.DataFrame:
    """The run (qid, docid, score) of one retriever spec (``kind: bm25`` with ``k1``/``b`` over a Lucene index, or
    ``kind: dense`` with encoder keys over the corpus, embeddings cached at ``embeddings``), top ``depth``."""
    if spec["kind"] == "bm25":
        from . import bm25

        return bm25.search(index, queries, k=spec["depth"], k1=spec.get("k1", 0.9), b=spec.get("b", 0.4), threads=threads)
    from . import dense

    encoder = {k: v for k, v in spec.items() if k not in ("kind", "depth")}
    return dense.run(corpus_path, queries, encoder, k=spec["depth"], cache_path=embeddings)  # streamed from the file


def clean_run(run: pl.DataFrame, dataset_meta: str, drop_self_matches: bool, qrels: pl.DataFrame | None = None,
              where: str = "run") -> tuple[pl.DataFrame, dict]:
    """Remove BRIGHT's excluded documents (listed in the dataset's ``meta.json``; none elsewhere) and, with
    ``drop_self_matches``, documents whose id is the query id (BEIR's evaluation and ICR do; a dropped document
    judged relevant in ``qrels`` is counted and warned about, naming ``where``). Returns the run and its counts."""
    excluded = bright.read_excluded(dataset_meta)
    if excluded.height:
        run = bright.drop_excluded(run, excluded)
    meta = {"n_excluded": excluded.height}
    if drop_self_matches:
        run, info = candidates.drop_self_matches(run, qrels, where)
        meta.update(info)
    return run, meta


def retrieve(spec: dict, inputs: dict, outputs: dict, tag: str, drop_self_matches: bool, embeddings: str | None = None,
             threads: int = 1, where: str = "run") -> dict:
    """The ``retrieve`` job: ``inputs`` (queries, qrels, corpus, meta, index for BM25) -> ``outputs`` (run: TREC,
    meta: its sidecar); ``where`` names the run in warnings. Returns the job's summary counts."""
    from .. import io

    queries = pl.read_parquet(inputs["queries"])
    run = first_stage(spec, queries, inputs.get("corpus"), inputs.get("index"), embeddings, threads)
    run, meta = clean_run(run, inputs["meta"], drop_self_matches, pl.read_parquet(inputs["qrels"]), where)
    io.write_trec(run, outputs["run"], tag=tag, depth=spec["depth"])
    io.write_json(outputs["meta"], meta)
    n_hit = run["qid"].n_unique()
    return {"queries": queries.height, "without_hits": queries.height - n_hit, "excluded": meta["n_excluded"],
            "self_matches_dropped": meta.get("self_matches_dropped", 0), "rows": run.height}
