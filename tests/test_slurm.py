"""`snakemake --profile slurm` end to end against fake SLURM commands: what would be submitted, and that it runs.

Fake `sbatch` records its argv, runs the wrapped job command at once (synchronously) and records COMPLETED or
FAILED for `sacct`/`squeue`; fake `srun` (used by the job step) records its argv and runs the command. The run
starts in the repository root, as a user would type it, so the `slurm` profile is found by name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from helpers import REPO

pytestmark = pytest.mark.slow

CONFIG = {
    "cache_dir": str(REPO / ".cache"),
    "datasets": {"tiny": {"source": "synthetic", "split": "test", "n_docs": 48, "n_queries": 4}},
    "retrievers": {"bm25": {"kind": "bm25", "depth": 20}},
    "candidates": {"depth": 4, "max_doc_words": 30, "retrievers": ["bm25"]},
    "models": {"tiny": {"source": "tiny", "arch": "llama", "gpu_model": "h100", "mem_mb": 20000, "batch_size": 4}},
    "prompt": {"max_doc_tokens": 24},
    "methods": {"icr": {"kind": "icr"}, "yesno": {"kind": "yesno"}},
}
# results_dir unset: results/config (from config.yaml); each SLURM job derives the same folder from its --configfiles
TARGETS = ["results/config/rerank/tiny/tiny/bm25/retrieval/icr.trec", "results/config/rerank/tiny/tiny/bm25/yesno.trec"]

_COMMON = """
import fcntl, json, os, subprocess, sys
STATE = os.environ["FAKE_SLURM_DIR"]

