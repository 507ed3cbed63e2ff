"""Datasets: ir_datasets ids and local BEIR folders through one API, normalised to Parquet.

Parquet schemas (one folder per dataset, ``results/data/{dataset}/``):

- ``corpus.parquet``: ``docid`` (str), ``title`` (str), ``text`` (str); document ids unique, empty documents dropped
  with a logged warning.
- ``queries.parquet``: ``qid`` (str), ``text`` (str); only queries with at least one judgement are kept (others are
  logged and skipped: they cannot be evaluated).
- ``qrels.parquet``: ``qid`` (str), ``docid`` (str), ``relevance`` (int32); graded as in the source.
- ``meta.json``: source, counts, and what was skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import polars as pl

from .collection import CORPUS_SCHEMA, QRELS_SCHEMA, QUERIES_SCHEMA, Dataset
from ..errors import InputError
from ..io import atomic_path, iter_jsonl, read_jsonl, read_qrels_tsv, write_json, write_parquet

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------- readers
CHUNK_ROWS = 100_000  # documents converted to Arrow and written to Parquet at a time


class CorpusSpool:
    """Writes corpus rows to ``path`` in Parquet row groups of at most ``chunk_rows`` (a pyarrow ParquetWriter),
    so a corpus is converted without Python objects for all its documents; :meth:`frame` scans the result lazily."""

    def __init__(self, path: str | os.PathLike, chunk_rows: int = CHUNK_ROWS):
        self.path, self.chunk_rows = Path(path), chunk_rows
        self._rows: list[tuple[str, str, str]] = []
        self._writer = None

    def add(self, docid: str, title: str, text: str) -> None:
        self._rows.append((docid, title, text))
        if len(self._rows) >= self.chunk_rows:
            self.write(pl.DataFrame(self._rows, schema=CORPUS_SCHEMA, orient="row"))
            self._rows = []

    def write(self, batch: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = batch.select(CORPUS_SCHEMA.keys()).to_arrow()
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table)

    def frame(self) -> pl.LazyFrame:
        """Close the file and scan it (an empty corpus gives an empty frame)."""
        if self._rows or self._writer is None:
            self.write(pl.DataFrame(self._rows, schema=CORPUS_SCHEMA, orient="row"))
            self._rows = []
        self._writer.close()
        return pl.scan_parquet(self.path)


def _need(path: Path, key: str) -> Path:
    if not path.exists():
        raise InputError(f"{path}: file not found (dataset '{key}' needs corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    return path


def read_beir(path: str | os.PathLike, split: str, key: str = "?", spool: str | os.PathLike | None = None) -> Dataset:
    """Read a local BEIR folder: ``corpus.jsonl`` (_id, title, text), ``queries.jsonl`` (_id, text), ``qrels/<split>.tsv``.

    Nothing is changed silently: bad JSON, missing/empty/whitespace ids, non-integer grades and conflicting
    duplicate judgements raise InputError naming ``file:line`` (``attnrank.io.iter_jsonl`` / ``read_qrels_tsv``).
    With ``spool`` (a Parquet path) the corpus is converted there in chunks and returned as a lazy scan of it.
    """
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"datasets.{key}.path: folder '{root}' not found")
    batches = iter_jsonl(_need(root / "corpus.jsonl", key), "_id", ("text", "title"), CHUNK_ROWS)
    if spool is None:
        corpus = pl.concat(list(batches), rechunk=True).select(docid="_id", title="title", text="text")
    else:
        writer = CorpusSpool(spool)
        for b in batches:
            writer.write(b.select(docid="_id", title="title", text="text"))
        corpus = writer.frame()
    queries = read_jsonl(_need(root / "queries.jsonl", key), "_id", ("text",)).select(qid="_id", text="text")
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise InputError(f"{qrels_path}: qrels for split '{split}' not found (available: {have or 'none'})")
    qrels = read_qrels_tsv(qrels_path).select("qid", "docid", "relevance")
    return Dataset(corpus, queries, qrels, {"source": f"beir:{root}", "split": split})


def read_irds(dataset_id: str, key: str = "?", home: str | None = None, spool: str | os.PathLike | None = None) -> Dataset:
    """Read an ir_datasets id (downloads on first use; a one-line InputError when that is impossible)."""
    if home:
        os.environ["IR_DATASETS_HOME"] = str(home)
    import ir_datasets

    try:
        ds = ir_datasets.load(dataset_id)
    except KeyError:
        raise InputError(f"datasets.{key}.id: unknown ir_datasets id '{dataset_id}'") from None
    return from_irds(ds, dataset_id, key, spool)


def from_irds(ds, dataset_id: str, key: str = "?", spool: str | os.PathLike | None = None) -> Dataset:
    """A Dataset from an ir_datasets-shaped object (``docs_iter``/``queries_iter``/``qrels_iter`` yielding
    namedtuples). The documents are converted in chunks of :data:`CHUNK_ROWS` into Parquet at ``spool`` (a
    temporary file when None, read back into memory) and returned as a lazy scan; queries and qrels are small."""
    import tempfile

    tmp = None
    if spool is None:
        tmp = tempfile.TemporaryDirectory(prefix="attnrank-corpus-")
        spool = Path(tmp.name) / "corpus.parquet"
    try:
        writer = CorpusSpool(spool)
        for d in ds.docs_iter():
            writer.add(d.doc_id, getattr(d, "title", "") or "", _doc_text(d))
        corpus = writer.frame()
        queries = [(q.query_id, _query_text(q)) for q in ds.queries_iter()]
        qrels = [(r.query_id, r.doc_id, _grade(r.relevance, dataset_id, r.query_id, r.doc_id)) for r in ds.qrels_iter()]
        if tmp is not None:
            corpus = corpus.collect()
    except InputError:
        raise
    except Exception as e:
        raise InputError(
            f"datasets.{key}: cannot load ir_datasets '{dataset_id}' ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            f"offline, place its files under IR_DATASETS_HOME or give a local BEIR folder (source: beir, path: ...)"
        ) from None
    finally:
        if tmp is not None:
            tmp.cleanup()
    return Dataset(
        corpus,
        pl.DataFrame(queries, schema=QUERIES_SCHEMA, orient="row"),
        pl.DataFrame(qrels, schema=QRELS_SCHEMA, orient="row"),
        {"source": f"irds:{dataset_id}"},
    )


def _grade(value, dataset_id: str, qid: str, docid: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise InputError(f"ir_datasets '{dataset_id}': grade {value!r} of query {qid!r} document {docid!r} is not an integer")
    return int(value)


def _doc_text(d) -> str:
    text = getattr(d, "text", None)
    if text is None and hasattr(d, "default_text"):
        text = d.default_text()
    return text or ""


def _query_text(q) -> str:
    text = getattr(q, "text", None)
    if text is None and hasattr(q, "default_text"):
        text = q.default_text()
    return text or ""


# ---------------------------------------------------------------------------------------------------- checks
def _check_ids(df: pl.DataFrame | pl.LazyFrame, col: str, key: str, what: str) -> None:
    """Missing, empty or whitespace-holding ids are errors (file:line is named by the readers that have lines)."""
    lf = df.lazy()
    empty = lf.filter(pl.col(col).is_null() | (pl.col(col) == "")).select(pl.len()).collect().item()
    if empty:
        raise InputError(f"dataset '{key}': {empty} {what}(s) missing or empty")
    ws = lf.filter(pl.col(col).str.contains(r"\s")).select(col).collect()[col]
    if ws.len():
        raise InputError(f"dataset '{key}': {what} {ws[0]!r} contains whitespace ({ws.len()} such id(s))")


def clean(ds: Dataset, key: str, max_queries: int | None = None) -> Dataset:
    """Validate and normalise: duplicate doc ids, missing/empty/whitespace ids and conflicting duplicate
    judgements are errors; identical duplicate judgements are collapsed, empty documents, empty or unjudged
    queries and judgements of unknown queries dropped, each with a logged warning (counted in ``notes``).

    A lazy corpus (a scan of a spooled Parquet file) stays lazy: only its id column is ever collected."""
    notes = dict(ds.notes)
    lazy = isinstance(ds.corpus, pl.LazyFrame)
    for df, col, what in ((ds.corpus, "docid", "document id"), (ds.queries, "qid", "query id"),
                          (ds.qrels, "qid", "qrels query id"), (ds.qrels, "docid", "qrels document id")):
        _check_ids(df, col, key, what)
    dup = ds.corpus.lazy().group_by("docid").len().filter(pl.col("len") > 1).collect()
    if dup.height:
        ex = sorted(dup["docid"].to_list())[:3]
        raise InputError(f"dataset '{key}': duplicate document id(s) {ex} ({dup.height} ids repeated) in the corpus")
    dupq = ds.queries.group_by("qid").len().filter(pl.col("len") > 1)
    if dupq.height:
        raise InputError(f"dataset '{key}': duplicate query id(s) {sorted(dupq['qid'].to_list())[:3]}")

    corpus = ds.corpus.lazy().with_columns(pl.col("title").fill_null(""), pl.col("text").fill_null(""))
    is_empty = (pl.col("title").str.strip_chars() == "") & (pl.col("text").str.strip_chars() == "")
    empty = corpus.filter(is_empty).select("docid").collect(engine="streaming")  # reads title and text chunk by chunk
    if empty.height:
        log.warning("dataset '%s': dropping %d empty document(s), e.g. %s", key, empty.height, empty["docid"][:3].to_list())
        corpus = corpus.filter(~is_empty)
    notes["empty_documents_dropped"] = empty["docid"].to_list()

    conflict = ds.qrels.group_by("qid", "docid").agg(pl.col("relevance").unique().sort()).filter(pl.col("relevance").list.len() > 1)
    if conflict.height:
        q, d, g = conflict.sort("qid", "docid").row(0)
        raise InputError(
            f"dataset '{key}': query {q!r} document {d!r} has conflicting judgements {g} ({conflict.height} pair(s) conflict)"
        )
    qrels = ds.qrels.unique(["qid", "docid"], keep="first", maintain_order=True)
    if qrels.height < ds.qrels.height:
        log.warning("dataset '%s': collapsing %d identical duplicate judgement(s)", key, ds.qrels.height - qrels.height)
    notes["duplicate_judgements_collapsed"] = ds.qrels.height - qrels.height
    queries = ds.queries
    empty_q = queries.filter(pl.col("text").str.strip_chars() == "")
    if empty_q.height:
        log.warning("dataset '%s': dropping %d empty quer(y/ies): %s", key, empty_q.height, empty_q["qid"][:5].to_list())
        queries = queries.filter(~pl.col("qid").is_in(empty_q["qid"].implode()))
    notes["empty_queries_dropped"] = empty_q["qid"].to_list()

    judged = qrels.filter(pl.col("relevance") > 0)["qid"].unique()
    unjudged = queries.filter(~pl.col("qid").is_in(judged.implode()))
    if unjudged.height:
        log.warning(
            "dataset '%s': skipping %d quer(y/ies) without a positive judgement (cannot be evaluated), e.g. %s",
            key, unjudged.height, unjudged["qid"][:5].to_list(),
        )
        queries = queries.filter(pl.col("qid").is_in(judged.implode()))
    notes["queries_without_qrels_skipped"] = unjudged["qid"].to_list()

    if max_queries is not None:
        queries = queries.sort("qid").head(max_queries)
    qrels = qrels.filter(pl.col("qid").is_in(queries["qid"].implode()))
    docids = corpus.select("docid").collect()["docid"]
    missing_docs = qrels.filter(~pl.col("docid").is_in(docids.implode()))
    if missing_docs.height:
        log.warning("dataset '%s': %d judgement(s) name documents not in the corpus (kept; unretrievable)", key, missing_docs.height)
    notes["judgements_of_unknown_documents"] = missing_docs.height
    if queries.height == 0:
        raise InputError(f"dataset '{key}': no query with a positive judgement is left; check the qrels split")
    notes.update(n_docs=docids.len(), n_queries=queries.height, n_qrels=qrels.height)
    corpus = corpus.select(CORPUS_SCHEMA.keys())
    return Dataset(corpus if lazy else corpus.collect(), queries.select(QUERIES_SCHEMA.keys()), qrels, notes)


def load(spec: dict, key: str, ir_datasets_home: str | None = None, spool: str | os.PathLike | None = None) -> Dataset:
    """Load the dataset described by one ``datasets.<key>`` config entry and validate it. With ``spool`` (a
    Parquet path) BEIR and ir_datasets corpora are converted there in chunks and the corpus is a lazy scan."""
    source = spec.get("source")
    if source == "beir":
        ds = read_beir(spec["path"], spec.get("split", "test"), key, spool)
    elif source == "irds":
        ds = read_irds(spec["id"], key, ir_datasets_home, spool)
    elif source == "synthetic":
        from .synthetic import make_collection

        folder = Path(spec.get("path", f".cache/synthetic/{key}"))
        make_collection(folder, n_docs=spec.get("n_docs", 240), n_queries=spec.get("n_queries", 24), seed=spec.get("seed", 13))
        ds = read_beir(folder, spec.get("split", "test"), key, spool)
    elif source == "bright":
        from .bright import read_bright

        ds = read_bright(spec["domain"], key, spec.get("long_documents", False), spec.get("path"))
    else:
        raise InputError(f"datasets.{key}.source: must be one of beir, irds, synthetic, bright (got {source!r})")
    return clean(ds, key, spec.get("max_queries"))


def save(ds: Dataset, out_dir: str | os.PathLike) -> None:
    """Write the three frames and ``meta.json``; a lazy corpus is streamed to its file (polars' streaming sink)."""
    out = Path(out_dir)
    if isinstance(ds.corpus, pl.LazyFrame):
        with atomic_path(out / "corpus.parquet") as tmp:
            ds.corpus.sink_parquet(tmp)
    else:
        write_parquet(ds.corpus, out / "corpus.parquet")
    write_parquet(ds.queries, out / "queries.parquet")
    write_parquet(ds.qrels, out / "qrels.parquet")
    write_json(out / "meta.json", ds.notes)


def read(folder: str | os.PathLike, lazy: bool = False) -> Dataset:
    """Read a normalised dataset folder written by :func:`save` (``lazy``: the corpus as a scan, not in memory)."""
    f = Path(folder)
    corpus = pl.scan_parquet(f / "corpus.parquet") if lazy else pl.read_parquet(f / "corpus.parquet")
    return Dataset(corpus, pl.read_parquet(f / "queries.parquet"), pl.read_parquet(f / "qrels.parquet"))


def doc_text(title: str, text: str) -> str:
    """The text a retriever or re-ranker sees for a document: title and body."""
    title, text = (title or "").strip(), (text or "").strip()
    return f"{title}\n{text}" if title and text else (title or text)


def prepare(spec: dict, key: str, out_dir: str | os.PathLike, ir_datasets_home: str | None = None) -> dict:
    """The ``dataset`` job: load one ``datasets.<key>`` entry (a synthetic collection is generated under
    ``out_dir/source``), validate it and write it to ``out_dir``. Returns its notes (counts, skips)."""
    import tempfile

    spec = dict(spec)
    if spec["source"] == "synthetic":
        spec.setdefault("path", str(Path(out_dir) / "source"))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spool.", dir=out_dir) as tmp:  # same file system as the outputs
        ds = load(spec, key, ir_datasets_home, spool=Path(tmp) / "corpus.parquet")
        save(ds, out_dir)
    return ds.notes
