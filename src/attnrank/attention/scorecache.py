"""On-disk attention score cache for one (model, dataset, retriever).

Layout of ``out_dir`` (format version 1; see docs/attention.md for sizes)::

    shard-00000.npz   queries 0 .. shard_size-1 (first-appearance order in the candidates), arrays:
        qids [n] str, k [n] int32, docids [n, kmax] str ('' pad),
        raw, na [n, L, H, kmax] float32 (NaN pad), masked_prefix [n, L, kmax] float32 (NaN pad),
        positions, n_tokens [n, kmax] int32 (-1 pad), config_hash [] str, code_hash [] str,
        masked_head [n, L, H, kmax], masked_layer [n, L, kmax] float32 (NaN pad),
        tokens [n, L, H, Tmax] (only with engine.token_scores; float32 or float16, NaN pad): calibrated per-head
        token scores of the documents, concatenated in candidate order (n_tokens gives each document's share)
    shard-00001.npz   ...
    manifest.json     written last: format, config_hash, code_hash, model, n_layers, n_heads, layers (asked), prompt, shards,
                      n_queries

Every shard is written atomically. A rerun keeps shards whose config hash and query ids match and computes the rest
(a job killed mid-way resumes); the manifest marks the cache complete. The config hash includes the code hash
(:func:`engine_code_hash`: this module and every package module it imports, the engine and model loading among
them), so shards written by other code are deleted and recomputed, never kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import polars as pl

from ..retrieval.candidates import CANDIDATE_COLUMNS
from ..codehash import PACKAGE_DIR, code_hash
from ..errors import InputError
from ..io import atomic_path, write_json
from ..progress import Progress
from .prompts import PromptConfig
from .scores import QueryScores

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.npz"


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """Hash of a prepared model folder: its config, marker and the names/sizes of its weight files."""
    d = Path(model_dir)
    h = hashlib.sha256()
    for name in ("config.json", "attnrank_model.json", "tokenizer.json", "chat_template.jinja"):
        p = d / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes())
    for p in sorted(d.glob("*.safetensors")):
        h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:16]


def candidates_fingerprint(candidates: pl.DataFrame) -> str:
    h = hashlib.sha256()
    for col in CANDIDATE_COLUMNS:
        h.update(col.encode() + b"\0")
        h.update("\x1f".join(map(str, candidates[col].to_list())).encode())
    return h.hexdigest()[:16]


def engine_code_hash(package_dir: str | os.PathLike = PACKAGE_DIR) -> str:
    """Hash of the code that computes the scores: this module and every package module it imports, transitively
    (engine, prompts, models, ...); comments and docstrings do not count."""
    return code_hash(modules=[__name__], package_dir=package_dir)


def config_hash(model_dir, candidates: pl.DataFrame, prompt_cfg: dict, layers: int | None, shard_size: int, code: str = "",
                token_scores: bool = False, token_dtype: str = "float32") -> str:
    blob = json.dumps(
        {
            "token_scores": [bool(token_scores), token_dtype if token_scores else None],
            "format": FORMAT_VERSION,
            "code": code,
            "model": model_fingerprint(model_dir),
            "candidates": candidates_fingerprint(candidates),
            "prompt": prompt_cfg,
            "layers": layers,
            "shard_size": shard_size,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------- write
def _pack(scores: list[QueryScores], chash: str, code: str) -> dict[str, np.ndarray]:
    n = len(scores)
    kmax = max((len(s.docids) for s in scores), default=0)
    l, h = scores[0].raw.shape[:2]
    out = {
        "qids": np.array([s.qid for s in scores], dtype=str),
        "k": np.array([len(s.docids) for s in scores], dtype=np.int32),
        "docids": np.full((n, kmax), "", dtype=object),
        "raw": np.full((n, l, h, kmax), np.nan, dtype=np.float32),
        "na": np.full((n, l, h, kmax), np.nan, dtype=np.float32),
        "masked_prefix": np.full((n, l, kmax), np.nan, dtype=np.float32),
        "positions": np.full((n, kmax), -1, dtype=np.int32),
        "n_tokens": np.full((n, kmax), -1, dtype=np.int32),
        "config_hash": np.array(chash),
        "code_hash": np.array(code),
        "masked_head": np.full((n, l, h, kmax), np.nan, dtype=np.float32),
        "masked_layer": np.full((n, l, kmax), np.nan, dtype=np.float32),
    }
    if scores[0].tokens is not None:
        tmax = max(s.tokens.shape[-1] for s in scores)
        out["tokens"] = np.full((n, l, h, tmax), np.nan, dtype=scores[0].tokens.dtype)
    for i, s in enumerate(scores):
        k = len(s.docids)
        out["docids"][i, :k] = s.docids
        out["raw"][i, :, :, :k] = s.raw
        out["na"][i, :, :, :k] = s.na
        out["masked_prefix"][i, :, :k] = s.masked_prefix
        out["positions"][i, :k] = s.positions
        out["n_tokens"][i, :k] = s.n_tokens
        out["masked_head"][i, :, :, :k] = s.masked_head
        out["masked_layer"][i, :, :k] = s.masked_layer
        if "tokens" in out:
            out["tokens"][i, :, :, : s.tokens.shape[-1]] = s.tokens
    out["docids"] = out["docids"].astype(str) if kmax else np.zeros((n, 0), dtype="<U1")
    return out


def _write_shard(path: Path, scores: list[QueryScores], chash: str, code: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **_pack(scores, chash, code))


def _shard_state(path: Path, chash: str, code: str, qids: list[str]) -> str:
    """'ok' (reusable), 'missing', 'code' (written by other code), 'config' (other config or queries), 'unreadable'."""
    if not path.is_file():
        return "missing"
    try:
        with np.load(path, allow_pickle=False) as z:
            if "code_hash" not in z.files or str(z["code_hash"]) != code:
                return "code"
            return "ok" if str(z["config_hash"]) == chash and z["qids"].tolist() == qids else "config"
    except (OSError, ValueError, KeyError):
        return "unreadable"


def compute_cache(
    model_dir: str | os.PathLike,
    candidates: pl.DataFrame,
    out_dir: str | os.PathLike,
    prompt_cfg: dict | None = None,
    layers: int | None = None,
    shard_size: int = 100,
    batch_size: int | None = None,
    device: str | None = None,
    dtype=None,
    on_shard: Callable[[int, Path], None] | None = None,
    progress: bool = True,
    token_scores: bool = False,
    token_dtype: str = "float32",
) -> Path:
    """Compute (or finish) the score cache of ``candidates`` (qid, query, docid, rank, score, text) in ``out_dir``.

    Resumable: shards already written with the same config hash are kept. ``on_shard(i, path)`` is called after
    each shard is written (tests use it to simulate a kill). ``token_scores`` keeps the per-head token scores
    (in ``token_dtype``) for masked calibration over head subsets and layer windows. Returns ``out_dir``.
    """
    from .engine import Scorer, iter_candidates  # lazy: reading a cache needs no torch
    from ..models import load_model

    missing = [c for c in CANDIDATE_COLUMNS if c not in candidates.columns]
    if missing:
        raise InputError(f"candidates: missing column(s) {missing} (need {list(CANDIDATE_COLUMNS)})")
    if shard_size < 1:
        raise InputError(f"attention.shard_size: must be >= 1, got {shard_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = PromptConfig.from_dict(prompt_cfg).to_dict()
    if token_dtype not in ("float32", "float16"):
        raise InputError(f"engine.token_dtype: must be float32 or float16 (got {token_dtype!r})")
    code = engine_code_hash()
    chash = config_hash(model_dir, candidates, cfg, layers, shard_size, code, token_scores, token_dtype)
    man_path = out / MANIFEST
    if man_path.is_file():
        man = json.loads(man_path.read_text())
        if man.get("config_hash") == chash and all((out / s).is_file() for s in man.get("shards", [])):
            log.info("score cache %s is complete", out)
            return out
        man_path.unlink()  # stale: the cache is incomplete until a new manifest is written
    items = list(iter_candidates(candidates))
    chunks = [items[i : i + shard_size] for i in range(0, len(items), shard_size)]
    names = [shard_name(i) for i in range(len(chunks))]
    todo = _shards_to_compute(out, chunks, names, chash, code)
    model, tokenizer = load_model(model_dir, device=device, dtype=dtype)
    scorer = Scorer(model, tokenizer, cfg, layers=layers, batch_size=batch_size, token_scores=token_scores,
                    token_dtype=token_dtype)
    bar = Progress(sum(len(chunks[i]) for i in todo), f"attention {Path(model_dir).name}", unit="q", log=log, enabled=progress)
    for i in todo:
        got = {}
        for qs in scorer.iter_score(chunks[i], ordered=False):  # length order: progress counts queries done
            got[qs.qid] = qs
            bar.update(1)
        _write_shard(out / names[i], [got[q.qid] for q in chunks[i]], chash, code)
        if on_shard is not None:
            on_shard(i, out / names[i])
    bar.close()
    write_json(man_path, _manifest(chash, code, model_dir, scorer, model, layers, cfg, shard_size, token_scores,
                                   token_dtype, names, len(items)))
    return out


def _shards_to_compute(out: Path, chunks: list, names: list[str], chash: str, code: str) -> list[int]:
    """Indices of the shards to (re)compute: missing ones and those of other code, config or query set, or
    unreadable (deleted, with the reason logged); shards beyond the new count are deleted."""
    for stale in out.glob("shard-*.npz"):
        if stale.name not in names:
            stale.unlink()
    states = [_shard_state(out / names[i], chash, code, [q.qid for q in ch]) for i, ch in enumerate(chunks)]
    todo = [i for i, st in enumerate(states) if st != "ok"]
    for reason, why in (("code", f"written by other code (engine code hash now {code})"), ("config", "of another config or query set"), ("unreadable", "unreadable")):
        stale = [i for i, st in enumerate(states) if st == reason]
        for i in stale:
            (out / names[i]).unlink()
        if stale:
            log.info("score cache %s: %d of %d shards discarded: %s", out, len(stale), len(chunks), why)
    if len(todo) < len(chunks):
        log.info("score cache %s: %d of %d shards kept", out, len(chunks) - len(todo), len(chunks))
    return todo


def _manifest(chash, code, model_dir, scorer, model, layers, cfg, shard_size, token_scores, token_dtype, names,
              n_queries) -> dict:
    return {
        "format": FORMAT_VERSION,
        "config_hash": chash,
        "code_hash": code,
        "model": str(model_dir),
        "model_fingerprint": model_fingerprint(model_dir),
        "n_layers": scorer.n_layers,
        "n_heads": scorer.n_heads,
        "n_layers_model": model.config.num_hidden_layers,
        "layers": layers,
        "prompt": cfg,
        "shard_size": shard_size,
        "token_scores": bool(token_scores),
        "token_dtype": token_dtype if token_scores else None,
        "shards": names,
        "n_queries": n_queries,
    }


def attention_pass(model_dir: str, candidates_path: str, manifest_path: str, prompt_cfg: dict, layers: int | None,
                   shard_size: int, batch_size: int | None, dtype: str, token_scores: bool, token_dtype: str,
                   on_shard: Callable[[int, Path], None] | None = None) -> dict:
    """The ``attention_scores`` / ``detection_scores`` job: the score cache of a candidates file beside
    ``manifest_path`` (``dtype``: a torch dtype name or ``auto``; ``on_shard``: see :func:`compute_cache`).
    Returns counts."""
    torch_dtype = None
    if dtype != "auto":
        import torch

        torch_dtype = getattr(torch, dtype)
    cache = compute_cache(model_dir, pl.read_parquet(candidates_path), Path(manifest_path).parent, prompt_cfg=dict(prompt_cfg),
                          layers=layers, shard_size=shard_size, batch_size=batch_size, dtype=torch_dtype,
                          on_shard=on_shard, token_scores=token_scores, token_dtype=token_dtype)
    man = read_manifest(cache)
    return {"queries": man["n_queries"], "shards": len(man["shards"]), "layers": man["n_layers"], "heads": man["n_heads"]}


# ---------------------------------------------------------------------------------------------------- read
def read_manifest(cache_dir: str | os.PathLike) -> dict:
    p = Path(cache_dir) / MANIFEST
    if not p.is_file():
        raise InputError(f"{p}: score cache is missing or incomplete (no manifest)")
    return json.loads(p.read_text())


def iter_scores(cache_dir: str | os.PathLike) -> Iterator[QueryScores]:
    """Yield the cached ``QueryScores`` in query order (one shard in memory at a time)."""
    cache = Path(cache_dir)
    for name in read_manifest(cache)["shards"]:
        with np.load(cache / name, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("qids", "k", "docids", "raw", "na", "masked_prefix", "positions", "n_tokens",
                                        "masked_head", "masked_layer")}
            tokens = z["tokens"] if "tokens" in z.files else None
        for i, qid in enumerate(arrays["qids"].tolist()):
            k = int(arrays["k"][i])
            n_tok = int(arrays["n_tokens"][i, :k].sum())
            yield QueryScores(
                qid=qid,
                docids=arrays["docids"][i, :k].tolist(),
                raw=np.ascontiguousarray(arrays["raw"][i, :, :, :k]),
                na=np.ascontiguousarray(arrays["na"][i, :, :, :k]),
                masked_prefix=np.ascontiguousarray(arrays["masked_prefix"][i, :, :k]),
                positions=arrays["positions"][i, :k].copy(),
                n_tokens=arrays["n_tokens"][i, :k].copy(),
                masked_head=np.ascontiguousarray(arrays["masked_head"][i, :, :, :k]),
                masked_layer=np.ascontiguousarray(arrays["masked_layer"][i, :, :k]),
                tokens=None if tokens is None else np.ascontiguousarray(tokens[i, :, :, :n_tok]),
            )


def load_scores(cache_dir: str | os.PathLike) -> list[QueryScores]:
    return list(iter_scores(cache_dir))
