"""`snakemake --profile slurm` on a real single-node SLURM cluster (Debian's slurm-wlm), CPU-only mode.

The cluster is started for this module by `.ci/slurm-cluster.sh` (munged, slurmctld, slurmd as root, no accounting
storage, state under a temp folder) and stopped at the end. A trimmed grid (tiny model, synthetic data) runs once
locally and once through SLURM; while the SLURM attention job runs, the test cancels it with `scancel` after its
first score-cache shard: snakemake must see the cancel (status from squeue), resubmit, and the second attempt must
keep the shards already written. Results must be byte-identical to the local run. Skipped, with the reason, where
SLURM cannot start (not root, slurm-wlm not installed: `.ci/slurm-cluster.sh install`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO

pytestmark = pytest.mark.slow

SCRIPT = REPO / ".ci" / "slurm-cluster.sh"
CONFIG = {
    "results_dir": "results",  # one folder name for both runs (the default follows the config file's name)
    "cache_dir": str(REPO / ".cache"),
    "datasets": {"tiny": {"source": "synthetic", "split": "test", "n_docs": 120, "n_queries": 48}},
    "retrievers": {"bm25": {"kind": "bm25", "depth": 20}},
    "candidates": {"depth": 8, "max_doc_words": 40, "retrievers": ["bm25"]},
    # big enough for the attention pass to take a few seconds after its first shard (time to cancel it)
    "models": {"tiny": {"source": "tiny", "arch": "llama", "n_layers": 4, "hidden": 128}},
    "prompt": {"max_doc_tokens": 32},
    "engine": {"shard_size": 1},  # one shard per query: the cancelled job leaves some behind
    "methods": {"icr": {"kind": "icr"}, "yesno": {"kind": "yesno"}},
}
SCORES = "results/scores/tiny/tiny/bm25/retrieval"
ATTENTION_LOG = "results/logs/attention_scores/tiny/tiny/bm25/retrieval.log"


def _cluster_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the test cluster's daemons must run as root"
    missing = [t for t in ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue") if shutil.which(t) is None]
    if missing:
        return f"SLURM not installed ({', '.join(missing)} missing; `.ci/slurm-cluster.sh install` installs it)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = _cluster_unavailable()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-cluster")
    env = {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    try:
        proc = subprocess.run([str(SCRIPT), "start", str(state)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"SLURM cannot start here: {(proc.stderr or proc.stdout).strip()[-500:]}")
        yield env
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=60)
        subprocess.run([str(SCRIPT), "stop", str(state)], capture_output=True, timeout=120)


def _squeue(env: dict) -> list[tuple[str, str, str, str]]:
    """(job id, comment, state, GRES asked for) of the queue's jobs."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T|%b"], env=env, capture_output=True, text=True, timeout=30).stdout
    return [tuple(line.split("|", 3)) for line in out.splitlines() if line.count("|") == 3]


