"""SLURM submissions and model loads of a config, with and without the slurm profile's job groups (dry run).

    flock /work/heavy.lock python bench/bench_slurm_jobs.py [--configfile config/paper.yaml]

Runs ``snakemake -n --forceall --profile slurm`` against fake SLURM commands (``tests/test_slurm.py``'s fakes:
sinfo, scontrol, sbatch ...; nothing is submitted in a dry run) twice: with ``profiles/slurm`` as it is, and with a
copy of it without ``groups`` / ``group-components``. A SLURM submission is a top-level job of the dry run's
listing or one ``Group job``; a model load is a job of a GPU rule (each loads its model once). Prints both counts
and the dry runs' wall times.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GPU_RULES = {"attention_scores", "detection_scores", "rerank_text", "latency"}


def fakes(folder: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    import test_slurm

    test_slurm._install_fakes(folder / "bin")
    (folder / "state").mkdir()
    return folder / "bin"


def count(out: str) -> dict:
    top, grouped, groups = {}, {}, 0
    for line in out.splitlines():
        if " Group job " in line:
            groups += 1
        m = re.match(r"^(\s*)(?:local)?rule (\w+):$", line)
        if m:
            d = grouped if m.group(1) else top
            d[m.group(2)] = d.get(m.group(2), 0) + 1
    top.pop("all", None)
    jobs = {r: top.get(r, 0) + grouped.get(r, 0) for r in set(top) | set(grouped)}
    return {"submissions": sum(top.values()) + groups, "group_jobs": groups, "jobs": sum(jobs.values()),
            "model_loads": sum(n for r, n in jobs.items() if r in GPU_RULES), "grouped": grouped}


def dry_run(profile: Path, configfile: str, env: dict, work: Path) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "snakemake", "-n", "--forceall", "--profile", str(profile), "-d", str(work),
           "--configfile", configfile, "--replace-workflow-config"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"dry run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return count(proc.stdout + proc.stderr), dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default="config/paper.yaml")
    args = ap.parse_args()
    configfile = str(Path(args.configfile).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "PATH": f"{fakes(tmp)}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_DIR": str(tmp / "state")}
        plain = tmp / "slurm-nogroups"
        shutil.copytree(REPO / "profiles" / "slurm", plain)
        prof = yaml.safe_load((plain / "config.yaml").read_text())
        prof.pop("groups", None)
        prof.pop("group-components", None)
        (plain / "config.yaml").write_text(yaml.safe_dump(prof))
        work = tmp / "work"
        work.mkdir()
        before, t_before = dry_run(plain, configfile, env, work)
        after, t_after = dry_run(REPO / "profiles" / "slurm", configfile, env, work)
    print(f"{'':<22}{'no groups':>12}{'groups':>12}")
    for k in ("jobs", "submissions", "group_jobs", "model_loads"):
        print(f"{k:<22}{before[k]:>12}{after[k]:>12}")
    print(f"{'dry run s':<22}{t_before:>12.1f}{t_after:>12.1f}")
    print("grouped jobs by rule:", after["grouped"])


if __name__ == "__main__":
    main()
