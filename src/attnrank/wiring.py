"""The one way a workflow script runs: logging to the rule's log file, a summary line, and tracebacks kept.

Every ``workflow/scripts/*.py`` is imports, a ``main(snakemake)`` that calls the package and returns a summary,
and a last line ``wiring.run(snakemake, main)`` (a test checks this). ``run``

- logs to ``snakemake.log[0]`` (and stderr): a start line naming the rule and its wildcards, what the package
  logs (progress lines of long loops, skips), and Python warnings;
- on success ends the log with ``done: <summary> in <s> s``, the summary being what ``main`` returned (a string,
  or a dict of counts written as ``key=value``);
- on failure writes the full traceback to the log and re-raises, so the job fails as before (on SLURM the log is
  where a traceback survives: Snakemake's own stderr may be deleted or elsewhere).

The stale-lock helpers at the end let a plain rerun continue after a killed run (see docs/cluster.md).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("attnrank")

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(log_path: str | None = None, cache_dir: str | None = None) -> logging.Logger:
    """Log INFO and above to ``log_path`` (the rule's ``log:``) and to stderr; set shared cache folders."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format=FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)  # warnings.warn(...) of any library lands in the log too
    warnings.filterwarnings("ignore", module="ranx")
    warnings.filterwarnings("ignore", category=FutureWarning)
    if cache_dir:
        os.environ.setdefault("ATTNRANK_CACHE", os.path.abspath(cache_dir))
        os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.abspath(cache_dir), "numba"))
    return log


def summary_text(summary: Any) -> str:
    """``{'queries': 12, 'skipped': 0}`` -> ``queries=12, skipped=0``; a string stays as it is."""
    if summary is None:
        return "ok"
    if isinstance(summary, dict):
        return ", ".join(f"{k}={v}" for k, v in summary.items())
    return str(summary)


def counts(notes: dict) -> dict:
    """The countable items of a notes/meta dict: ints as they are, lists by length, nested dicts flattened."""
    out: dict = {}
    for k, v in (notes or {}).items():
        if isinstance(v, bool):
            continue
        if isinstance(v, int):
            out[k] = v
        elif isinstance(v, (list, tuple, set)):
            out[k] = len(v)
        elif isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in counts(v).items()})
    return out


def simulate_kill(what: str = "job") -> None:
    """Fault injection for the resume tests: die like SIGKILL. ``job``: this job only (exit 137); ``run``: the
    whole Snakemake run (SIGKILL to its process group, only when that group is led by a Snakemake process)."""
    import signal

    if what == "run":
        import psutil

        pgid = os.getpgid(0)
        try:
            leader = " ".join(psutil.Process(pgid).cmdline())
        except psutil.Error:
            leader = ""
        if "snakemake" not in leader:
            raise RuntimeError(f"simulate_kill('run'): process group {pgid} is not led by snakemake ({leader[:80]!r})")
        logging.shutdown()
        os.killpg(pgid, signal.SIGKILL)
    os._exit(137)


def shard_kill_hook():
    """Fault injection for the resume tests of the attention pass: with ``ATTNRANK_TEST_KILL_AFTER_SHARDS=n`` in the
    environment, an ``on_shard(i, path)`` callback that dies like SIGKILL after shard n (``ATTNRANK_TEST_KILL_WHAT``:
    ``job`` or ``run``, see :func:`simulate_kill`); else None."""
    if not os.environ.get("ATTNRANK_TEST_KILL_AFTER_SHARDS"):
        return None
    kill_after = int(os.environ["ATTNRANK_TEST_KILL_AFTER_SHARDS"])
    what = os.environ.get("ATTNRANK_TEST_KILL_WHAT", "job")
    return lambda i, path: simulate_kill(what) if i + 1 >= kill_after else None


def _job_name(smk) -> str:
    rule = getattr(smk, "rule", None) or "job"
    wc = dict(getattr(smk, "wildcards", {}) or {})
    return rule + (" " + " ".join(f"{k}={v}" for k, v in wc.items()) if wc else "")


def run(smk, main: Callable[[Any], Any]) -> Any:
    """Run ``main(smk)`` as one logged job (see the module docstring); return its summary."""
    log_path = smk.log[0] if len(smk.log) else None
    setup(log_path, getattr(smk.params, "cache_dir", None))
    name = _job_name(smk)
    log.info("start %s (pid %d on %s, %d thread(s))", name, os.getpid(), socket.gethostname(), int(getattr(smk, "threads", 1) or 1))
    t0 = time.perf_counter()
    try:
        summary = main(smk)
    except BaseException as e:
        log.exception("failed: %s after %.1f s: %s: %s", name, time.perf_counter() - t0, type(e).__name__, e)
        logging.shutdown()
        raise
    log.info("done: %s in %.1f s", summary_text(summary), time.perf_counter() - t0)
    logging.shutdown()
    return summary


