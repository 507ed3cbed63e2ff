"""Atomic file writes and TREC run files.

Every output of the pipeline is written to a temporary file in the same folder and renamed into place, so a
job killed by the scheduler never leaves a partial file that looks finished. Files get the mode a plain ``open``
would give them (``0o666 & ~umask``; folders ``0o777 & ~umask``), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import polars as pl

from .errors import InputError


def umask() -> int:
    """The process umask (read without changing it where /proc allows; os.umask is not thread-safe)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(path: str | os.PathLike) -> None:
    """Give a file or folder made by ``tempfile`` the mode a plain ``open``/``mkdir`` would (umask respected)."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~umask())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success replace ``path`` by it, on failure remove it.

    Everything in the folder gets the umask's default mode (executables keep their x bits), whatever the library
    that wrote it chose."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    default_mode(tmp)
    try:
        yield tmp
        # libraries writing into the folder may make private files (safetensors writes 0600): normalise them
        mask = umask()
        for root, dirs, files in os.walk(tmp):
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
            for name in files:
                f = os.path.join(root, name)
                if not os.path.islink(f):
                    os.chmod(f, (0o777 if os.stat(f).st_mode & 0o100 else 0o666) & ~mask)
        if path.exists():  # a stale folder: move it aside, swap, then delete it
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "stale")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path`` (atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    default_mode(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(df: pl.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)


RUN_SCHEMA = {"qid": pl.String, "docid": pl.String, "score": pl.Float64}


def rank_run(run: pl.DataFrame, depth: int | None = None) -> pl.DataFrame:
    """Sort a run (qid, docid, score) into ranks: score descending, ties broken by docid ascending.

    Returns columns qid, docid, rank (1-based), score; ``depth`` keeps the top ``depth`` per query.
    """
    out = (
        run.select(pl.col("qid").cast(pl.String), pl.col("docid").cast(pl.String), pl.col("score").cast(pl.Float64))
        .sort(["qid", "score", "docid"], descending=[False, True, False])
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("qid").cast(pl.Int32))
    )
    if depth is not None:
        out = out.filter(pl.col("rank") <= depth)
    return out.select("qid", "docid", "rank", "score")


def write_trec(run: pl.DataFrame, path: str | os.PathLike, tag: str, depth: int | None = None) -> None:
    """Write a run as a TREC file ``qid Q0 docid rank score tag`` (deterministic order)."""
    ranked = rank_run(run, depth)
    lines = [
        f"{q} Q0 {d} {r} {s:.8g} {tag}"
        for q, d, r, s in zip(ranked["qid"], ranked["docid"], ranked["rank"], ranked["score"])
    ]
    write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_trec(path: str | os.PathLike) -> pl.DataFrame:
    """Read a TREC run into (qid, docid, rank, score); a malformed line raises InputError naming the file."""
    rows_q, rows_d, rows_r, rows_s = [], [], [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise InputError(f"{path}:{n}: expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}")
            rows_q.append(parts[0])
            rows_d.append(parts[2])
            rows_r.append(int(parts[3]))
            rows_s.append(float(parts[4]))
    return pl.DataFrame(
        {"qid": rows_q, "docid": rows_d, "rank": rows_r, "score": rows_s},
        schema={"qid": pl.String, "docid": pl.String, "rank": pl.Int32, "score": pl.Float64},
    )
