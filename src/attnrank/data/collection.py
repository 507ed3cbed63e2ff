"""The normalised dataset every source becomes (``attnrank.data.sources`` for ir_datasets ids and BEIR folders,
``attnrank.data.bright`` for BRIGHT): three polars frames with fixed schemas plus notes on what was skipped."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

CORPUS_SCHEMA = {"docid": pl.String, "title": pl.String, "text": pl.String}
QUERIES_SCHEMA = {"qid": pl.String, "text": pl.String}
QRELS_SCHEMA = {"qid": pl.String, "docid": pl.String, "relevance": pl.Int32}


@dataclass
class Dataset:
    """A normalised dataset: three polars frames plus notes on what was skipped (the corpus may be a lazy scan of
    a Parquet file, see ``attnrank.data.sources.CorpusSpool``)."""

    corpus: pl.DataFrame | pl.LazyFrame
    queries: pl.DataFrame
    qrels: pl.DataFrame
    notes: dict = field(default_factory=dict)