# --------------------------------------------------------------------------------------- stale Snakemake locks
# Snakemake locks the working directory (.snakemake/locks) for a run and removes the lock when the run ends; a run
# killed by SIGKILL (scheduler, OOM killer, lost node) leaves it behind, and the next run stops with LockException.
# The main process records which lock files it owns (``record_lock_owner``, from ``onstart``); the next run removes
# a lock only when its owner ran on this host, is dead, and no Snakemake process or job still works in this folder.

OWNERS = Path(".snakemake") / "attnrank-lock-owners"
LOCKS = Path(".snakemake") / "locks"


def _proc_start(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _lock_stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_ino, st.st_mtime_ns]


def record_lock_owner(lockfiles: dict | None, workdir: str | os.PathLike = ".", pid: int | None = None) -> Path | None:
    """Record that process ``pid`` (default: this one) owns ``lockfiles`` (Snakemake's ``persistence._lockfile``)."""
    if not lockfiles:
        return None
    root = Path(workdir)
    pid = os.getpid() if pid is None else pid
    files = {}
    for p in lockfiles.values():
        p = Path(p)
        st = _lock_stat(p)
        if st is not None:
            files[os.path.relpath(p.resolve(), root.resolve())] = st
    if not files:
        return None
    rec = {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid), "locks": files}
    out = root / OWNERS / f"{rec['host']}-{pid}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec))
    return out


def _workers_in(root: Path) -> list[int]:
    """Other live processes on this host that look like Snakemake or one of its jobs working in ``root``."""
    import psutil

    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for p in psutil.process_iter(["pid", "cwd", "cmdline"]):
        try:
            if p.info["pid"] in mine or not p.info["cwd"] or Path(p.info["cwd"]).resolve() != root:
                continue
            if "snakemake" in " ".join(p.info["cmdline"] or []).lower():
                found.append(p.info["pid"])
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue
    return found


def release_stale_locks(workdir: str | os.PathLike = ".") -> list[str]:
    """Remove Snakemake locks left by a killed run of this workflow; return one line per action or problem.

    A lock goes only if its recorded owner ran on this host, is no longer alive (pid and start time), the lock file
    is the very one it created (inode, mtime), and no process on this host still runs Snakemake or a Snakemake job
    in this folder. Locks that cannot be proven stale stay, with a line saying what to run.
    """
    root = Path(workdir).resolve()
    lock_dir = root / LOCKS
    locks = sorted(lock_dir.glob("*.lock")) if lock_dir.is_dir() else []
    if not locks:
        for rec in (root / OWNERS).glob("*.json"):  # runs that ended cleanly
            rec.unlink(missing_ok=True)
        return []
    host = socket.gethostname()
    stale: list[tuple[Path, dict]] = []
    owned_live: set[Path] = set()
    for rec_path in sorted((root / OWNERS).glob("*.json")):
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            continue
        alive = rec.get("host") != host or (
            (start := _proc_start(int(rec["pid"]))) is not None and (rec.get("start") is None or abs(start - rec["start"]) < 1)
        )
        if not alive:
            stale.append((rec_path, rec))
        elif rec.get("host") == host:
            owned_live |= {root / rel for rel in rec["locks"]}
    msgs: list[str] = []
    if stale:
        workers = _workers_in(root)
        if workers:
            return [
                f"attnrank: a lock in {lock_dir} belongs to a killed run, but Snakemake processes still work in this "
                f"folder (pid {', '.join(map(str, workers[:5]))}); wait for them or end them, then rerun"
            ]
    for rec_path, rec in stale:
        removed = 0
        for rel, st in rec["locks"].items():
            p = root / rel
            if p.parent == lock_dir and _lock_stat(p) == st:
                p.unlink(missing_ok=True)
                removed += 1
        rec_path.unlink(missing_ok=True)
        if removed:
            msgs.append(f"attnrank: removed {removed} stale lock file(s) left by a killed snakemake run (pid {rec['pid']} on {rec['host']})")
    if any(p not in owned_live for p in lock_dir.glob("*.lock")):
        msgs.append(
            f"attnrank: {lock_dir} holds a lock of a run not known to be alive on this host; if snakemake stops with "
            "LockException and no other snakemake runs in this folder, run the same command once with --unlock, then rerun"
        )
    return msgs
