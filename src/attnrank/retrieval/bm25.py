"""BM25 first stage: a Lucene index built in-process with pyserini's ``LuceneIndexer``, searched with Anserini's
``SimpleSearcher`` (the object pyserini's ``LuceneSearcher`` wraps; :class:`_Searcher`).

No prebuilt indexes or named topics (they download). Documents are indexed as ``doc_text(title, text)`` with
Anserini's default analyzer (Porter stemming, English stopwords); queries go through the same analyzer as a bag of
words, so Lucene query syntax in a query (``AND``, ``"``, ``:``, ``*``) is plain text and cannot break parsing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import polars as pl

from ..data.sources import doc_text
from ..errors import InputError
from ..io import RUN_SCHEMA, atomic_dir, rank_run
from .java import ensure_java
from ..progress import Progress

log = logging.getLogger(__name__)

MARKER = "attnrank-index.json"
_BATCH = 10_000
MAX_CLAUSES = 1 << 16


def corpus_fingerprint(corpus) -> str:
    """SHA-256 over (docid, title, text) in corpus order: equal fingerprints mean the same documents. ``corpus``
    is a frame or an iterable of frames (chunks in order; the digest is the same however it is cut)."""
    h = hashlib.sha256()
    for frame in ([corpus] if isinstance(corpus, pl.DataFrame) else corpus):
        for chunk in frame.select("docid", "title", "text").iter_slices(50_000):
            for docid, title, text in chunk.iter_rows():
                for part in (docid, title or "", text or ""):
                    b = part.encode("utf-8", "surrogatepass")
                    h.update(len(b).to_bytes(8, "little"))
                    h.update(b)
    return h.hexdigest()


def _complete(index_dir: Path, fingerprint: str) -> bool:
    try:
        meta = json.loads((index_dir / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("fingerprint") == fingerprint


def build_index(corpus: pl.DataFrame, index_dir: str | os.PathLike, threads: int = 1) -> Path:
    """Build a Lucene index of ``corpus`` (docid, title, text) at ``index_dir``; return its path.

    Written into a temporary folder beside ``index_dir`` and renamed into place, with a marker file holding the
    corpus fingerprint; an existing index with the same fingerprint is reused, a different one replaced.
    """
    index_dir = Path(index_dir)
    for col in ("docid", "title", "text"):
        if col not in corpus.columns:
            raise InputError(f"corpus: missing column '{col}' (expected docid, title, text)")
    fingerprint = corpus_fingerprint(corpus)
    if _complete(index_dir, fingerprint):
        log.info("BM25 index %s is complete; reusing it", index_dir)
        return index_dir
    ensure_java()
    from pyserini.index.lucene import LuceneIndexer

    t0 = time.perf_counter()
    with atomic_dir(index_dir) as tmp:
        indexer = LuceneIndexer(str(tmp), threads=max(1, int(threads)))
        added = 0
        with Progress(corpus.height, "bm25 index", unit="doc", log=log) as bar:
            for chunk in corpus.select("docid", "title", "text").iter_slices(_BATCH):
                docs = [
                    json.dumps({"id": d, "contents": doc_text(t, x)}, ensure_ascii=False)
                    for d, t, x in chunk.iter_rows()
                ]
                added += int(indexer.object.addRawDocuments(docs))
                bar.update(len(docs))
        indexer.close()
        if added != corpus.height:
            log.warning("bm25: Lucene accepted %d of %d documents (the others are empty after parsing)", added, corpus.height)
        meta = {"fingerprint": fingerprint, "n_docs": corpus.height, "seconds": round(time.perf_counter() - t0, 3)}
        (tmp / MARKER).write_text(json.dumps(meta, indent=2) + "\n")
    log.info("BM25 index of %d docs written to %s in %.1fs", corpus.height, index_dir, meta["seconds"])
    return index_dir


def search(
    index_dir: str | os.PathLike,
    queries: pl.DataFrame,
    k: int,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int = 1,
    name: str = "bm25",
) -> pl.DataFrame:
    """BM25 top-``k`` per query: columns qid, docid, score (ranked: score desc, docid asc).

    Score ties at the cut-off are resolved by doc id: the searcher is asked for more hits until the ``k``-th score
    is not tied with the last hit fetched, so the result does not depend on Lucene's internal document order.
    Queries whose analysed text is empty (only stopwords or punctuation) get no hits.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise InputError(f"retrievers.{name}.k: must be a positive integer (got {k!r})")
    index_dir = Path(index_dir)
    if not (index_dir / MARKER).is_file():
        raise InputError(f"{index_dir}: not a complete BM25 index (build it with attnrank.retrieval.bm25.build_index)")
    ensure_java()
    from pyserini.pyclass import autoclass

    # long queries (BRIGHT, ArguAna) have more than Lucene's default 1024 distinct terms
    autoclass("org.apache.lucene.search.IndexSearcher").setMaxClauseCount(MAX_CLAUSES)
    searcher = _Searcher(str(index_dir))
    searcher.set_bm25(float(k1), float(b))
    n_docs = searcher.num_docs
    qids = [str(q) for q in queries["qid"].to_list()]
    texts = [_clean_query(t) for t in queries["text"].to_list()]
    rows_q: list[str] = []
    rows_d: list[str] = []
    rows_s: list[float] = []
    pending = list(range(len(qids)))
    depth = min(k + max(10, k // 10), n_docs) if n_docs else k
    t0 = time.perf_counter()
    while pending:
        hits = _batch(searcher, [texts[i] for i in pending], [qids[i] for i in pending], depth, threads)
        again = []
        for i in pending:
            got = hits.get(qids[i], [])
            scores = [float(h.score) for h in got]
            # the k-th score is tied with the last fetched hit and more documents exist: fetch deeper
            if len(got) == depth and depth < n_docs and len(got) > k and scores[k - 1] == scores[-1]:
                again.append(i)
                continue
            rows_q.extend([qids[i]] * len(got))
            rows_d.extend(h.docid for h in got)
            rows_s.extend(scores)
        pending = again
        depth = min(depth * 2, n_docs)
    run = pl.DataFrame({"qid": rows_q, "docid": rows_d, "score": rows_s}, schema=RUN_SCHEMA)
    ranked = rank_run(run, depth=k)
    n_empty = len(set(qids) - set(ranked["qid"].unique().to_list()))
    if n_empty:
        log.warning("bm25: %d of %d queries retrieved nothing (empty after analysis)", n_empty, len(qids))
    log.info("bm25: %d queries searched in %.1fs (k=%d, k1=%g, b=%g)", len(qids), time.perf_counter() - t0, k, k1, b)
    return ranked.select("qid", "docid", "score")


class _Searcher:
    """Anserini's ``SimpleSearcher`` as pyserini's ``LuceneSearcher`` calls it (``pyserini/search/lucene/_searcher.py``:
    the same Java object and methods) for BM25 search. Not ``LuceneSearcher`` itself: importing
    ``pyserini.search.lucene`` imports pyserini's neural encoders (torch, transformers, scikit-learn, openai),
    about 10 s of every retrieval job; ``pyserini.pyclass`` only sets up the JVM (about 1 s)."""

    def __init__(self, index_dir: str):
        from pyserini.pyclass import autoclass

        self._list = autoclass("java.util.ArrayList")
        self.object = autoclass("io.anserini.search.SimpleSearcher")(index_dir)
        self.num_docs = self.object.get_total_num_docs()

    def set_bm25(self, k1: float, b: float) -> None:
        self.object.set_bm25(float(k1), float(b))

    def search(self, q: str, k: int = 10):
        return self.object.search(q, int(k))

    def batch_search(self, queries: list[str], qids: list[str], k: int = 10, threads: int = 1) -> dict:
        """{qid: [ScoredDoc (docid, score)]} of every query, searched on ``threads`` Java threads."""
        qs, ids = self._list(), self._list()
        for q, i in zip(queries, qids):
            qs.add(q)
            ids.add(i)
        results = self.object.batch_search(qs, ids, int(k), int(threads))
        return {r.getKey(): r.getValue() for r in results.entrySet().toArray()}


def _batch(searcher, texts: list[str], qids: list[str], depth: int, threads: int) -> dict:
    """``batch_search``; if one query fails inside Lucene the batch fails, so redo it one by one and skip the bad ones."""
    try:
        return searcher.batch_search(texts, qids, k=depth, threads=max(1, int(threads)))
    except Exception as e:  # jnius.JavaException
        log.warning("bm25: batch search failed (%s); searching query by query", str(e).splitlines()[0][:200])
    out = {}
    for qid, text in zip(qids, texts):
        try:
            out[qid] = searcher.search(text, k=depth)
        except Exception as e:
            log.warning("bm25: skipping query %s: %s", qid, str(e).splitlines()[0][:200])
    return out


def _clean_query(text: str | None) -> str:
    """Strip control characters (the analyzer treats the rest as plain text)."""
    return "".join(c if c.isprintable() else " " for c in (text or "")).strip()