def _results(work: Path) -> dict[str, bytes]:
    files = [work / "results/tables/results.csv", *sorted((work / "results").glob("r*/**/*.trec"))]
    return {str(p.relative_to(work)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-real")
    cfg = root / "config.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    env = {
        **cluster,
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
        "ATTNRANK_CACHE": str(REPO / ".cache"),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("SNAKEMAKE_SLURM_PARTITIONS", None)
    common = [sys.executable, "-m", "snakemake", "--configfile", str(cfg), "--replace-workflow-config"]
    # the local reference run goes alongside the SLURM run (the SLURM run mostly waits), with a cache folder of its
    # own: both runs have a ranx_warmup job whose output lives in the cache folder, and Snakemake deletes a job's
    # outputs before running it, so a shared one races with the other run's evaluate job
    local_cfg = root / "config.local.yaml"
    local_cfg.write_text(yaml.safe_dump({**CONFIG, "cache_dir": str(root / "cache-local")}))
    t0 = time.monotonic()
    local_log = open(root / "local.log", "w")
    local = subprocess.Popen([sys.executable, "-m", "snakemake", "--configfile", str(local_cfg), "--replace-workflow-config",
                              "--cores", "2", "-d", str(root / "local")], cwd=REPO, env=env,
                             stdout=local_log, stderr=subprocess.STDOUT)
    # as docs/cluster.md says for a CPU-only cluster without accounts; faster status checks for the test
    work = root / "slurm"
    cmd = [*common, "--cores", "8", "--profile", "slurm", "-d", str(work), "--config", "cpu_only=true",
           "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
           "--seconds-between-status-checks", "2", "--latency-wait", "10",
           "--slurm-logdir", str(root / "slurm_logs"), "--slurm-keep-successful-logs"]
    sm = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_lines = []
    reader = threading.Thread(target=lambda: out_lines.extend(sm.stdout), daemon=True)
    reader.start()
    cancelled, seen, attention, polled = None, {}, None, 0.0
    try:
        deadline = time.monotonic() + 1800
        while sm.poll() is None and time.monotonic() < deadline:
            if time.monotonic() - polled > 0.5:
                queue, polled = _squeue(env), time.monotonic()
                seen.update({j[0]: j for j in queue})
                if attention is None:
                    attention = next((j[0] for j in queue if "attention_scores" in j[1] and j[2] == "RUNNING"), None)
            if attention is not None and cancelled is None:
                # cancel as soon as the first shard is written: a tight loop on the file system, no squeue call
                shards = sorted((work / SCORES).glob("shard-*.npz"))
                if shards:
                    subprocess.run(["scancel", attention], env=env, check=True, timeout=30)
                    cancelled = {"job": attention, "shards": len(shards), "complete": (work / SCORES / "manifest.json").exists()}
            time.sleep(0.01 if attention is not None and cancelled is None else 0.1)
        t_slurm = time.monotonic() - t0
        local.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        for proc in (sm, local):
            if proc.poll() is None:
                proc.kill()
        local_log.close()
    reader.join(timeout=60)
    out = "".join(out_lines)
    assert local.returncode == 0, (root / "local.log").read_text()[-4000:]
    t_all = time.monotonic() - t0
    print(f"\nwall time: SLURM run {t_slurm:.0f} s, with the local run alongside {t_all:.0f} s")
    return {"root": root, "work": work, "local": root / "local", "rc": sm.returncode, "out": out,
            "cancelled": cancelled, "jobs": list(seen.values()), "t_slurm": t_slurm}


def test_the_slurm_run_finishes(runs):
    assert runs["rc"] == 0, runs["out"][-6000:]
    assert "SLURM jobid" in runs["out"]  # jobs went through sbatch, not the local executor


def test_results_are_identical_to_a_local_run(runs):
    slurm, local = _results(runs["work"]), _results(runs["local"])
    assert len(local) >= 4 and sorted(slurm) == sorted(local)  # results.csv, bm25, icr, yesno runs
    assert [k for k in local if slurm[k] != local[k]] == []


def test_a_cancelled_attention_job_resumes_from_its_shards(runs):
    c = runs["cancelled"]
    assert c is not None, "the attention job was never seen running with a shard written"
    total = len(json.loads((runs["local"] / SCORES / "manifest.json").read_text())["shards"])
    assert not c["complete"] and 1 <= c["shards"] < total, (c, total)  # cancelled mid-way
    assert f"'{c['job']}' failed, SLURM status is: 'CANCELLED'" in runs["out"]  # seen at once via squeue
    log = (runs["work"] / ATTENTION_LOG).read_text()  # the resubmitted attempt's log
    kept = [line for line in log.splitlines() if "shards kept" in line]
    assert kept, log[-2000:]
    n_kept = int(kept[-1].split("shards kept")[0].split(":")[-1].split(" of ")[0])
    assert n_kept >= c["shards"], (kept, c)


def test_cpu_only_mode_asks_for_no_gpu(runs):
    model_jobs = [j for j in runs["jobs"] if "attention_scores" in j[1] or "rerank_text" in j[1]]
    assert {j[1].split("_wildcards")[0] for j in model_jobs} == {"rule_attention_scores", "rule_rerank_text"}
    assert all(j[3] == "N/A" for j in model_jobs), model_jobs  # no GRES: no --gpus
