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
import re
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
            try:
                r, s = int(parts[3]), float(parts[4])
            except ValueError:
                raise InputError(f"{path}:{n}: rank {parts[3]!r} / score {parts[4]!r} are not numbers") from None
            rows_q.append(parts[0])
            rows_d.append(parts[2])
            rows_r.append(r)
            rows_s.append(s)
    return pl.DataFrame(
        {"qid": rows_q, "docid": rows_d, "rank": rows_r, "score": rows_s},
        schema={"qid": pl.String, "docid": pl.String, "rank": pl.Int32, "score": pl.Float64},
    )


# ---------------------------------------------------------------------------------------------------- input readers
_WS = re.compile(r"\s")


def check_id(value, where: str, what: str) -> str:
    """An identifier as a string; InputError naming ``where`` (``file:line``) when it is missing, empty, not a
    string or integer, or holds whitespace (TREC files separate columns by whitespace)."""
    if value is None or (isinstance(value, str) and value == ""):
        raise InputError(f"{where}: {what} is missing or empty")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(f"{where}: {what} must be a string or an integer, got {value!r}")
    value = str(value)
    if _WS.search(value):
        raise InputError(f"{where}: {what} {value!r} contains whitespace")
    return value


def iter_jsonl(path: str | os.PathLike, id_field: str, fields: tuple[str, ...], batch_rows: int = 100_000) -> Iterator[pl.DataFrame]:
    """Read a JSON-lines file in frames of at most ``batch_rows`` rows of string columns ``id_field`` + ``fields``
    (missing fields: empty string), so only one batch of Python strings exists at a time.

    Every problem names ``file:line``: JSON syntax errors, a line that is not an object, a missing field
    ``id_field`` or ``fields[0]``, a missing/empty/whitespace-holding id, a non-string text. Blank lines are skipped.
    An empty file gives one empty frame.
    """
    schema = {k: pl.String for k in (id_field, *fields)}
    cols: dict[str, list[str]] = {k: [] for k in schema}
    emitted = False
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                rec = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(rec, dict):
                raise InputError(f"{where}: expected a JSON object, got {type(rec).__name__}")
            cols[id_field].append(check_id(rec.get(id_field), where, f"'{id_field}'"))
            for i, k in enumerate(fields):
                if k not in rec and i == 0:
                    raise InputError(f"{where}: missing field '{k}'")
                v = rec.get(k)
                if v is not None and not isinstance(v, str):
                    raise InputError(f"{where}: field '{k}' must be a string, got {type(v).__name__}")
                cols[k].append(v or "")
            if len(cols[id_field]) >= batch_rows:
                yield pl.DataFrame(cols, schema=schema)
                emitted = True
                cols = {k: [] for k in schema}
    if cols[id_field] or not emitted:
        yield pl.DataFrame(cols, schema=schema)


def read_jsonl(path: str | os.PathLike, id_field: str, fields: tuple[str, ...]) -> pl.DataFrame:
    """The whole JSON-lines file as one frame (see :func:`iter_jsonl` for the checks)."""
    return pl.concat(list(iter_jsonl(path, id_field, fields)), rechunk=True)


_INT = re.compile(r"^[+-]?[0-9]+(\.0*)?$")


def read_qrels_tsv(path: str | os.PathLike) -> pl.DataFrame:
    """Read a BEIR qrels file (header ``query-id corpus-id score``, tab-separated) into (qid, docid, relevance,
    line). Every problem names ``file:line``: wrong column count, missing/empty/whitespace ids, a grade that is
    not an integer (``0.5``; ``1.0`` reads as 1), and a judgement that contradicts an earlier one of the same
    query and document. Identical repeats are kept (``attnrank.data.sources.clean`` collapses them, counted)."""
    qids: list[str] = []
    docids: list[str] = []
    rels: list[int] = []
    lines: list[int] = []
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    header = ["query-id", "corpus-id", "score"]
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            row = line.rstrip("\r\n")
            if not row.strip():
                continue
            parts = row.split("\t")
            where = f"{path}:{n}"
            if n == 1:
                if [p.strip() for p in parts] != header:
                    raise InputError(f"{where}: header must be '{chr(9).join(header)}' (tab-separated), got {row!r}")
                continue
            if len(parts) != 3:
                raise InputError(f"{where}: expected 3 tab-separated columns 'query-id corpus-id score', got {len(parts)}")
            q = check_id(parts[0], where, "query id")
            d = check_id(parts[1], where, "document id")
            g = parts[2].strip()
            if not _INT.match(g):
                raise InputError(f"{where}: grade {g!r} of query {q!r} document {d!r} is not an integer")
            r = int(float(g))
            if (q, d) in seen and seen[(q, d)][1] != r:
                first, r0 = seen[(q, d)]
                raise InputError(f"{where}: query {q!r} document {d!r} judged {r} here but {r0} on line {first} (conflicting duplicate)")
            seen.setdefault((q, d), (n, r))
            qids.append(q)
            docids.append(d)
            rels.append(r)
            lines.append(n)
    return pl.DataFrame({"qid": qids, "docid": docids, "relevance": rels, "line": lines},
                        schema={"qid": pl.String, "docid": pl.String, "relevance": pl.Int32, "line": pl.Int64})


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` atomically to ``path`` (format from its suffix) and, for a PNG, a PDF beside it (papers)."""
    path = Path(path)
    targets = [path] + ([path.with_suffix(".pdf")] if path.suffix.lower() == ".png" else [])
    for p in targets:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip(".") or "png", dpi=150, bbox_inches="tight")