def record(name, argv):
    with open(os.path.join(STATE, name + ".jsonl"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(argv) + "\\n")

def jobs():
    path = os.path.join(STATE, "jobs.jsonl")
    return [json.loads(line) for line in open(path)] if os.path.exists(path) else []
"""

FAKES = {
    # sbatch --parsable ... --wrap="<job command>": run the job now, answer with its id
    "sbatch": """
argv = sys.argv[1:]
if "--test-only" in argv:  # the preflight check: accept, as the real sbatch does for a job that fits
    record("sbatch-test-only", argv)
    print("sbatch: Job 1 to start at 2026-01-01T00:00:00 using 1 processors on nodes n1 in partition cpu", file=sys.stderr)
    sys.exit(0)
record("sbatch", argv)
opts = {}
for i, a in enumerate(argv):
    if a.startswith("--wrap="):
        opts["wrap"] = a[len("--wrap="):]
    elif a in ("-D", "--output") and i + 1 < len(argv):
        opts[a] = argv[i + 1]
with open(os.path.join(STATE, "counter"), "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    f.seek(0)
    jobid = int(f.read() or 1000) + 1
    f.seek(0); f.truncate(); f.write(str(jobid))
out = opts["--output"].replace("%j", str(jobid))
os.makedirs(os.path.dirname(out), exist_ok=True)
rule = argv[argv.index("--comment") + 1].removeprefix("rule_").split("_wildcards_")[0]
oom_marker = os.path.join(STATE, "oom-" + rule)
if rule == os.environ.get("FAKE_SLURM_OOM_RULE") and not os.path.exists(oom_marker):
    open(oom_marker, "w").close()  # the first attempt of this rule is killed for memory without running
    state = "OUT_OF_MEMORY"
else:
    with open(out, "w") as log:
        rc = subprocess.run(["/bin/sh", "-c", opts["wrap"]], cwd=opts.get("-D"), stdout=log, stderr=subprocess.STDOUT).returncode
    state = "COMPLETED" if rc == 0 else "FAILED"
record("jobs", {"id": str(jobid), "state": state, "rule": rule})
print(jobid)
""",
    # sacct: job states (status polling), nothing for account guesses and failure reasons
    "sacct": """
if "--name" in sys.argv:
    for j in jobs():
        print(f"{j['id']}|{j['state']}")
""",
    "squeue": """
for j in jobs():
    print(f"{j['id']}|{j['state']}")
""",
    # sinfo -h -N -o "%N|%P|%c|%m|%G": one CPU and one GPU node
    "sinfo": 'print("c1|cpu*|64|256000|(null)\\ng1|gpu|32|512000|gpu:h100:4(S:0-1)")',
    "scontrol": 'print("MinJobAge = 300 sec\\nMaxArraySize = 1001")',
    # srun -n1 --cpu-bind=q --cpus-per-task=2 --gpus=1 --nodes=1 <command...>
    "srun": """
argv = sys.argv[1:]
record("srun", argv)
i = 0
while i < len(argv) and argv[i].startswith("-"):
    i += 1
os.execvp(argv[i], argv[i:])
""",
}


def _install_fakes(bin_dir: Path) -> None:
    bin_dir.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n" + _COMMON + textwrap.dedent(body))
        path.chmod(0o755)


def _opt(argv: list[str], name: str) -> str | None:
    """Value of an sbatch option given as `name value` or `name=value`."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def _rule(argv: list[str]) -> str:
    """The rule of a submission; a group job (``rule_<group id>_<its rules>``) counts under its rules' names."""
    comment = _opt(argv, "--comment")
    return re.sub(r"^(agg-[^_]+|report)_", "", comment.removeprefix("rule_").split("_wildcards_")[0])


def _group(argv: list[str]) -> str | None:
    m = re.match(r"^rule_(agg-[^_]+|report)_", _opt(argv, "--comment"))
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm")
    work, state = root / "work", root / "state"
    work.mkdir()
    state.mkdir()
    _install_fakes(root / "bin")
    (work / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    env = {
        **os.environ,
        "PATH": f"{root / 'bin'}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}",
        "FAKE_SLURM_DIR": str(state),
        "SNAKEMAKE_SLURM_PARTITIONS": str(REPO / "profiles" / "slurm" / "partitions.yaml"),
        "ATTNRANK_CACHE": str(REPO / ".cache"),
        "HF_HUB_OFFLINE": "1",
        "FAKE_SLURM_OOM_RULE": "attention_scores",
    }
    env.pop("SLURM_JOB_ID", None)
    cmd = [
        sys.executable, "-m", "snakemake", "--cores", "2", "--profile", "slurm", "-d", str(work),
        "--configfile", str(work / "config.yaml"), "--replace-workflow-config",
        "--jobs", "2", "--seconds-between-status-checks", "1", "--slurm-init-seconds-before-status-checks", "1",
        "--latency-wait", "5", "--slurm-logdir", str(root / "slurm_logs"), "--slurm-keep-successful-logs",
        *TARGETS,
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    logs = "\n".join(p.read_text()[-3000:] for p in sorted((root / "slurm_logs").rglob("*.log")))
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}\n--- job logs\n{logs[-6000:]}"
    sbatch = [json.loads(line) for line in (state / "sbatch.jsonl").read_text().splitlines()]
    srun = [json.loads(line) for line in (state / "srun.jsonl").read_text().splitlines()]
    by_rule: dict[str, list[list[str]]] = {}
    for argv in sbatch:
        by_rule.setdefault(_rule(argv), []).append(argv)
    return {"work": work, "sbatch": by_rule, "srun": srun}


def test_every_job_is_submitted_and_runs(slurm_run):
    work = slurm_run["work"]
    for target in TARGETS:
        assert (work / target).stat().st_size > 0, target
    counts = {rule: len(subs) for rule, subs in slurm_run["sbatch"].items()}
    assert counts == {
        "dataset": 1, "bm25_index": 1, "retrieve": 1, "candidates": 1, "prepare_model": 1,
        "attention_scores": 2,  # its first attempt was killed for memory and resubmitted
        "rerank_attention": 1, "rerank_text": 1,
    }
    assert len(slurm_run["srun"]) == 8  # every job that ran did so through srun inside its allocation


def test_out_of_memory_is_retried_with_more_memory_and_a_smaller_batch(slurm_run):
    first, second = slurm_run["sbatch"]["attention_scores"]
    assert (_opt(first, "--mem"), _opt(second, "--mem")) == ("20000", "40000")  # models.tiny.mem_mb x attempt
    wrap = _opt(second, "--wrap")
    assert "--attempt 2" in wrap  # the job re-evaluates attempt-dependent resources (batch 4 -> 2) itself


@pytest.mark.parametrize("rule", ["attention_scores", "rerank_text"])
def test_gpu_rules_ask_for_the_configured_gpu_model(slurm_run, rule):
    argv = slurm_run["sbatch"][rule][-1]
    assert _opt(argv, "--gpus") == "h100:1"  # models.tiny.gpu_model
    assert _opt(argv, "-p") == "gpu"  # chosen from profiles/slurm/partitions.yaml
    assert _opt(argv, "--mem") == ("40000" if rule == "attention_scores" else "20000")  # mem_mb x attempt
    assert _opt(argv, "-t") == "720"
    assert _opt(argv, "--cpus-per-task") == "2"
    assert not any(a.startswith("--gres") for a in argv)


@pytest.mark.parametrize("rule", ["dataset", "bm25_index", "retrieve", "candidates", "prepare_model", "rerank_attention"])
def test_cpu_rules_stay_on_cpu_partitions(slurm_run, rule):
    (argv,) = slurm_run["sbatch"][rule]
    assert _opt(argv, "-p") == "cpu"
    assert not any(a.startswith(("--gpus", "--gres")) for a in argv)
    # data and first-stage jobs are sized from their corpus (issue 25: the 48-document test corpus asks for 500-1300 MB)
    assert int(_opt(argv, "--mem")) >= (500 if rule in ("dataset", "bm25_index", "retrieve") else 2000) and int(_opt(argv, "-t")) >= 30
    assert _opt(argv, "--ntasks") == "1"


def test_job_steps_get_the_gpu(slurm_run):
    gpu_steps = [a for a in slurm_run["srun"] if "--gpus=1" in a]
    assert len(gpu_steps) == 2  # attention_scores and rerank_text
    assert all("attention_scores" in " ".join(a) or "rerank_text" in " ".join(a) for a in gpu_steps)


def test_attention_aggregations_go_as_one_group_job_per_model_and_dataset(slurm_run):
    (argv,) = slurm_run["sbatch"]["rerank_attention"]
    assert _group(argv) == "agg-tiny-tiny"  # profiles/slurm: groups + group-components
    assert all(_group(a) is None for r, subs in slurm_run["sbatch"].items() if r != "rerank_attention" for a in subs)


def test_groups_only_in_the_slurm_profile():
    slurm = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["groups"]["rerank_attention"] == "agg-{model}-{dataset}" and slurm["group-components"]["report"] > 1
    local = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert "groups" not in local and "group-components" not in local


def test_profile_is_found_by_name_and_tracked_as_a_symlink():
    link = REPO / "slurm"
    assert link.is_symlink() and os.readlink(link) == "profiles/slurm"
    profile = yaml.safe_load((link / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert profile["rerun-triggers"] == ["mtime", "params", "input", "software-env"]
    assert profile["retries"] >= 1
    assert "gres" not in json.dumps(profile) and "slurm_extra" not in json.dumps(profile)


def test_a_model_without_gpu_model_asks_for_any_gpu():
    """gpu_model defaults to "" in the rules: the plugin then submits --gpus=1, not --gpus=:1."""
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.__getitem__

    job = type("Job", (), {"resources": Resources(gpu=1, gpu_model="")})()
    assert set_gres_string(job).split() == ["--gpus=1"]
    job.resources["gpu_model"] = "h100"
    assert set_gres_string(job).split() == ["--gpus=h100:1"]
