"""Wiring: every script runs through attnrank.wiring.run (log, summary, traceback), outputs respect the umask,
progress is logged, and stale Snakemake locks of a killed run are released only when provably stale."""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest

from attnrank import io, progress, wiring

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))
DONE = re.compile(r" INFO attnrank: done: .+ in \d+\.\d s$")


# ------------------------------------------------------------------------------------------- script shape
def _is_run_call(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
        and ast.unparse(node.value.func) == "wiring.run"
        and [ast.unparse(a) for a in node.value.args] == ["snakemake", "main"] and not node.value.keywords
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_runs_through_the_wiring(script):
    """Module level holds only a docstring, imports, constants and ``def main(smk)``; the last line is
    ``wiring.run(snakemake, main)``, so everything that can fail runs inside the logged job."""
    body = ast.parse(script.read_text()).body
    assert body and _is_run_call(body[-1]), f"{script.name}: last statement must be wiring.run(snakemake, main)"
    mains = [n for n in body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert len(mains) == 1 and len(mains[0].args.args) == 1, f"{script.name}: needs exactly one def main(smk)"
    for node in body[:-1]:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is body[0]:
            continue  # docstring
        if isinstance(node, ast.Assign) and not any(isinstance(n, ast.Call) for n in ast.walk(node.value)):
            continue  # a constant
        pytest.fail(f"{script.name}:{node.lineno}: code outside main() runs before the log is set up: {ast.unparse(node)[:80]}")
    assert "snakemake" not in {n.id for n in ast.walk(mains[0]) if isinstance(n, ast.Name)}, (
        f"{script.name}: main() must use its argument, not the global 'snakemake'"
    )


def test_every_rule_runs_a_script_with_a_log():
    """No shell:/run: rules (they would bypass the wiring); every rule but 'all' has a log: and a script in workflow/scripts."""
    names = {p.name for p in SCRIPTS}
    text = "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    rules = re.split(r"^rule (\w+):", text, flags=re.M)[1:]
    assert rules
    for name, block in zip(rules[::2], rules[1::2]):
        assert not re.search(r"^\s+(shell|run|wrapper|notebook):", block, re.M), f"rule {name}: use script:, not shell/run"
        assert re.search(r"^\s+log:", block, re.M), f"rule {name}: no log:"
        m = re.search(r"^\s+script:\s*\n\s+\"\.\./scripts/([\w.]+)\"", block, re.M)
        assert m and m.group(1) in names, f"rule {name}: no script in workflow/scripts"


# ------------------------------------------------------------------------------------------- wiring.run
def _smk(tmp_path, **params):
    return SimpleNamespace(
        log=[str(tmp_path / "logs" / "x.log")], params=SimpleNamespace(**params), rule="demo",
        wildcards={"dataset": "d1"}, threads=1,
    )


def test_run_logs_start_and_summary(tmp_path):
    smk = _smk(tmp_path)

    def main(s):
        logging.getLogger("attnrank.data.sources").warning("2 empty documents dropped")
        return {"queries": 12, "skipped": 2}

    assert wiring.run(smk, main) == {"queries": 12, "skipped": 2}
    lines = Path(smk.log[0]).read_text().splitlines()
    assert "start demo dataset=d1" in lines[0]
    assert any("2 empty documents dropped" in ln for ln in lines)
    assert DONE.search(lines[-1]) and "done: queries=12, skipped=2 in " in lines[-1]


def test_run_keeps_the_traceback_of_a_failing_job(tmp_path):
    smk = _smk(tmp_path)

    def main(s):
        return inner()

    def inner():
        raise ValueError("corrupt shard 3")

    with pytest.raises(ValueError, match="corrupt shard 3"):
        wiring.run(smk, main)
    text = Path(smk.log[0]).read_text()
    assert "failed: demo dataset=d1 after" in text and "ValueError: corrupt shard 3" in text
    assert "Traceback (most recent call last)" in text and "in inner" in text
    assert "done:" not in text


def test_counts_and_summary_text():
    notes = {"n_docs": 5, "empty_documents_dropped": ["a", "b"], "skipped": {"no_positive": 1}, "source": "beir", "ok": True}
    assert wiring.counts(notes) == {"n_docs": 5, "empty_documents_dropped": 2, "skipped.no_positive": 1}
    assert wiring.summary_text({"a": 1, "b": 2}) == "a=1, b=2"
    assert wiring.summary_text(None) == "ok" and wiring.summary_text("3 files") == "3 files"


# ------------------------------------------------------------------------------------------- progress lines
def test_progress_logs_rate_and_eta(caplog):
    caplog.set_level(logging.INFO)
    assert list(progress.progress(range(4), "attention", unit="q", every_s=0)) == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("attention: 1/4 q (25%),") and "q/s" in lines[0] and "ETA" in lines[0]
    assert re.match(r"attention: 4 q in \d+\.\d s \(", lines[-1]) and len(lines) == 5
    caplog.clear()
    list(progress.progress(range(4), "quiet", every_s=3600))  # only the closing line within the interval
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["quiet"]
    caplog.clear()
    list(progress.progress(range(4), "off", every_s=0, enabled=False))
    assert caplog.records == []


def test_no_terminal_bars_in_the_package():
    for path in sorted((REPO / "src" / "attnrank").glob("*.py")) + SCRIPTS:
        tree = ast.parse(path.read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m and m.split(".")[0] == "tqdm" for m in mods), f"{path.name}: use attnrank.progress, not tqdm"


# ------------------------------------------------------------------------------------------- file modes
@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda m: f"umask{m:03o}")
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _via_atomic_path(p):
    with io.atomic_path(p) as tmp:
        tmp.write_bytes(b"x")


RUN = pl.DataFrame({"qid": ["q1", "q1"], "docid": ["d1", "d2"], "score": [1.0, 0.5]})
FILE_WRITERS = {
    "write_text": lambda p: io.write_text(p, "x\n"),
    "write_json": lambda p: io.write_json(p, {"a": 1}),
    "write_parquet": lambda p: io.write_parquet(RUN, p),
    "write_trec": lambda p: io.write_trec(RUN, p, tag="t"),
    "atomic_path": _via_atomic_path,
}


@pytest.mark.parametrize("writer", sorted(FILE_WRITERS))
def test_atomic_files_respect_the_umask(tmp_path, umask, writer):
    out = tmp_path / "sub" / "out.file"
    FILE_WRITERS[writer](out)
    assert _mode(out) == 0o666 & ~umask
    assert [p.name for p in out.parent.iterdir()] == ["out.file"]  # no temporary left behind


def test_atomic_dir_respects_the_umask_and_replaces(tmp_path, umask):
    target = tmp_path / "index"
    for n in range(2):  # the second run replaces the first folder
        with io.atomic_dir(target) as tmp:
            (tmp / "f").write_text(str(n))
            (tmp / "sub").mkdir(mode=0o700)
            os.close(os.open(tmp / "sub" / "private", os.O_CREAT | os.O_WRONLY, 0o600))  # as safetensors does
    assert _mode(target) == 0o777 & ~umask and (target / "f").read_text() == "1"
    assert _mode(target / "sub") == 0o777 & ~umask and _mode(target / "sub" / "private") == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["index"]
    with pytest.raises(RuntimeError):
        with io.atomic_dir(target) as tmp:
            (tmp / "f").write_text("broken")
            raise RuntimeError
    assert (target / "f").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["index"]


def test_score_shards_and_plots_respect_the_umask(tmp_path, umask):
    import numpy as np

    from attnrank.attention import scorecache
    from attnrank.selection import heads
    from attnrank.attention.scores import QueryScores

    qs = QueryScores(qid="q", docids=["a", "b"], raw=np.zeros((1, 2, 2), np.float32), na=np.zeros((1, 2, 2), np.float32),
                     masked_prefix=np.zeros((1, 2), np.float32), positions=np.arange(2, dtype=np.int32), n_tokens=np.ones(2, np.int32))
    scorecache._write_shard(tmp_path / "shard-00000.npz", [qs], "h", "code")
    table = pl.DataFrame({"layer": [0, 0], "head": [0, 1], "qr": [0.1, 0.2], "core": [0.3, 0.1]})
    heads.plot_heatmap(table, "qr", tmp_path / "qr.png", title="t")
    for name in ("shard-00000.npz", "qr.png"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name


def test_only_io_makes_temporary_files():
    """Writers go through attnrank.io (atomic, umask-respecting); tempfile elsewhere would bring back 0600 files."""
    for path in sorted((REPO / "src" / "attnrank").glob("*.py")):
        if path.name == "io.py":
            continue
        assert not re.search(r"\b(mkstemp|mkdtemp|NamedTemporaryFile)\b", path.read_text()), f"{path.name}: use attnrank.io"


# ------------------------------------------------------------------------------------------- stale locks
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _locks(root: Path, n: int = 0) -> dict:
    d = root / ".snakemake" / "locks"
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind in ("input", "output"):
        f = d / f"{n}.{kind}.lock"
        f.write_text("results/x\n")
        files[kind] = str(f)
    return files


def test_lock_of_a_dead_run_is_released(tmp_path):
    wiring.record_lock_owner(_locks(tmp_path), tmp_path, pid=_dead_pid())
    msgs = wiring.release_stale_locks(tmp_path)
    assert len(msgs) == 1 and "removed 2 stale lock file(s) left by a killed snakemake run" in msgs[0], msgs
    assert not list((tmp_path / ".snakemake" / "locks").iterdir())
    assert not list((tmp_path / wiring.OWNERS).iterdir())
    assert wiring.release_stale_locks(tmp_path) == []


def test_lock_of_a_live_run_stays(tmp_path):
    wiring.record_lock_owner(_locks(tmp_path), tmp_path)  # this process: alive
    assert wiring.release_stale_locks(tmp_path) == []
    assert len(list((tmp_path / ".snakemake" / "locks").iterdir())) == 2


def test_unknown_or_replaced_lock_stays_with_one_line_saying_what_to_run(tmp_path):
    files = _locks(tmp_path)
    wiring.record_lock_owner(files, tmp_path, pid=_dead_pid())
    for f in files.values():  # someone unlocked, and another run took the same lock file names since
        os.unlink(f)
    _locks(tmp_path)
    msgs = wiring.release_stale_locks(tmp_path)
    assert len(msgs) == 1 and "--unlock" in msgs[0] and "no other snakemake runs in this folder" in msgs[0], msgs
    assert len(list((tmp_path / ".snakemake" / "locks").iterdir())) == 2


def test_owner_records_of_finished_runs_are_cleaned(tmp_path):
    files = _locks(tmp_path)
    rec = wiring.record_lock_owner(files, tmp_path)
    for f in files.values():  # the run ended and Snakemake removed its locks
        os.unlink(f)
    assert json.loads(rec.read_text())["pid"] == os.getpid()
    assert wiring.release_stale_locks(tmp_path) == [] and not rec.exists()


def test_lock_stays_while_a_job_of_the_killed_run_still_works_in_the_folder(tmp_path):
    """Killing only snakemake's main process leaves its jobs running: their folder is not unlocked under them."""
    wiring.record_lock_owner(_locks(tmp_path), tmp_path, pid=_dead_pid())
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", ".snakemake/scripts/tmp.job.py"], cwd=tmp_path)
    try:
        msgs = wiring.release_stale_locks(tmp_path)
    finally:
        job.kill()
        job.wait()
    assert len(msgs) == 1 and f"still work in this folder (pid {job.pid})" in msgs[0], msgs
    assert len(list((tmp_path / ".snakemake" / "locks").iterdir())) == 2
    assert "removed 2 stale lock file(s)" in wiring.release_stale_locks(tmp_path)[0]  # once the job is gone


def test_one_handler_of_each_kind():
    """Snakemake keeps only the last `onstart:` / `onsuccess:` / `onerror:` it reads: two would silently drop one
    (the lock-owner record and the SLURM preflight once did)."""
    import re

    texts = [(REPO / "Snakefile").read_text()] + [p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    for handler in ("onstart", "onsuccess", "onerror"):
        n = sum(len(re.findall(rf"^{handler}\s*:", t, flags=re.M)) for t in texts)
        assert n <= 1, f"{n} '{handler}:' handlers in the workflow"
