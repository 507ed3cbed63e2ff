"""BRIGHT (reasoning-intensive retrieval) through the HF ``datasets`` library: one domain -> a :class:`Dataset`.

BRIGHT has no ir_datasets id. The HF dataset ``xlangai/BRIGHT`` has the configs ``examples`` (``id``, ``query``,
``gold_ids``, ``gold_ids_long``, ``excluded_ids``, ...), ``documents`` and ``long_documents`` (``id``,
``content``), with one split per domain (:data:`DOMAINS`). A config entry
``{source: bright, domain: biology}`` (optionally ``long_documents: true``, ``path: <local copy>``) becomes:

- corpus: ``docid`` = document id, ``title`` = "", ``text`` = content;
- queries: ``qid`` = example id, ``text`` = query;
- qrels: relevance 1 for every gold id (``gold_ids_long`` with long documents);
- ``notes["excluded"]``: ``{qid: [docid, ...]}`` from ``excluded_ids`` (the placeholder "N/A" dropped). BRIGHT's
  evaluation removes these documents from the query's ranking (they are near-duplicates of the query's own
  source, e.g. the same LeetCode problem); :func:`drop_excluded` does that to a run. The dataset rule writes the
  notes to ``meta.json``, so :func:`read_excluded` reads them back from there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from .collection import CORPUS_SCHEMA, QRELS_SCHEMA, QUERIES_SCHEMA, Dataset
from ..errors import InputError

HF_ID = "xlangai/BRIGHT"
DOMAINS = (
    "biology", "earth_science", "economics", "psychology", "robotics", "stackoverflow", "sustainable_living",
    "pony", "leetcode", "aops", "theoremqa_theorems", "theoremqa_questions",
)
_NA = {"", "N/A", "n/a", None}


def _id(v) -> str | None:
    """An id as a string; None stays None (``attnrank.data.sources.clean`` refuses it) instead of becoming "None"."""
    return None if v is None else str(v)


def from_records(examples: list[dict], documents: list[dict], long_documents: bool = False, key: str = "?"):
    """Build a :class:`attnrank.data.collection.Dataset` from BRIGHT ``examples`` and ``documents`` rows."""
    gold_key = "gold_ids_long" if long_documents else "gold_ids"
    if examples:
        missing = {"id", "query", gold_key} - set(examples[0])
        if missing:
            raise InputError(f"datasets.{key}: BRIGHT examples lack field(s) {sorted(missing)}")
    corpus = pl.DataFrame(
        [(_id(d.get("id")), "", d.get("content") or "") for d in documents], schema=CORPUS_SCHEMA, orient="row"
    )
    queries = pl.DataFrame([(_id(e["id"]), e["query"] or "") for e in examples], schema=QUERIES_SCHEMA, orient="row")
    qrels = pl.DataFrame(
        [(str(e["id"]), str(g), 1) for e in examples for g in (e[gold_key] or []) if g not in _NA],
        schema=QRELS_SCHEMA, orient="row",
    )
    excluded = {
        str(e["id"]): sorted({str(x) for x in (e.get("excluded_ids") or []) if x not in _NA}) for e in examples
    }
    excluded = {q: ids for q, ids in excluded.items() if ids}
    notes = {"long_documents": long_documents, "excluded": excluded, "n_excluded": sum(map(len, excluded.values()))}
    return Dataset(corpus, queries, qrels, notes)


def read_bright(domain: str, key: str = "?", long_documents: bool = False, path: str | None = None):
    """Load one BRIGHT domain with ``datasets.load_dataset`` (the HF hub, its local cache, or a local copy at
    ``path``). Offline without a cached copy: a one-line InputError naming the dataset."""
    if domain not in DOMAINS:
        raise InputError(f"datasets.{key}.domain: unknown BRIGHT domain {domain!r} (one of: {', '.join(DOMAINS)})")
    import datasets

    source = path or HF_ID
    docs_config = "long_documents" if long_documents else "documents"
    try:
        examples = datasets.load_dataset(source, "examples", split=domain)
        documents = datasets.load_dataset(source, docs_config, split=domain)
    except Exception as e:  # ConnectionError offline, FileNotFoundError for a bad path, ValueError for a bad split
        msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise InputError(
            f"datasets.{key}: cannot load BRIGHT '{domain}' from {source} ({type(e).__name__}: {msg}); "
            f"offline, download it once where the hub is reachable (HF_DATASETS_CACHE) or give a local copy (path: ...)"
        ) from None
    ds = from_records(list(examples), list(documents), long_documents, key)
    ds.notes["source"] = f"bright:{source}:{domain}" + (":long" if long_documents else "")
    return ds


def read_excluded(meta_json: str | os.PathLike) -> pl.DataFrame:
    """The excluded (qid, docid) pairs recorded in a dataset's ``meta.json`` (empty for other datasets)."""
    notes = json.loads(Path(meta_json).read_text())
    pairs = [(q, d) for q, ids in (notes.get("excluded") or {}).items() for d in ids]
    return pl.DataFrame(pairs, schema={"qid": pl.String, "docid": pl.String}, orient="row")


def drop_excluded(run: pl.DataFrame, excluded: pl.DataFrame) -> pl.DataFrame:
    """Remove excluded (qid, docid) pairs from a run (any frame with ``qid`` and ``docid`` columns)."""
    if excluded.height == 0:
        return run
    return run.join(excluded.select("qid", "docid"), on=["qid", "docid"], how="anti", maintain_order="left")
