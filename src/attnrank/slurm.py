"""The SLURM preflight check (:func:`preflight`, run once when snakemake starts with the slurm executor): SLURM
commands present, status polling that can work, partitions and account known, and every job fits some node; each
problem is a line of one :class:`SlurmError` raised before anything is submitted. ``sbatch --test-only`` of each
rule's largest job lets the scheduler itself reject what it would reject later (its message is quoted). The
largest node found caps every job's request (``attnrank.resources.set_limits``).
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .resources import Limits, set_limits


class SlurmError(InputError):
    """The cluster cannot run the workflow as configured; the message lists every problem, one per line."""


REQUIRED_TOOLS = ("sbatch", "squeue", "sinfo", "scontrol")


@dataclass
class Node:
    name: str
    partitions: list[str] = field(default_factory=list)
    cpus: int = 0
    mem_mb: int = 0
    gpus: int = 0


@dataclass
class Job:
    """One job's request, as the slurm plugin would submit it."""

    rule: str
    mem_mb: int
    threads: int
    gpus: int = 0
    runtime: int | None = None
    partition: str | None = None  # None: the cluster's default partition (or any, with automatic selection)
    label: str = ""


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _first_line(proc: subprocess.CompletedProcess) -> str:
    text = (proc.stderr or proc.stdout or "").strip()
    return text.splitlines()[-1] if text else f"exit status {proc.returncode}"


def gres_gpus(gres: str) -> int:
    """GPUs in an sinfo GRES string: 'gpu:a100:4(S:0-1),shard:8' -> 4, '(null)' -> 0."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2:
            try:
                total += int(parts[-1])
            except ValueError:
                total += 1
    return total


def read_nodes() -> tuple[list[Node], str | None]:
    """Nodes (one per node name, all its partitions) and the default partition, from ``sinfo``."""
    proc = _run(["sinfo", "-h", "-N", "-o", "%N|%P|%c|%m|%G"])
    if proc.returncode != 0:
        raise SlurmError(f"SLURM: `sinfo` failed ({_first_line(proc)}): is slurmctld reachable from here?")
    nodes: dict[str, Node] = {}
    default = None
    for line in proc.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5:
            continue
        name, part, cpus, mem, gres = fields
        if part.endswith("*"):
            part = default = part[:-1]
        node = nodes.setdefault(name, Node(name))
        node.partitions.append(part)
        node.cpus = max(node.cpus, int(cpus.rstrip("+")))
        node.mem_mb = max(node.mem_mb, int(mem.rstrip("+")))
        node.gpus = max(node.gpus, gres_gpus(gres))
    if not nodes:
        raise SlurmError("SLURM: `sinfo` lists no nodes")
    return list(nodes.values()), default


def read_config() -> dict[str, str]:
    """``scontrol show config`` as a dict (empty when it fails)."""
    proc = _run(["scontrol", "show", "config"])
    conf = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        key, sep, value = line.partition("=")
        if sep:
            conf[key.strip()] = value.strip()
    return conf


def _seconds(value: str | None) -> int | None:
    try:
        return int(str(value).split()[0])
    except (TypeError, ValueError, IndexError):
        return None


def check_status_polling(conf: dict, status_command: str, init_seconds: int) -> list[str]:
    """Problems that would make snakemake wait forever for jobs whose state it cannot see."""
    accounting = conf.get("AccountingStorageType", "accounting_storage/none") != "accounting_storage/none"
    if accounting:
        return []
    if status_command == "sacct":
        return ["status polling: slurm-status-command is 'sacct' but the cluster has no accounting storage "
                "(AccountingStorageType=accounting_storage/none): use `slurm-status-command: squeue`"]
    min_age = _seconds(conf.get("MinJobAge"))
    if min_age is not None and min_age < 3 * init_seconds and shutil.which("sacct"):
        return [f"status polling: MinJobAge={min_age}s is below 3 x slurm-init-seconds-before-status-checks "
                f"({init_seconds}s), so the slurm plugin falls back to 'sacct', which fails without accounting storage: "
                f"set slurm-init-seconds-before-status-checks to at most {max(1, min_age // 3)}"]
    return []


def check_account(account: str | None, no_account: bool, accounting: bool) -> list[str]:
    """The account exists for this user (only checkable with accounting storage; without, -A is not enforced)."""
    if no_account or not accounting:
        return []
    user = getpass.getuser()
    if account:
        proc = _run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=account"])
        if proc.returncode != 0:
            return []  # cannot check; sbatch --test-only below will
        known = sorted({a.strip() for a in proc.stdout.split() if a.strip()})
        if known and account not in known:
            return [f"account: '{account}' (slurm_account) is not one of yours: {', '.join(known)}"]
        return []
    proc = _run(["sacctmgr", "-n", "-P", "show", "user", user, "format=defaultaccount"])
    if proc.returncode == 0 and not proc.stdout.strip():
        return [f"account: none set and user '{user}' has no default account: set slurm_account under "
                "default-resources in profiles/slurm/config.yaml (`sacctmgr show assoc user=$USER` lists yours)"]
    return []


def _describe(job: Job) -> str:
    gpu = f", {job.gpus} GPU" if job.gpus else ""
    return f"{job.threads} CPUs, {job.mem_mb} MB{gpu}"


def check_fit(jobs: list[Job], nodes: list[Node], default: str | None, auto_partition: bool = False) -> list[str]:
    """Each rule's jobs fit some node of their partition; one line per rule that does not."""
    problems, hints, seen = [], [], set()
    known = {p for n in nodes for p in n.partitions}
    for part in sorted({j.partition for j in jobs if j.partition} - known):
        problems.append(f"partition '{part}' does not exist (sinfo lists: {', '.join(sorted(known))})")
        seen.add(part)
    for job in sorted(jobs, key=lambda j: (j.rule, -j.gpus, -j.mem_mb, -j.threads)):
        part = job.partition or (None if auto_partition else default)
        if job.rule in seen or part in seen:
            continue
        pool = [n for n in nodes if part is None or part in n.partitions]
        if any(n.cpus >= job.threads and n.mem_mb >= job.mem_mb and n.gpus >= job.gpus for n in pool):
            continue
        seen.add(job.rule)
        where = f"partition '{part}'" if part else "any partition"
        biggest = max(pool, key=lambda n: (n.gpus, n.mem_mb, n.cpus)) if pool else None
        offer = f"{biggest.cpus} CPUs, {biggest.mem_mb} MB, {biggest.gpus} GPUs (node {biggest.name})" if biggest else "no nodes"
        if job.gpus and not any(n.gpus for n in pool):
            hints.append(f"no GPU in {where}: send the GPU rules to a GPU partition (set-resources in "
                         "profiles/slurm/config.yaml), or run CPU-only with --config cpu_only=true")
        elif pool and job.mem_mb > max(n.mem_mb for n in pool):
            hints.append("too little memory: lower models.<m>.mem_mb in the config, or use a partition with bigger nodes")
        problems.append(f"{job.rule}{job.label} asks for {_describe(job)}; the largest node of {where} has {offer}")
    return problems + list(dict.fromkeys(hints))


def try_submit(job: Job, account: str | None) -> str | None:
    """``sbatch --test-only`` of ``job``: the scheduler's own verdict (None: it would be accepted)."""
    cmd = ["sbatch", "--test-only", "--job-name", "attnrank-preflight", f"--mem={job.mem_mb}",
           f"--cpus-per-task={job.threads}", "--ntasks=1", "--output=/dev/null"]
    if job.partition:
        cmd.append(f"--partition={job.partition}")
    if job.runtime:
        cmd.append(f"--time={int(job.runtime)}")
    if job.gpus:
        cmd.append(f"--gpus={job.gpus}")
    if account:
        cmd.append(f"--account={account}")
    proc = _run([*cmd, "--wrap", "true"])
    return None if proc.returncode == 0 else _first_line(proc)


def cluster_limits(nodes: list[Node], partitions: set[str] | None = None, partition_file: dict | None = None) -> Limits:
    """The largest node (of ``partitions``, if given), and no more than the partitions file's limits allow."""
    pool = [n for n in nodes if not partitions or set(n.partitions) & partitions] or nodes
    mem, cpus = max(n.mem_mb for n in pool), max(n.cpus for n in pool)
    if partition_file:
        limits_ = [p for p in (partition_file.get("partitions") or {}).values() if isinstance(p, dict)]
        file_mem = [p["max_mem_mb"] for p in limits_ if p.get("max_mem_mb")]
        file_cpus = [p["max_threads"] for p in limits_ if p.get("max_threads")]
        mem = min(mem, max(file_mem)) if file_mem else mem
        cpus = min(cpus, max(file_cpus)) if file_cpus else cpus
    return Limits(mem_mb=int(mem), threads=int(cpus))


def preflight(
    jobs_at,
    account: str | None = None,
    no_account: bool = False,
    status_command: str = "squeue",
    init_seconds: int = 40,
    partition_file: dict | None = None,
    partitions: set[str] | None = None,
) -> Limits:
    """Check the cluster before anything is submitted; set and return the resource limits it offers.

    ``jobs_at(limits)`` returns the :class:`Job` list sized under those limits (the workflow re-evaluates its
    resources). Raises :class:`SlurmError` listing every problem.
    """
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    if status_command == "sacct" and shutil.which("sacct") is None:
        missing.append("sacct")
    if missing:
        raise SlurmError(
            f"SLURM: command(s) {', '.join(missing)} not found on PATH: run snakemake --profile slurm on a login node "
            "of the cluster (without --profile slurm the workflow runs locally)"
        )
    nodes, default = read_nodes()
    conf = read_config()
    accounting = conf.get("AccountingStorageType", "accounting_storage/none") != "accounting_storage/none"
    problems = check_status_polling(conf, status_command, init_seconds)
    problems += check_account(account, no_account, accounting)
    used = set(partitions or ()) or ({default} if default and not partition_file else None)
    lim = cluster_limits(nodes, used, partition_file)
    set_limits(lim)
    jobs = jobs_at(lim)
    problems += check_fit(jobs, nodes, default, auto_partition=bool(partition_file))
    if not problems:
        largest: dict[str, Job] = {}
        for job in jobs:
            best = largest.get(job.rule)
            if best is None or (job.gpus, job.mem_mb, job.threads) > (best.gpus, best.mem_mb, best.threads):
                largest[job.rule] = job
        for rule, job in sorted(largest.items()):
            if partition_file and not job.partition:
                continue  # the plugin picks the partition per job; --test-only would try the default one
            verdict = try_submit(job, None if no_account else account)
            if verdict:
                problems.append(f"{rule}{job.label} ({_describe(job)}): sbatch --test-only says: {verdict}")
    if problems:
        raise SlurmError("SLURM preflight failed (nothing was submitted):\n  " + "\n  ".join(problems)
                         + "\n  (docs/cluster.md, section 'What the cluster needs')")
    return lim


def snakemake_preflight(workflow) -> Limits | None:
    """:func:`preflight` for a snakemake ``workflow`` that is about to submit with the slurm executor (else None).

    Called from the workflow's ``onstart``; the jobs are the DAG's jobs that will run (local rules excluded), with
    their resources re-evaluated under the limits found (without touching the jobs' own cached resources).
    """
    plugin = getattr(workflow, "executor_plugin", None)
    if plugin is None or plugin.name != "slurm":
        return None
    settings = workflow.executor_settings
    needrun = [j for j in workflow.dag.needrun_jobs() if not j.is_local]
    if not needrun:
        return None

    def evaluate(job):
        res = job.rule.expand_resources(job.wildcards_dict, job.input, job.attempt)
        return {name: res.get(name) for name in ("_cores", "mem_mb", "gpu", "runtime", "slurm_partition", "slurm_account")}

    def as_int(value, default=0):
        return int(value) if isinstance(value, (int, float)) or str(value).isdigit() else default

    def jobs_at(_limits):
        out = []
        for job in needrun:
            r = evaluate(job)
            wc = ", ".join(f"{k}={v}" for k, v in job.wildcards_dict.items())
            out.append(Job(
                rule=job.rule.name, mem_mb=as_int(r["mem_mb"]), threads=as_int(r["_cores"], 1), gpus=as_int(r["gpu"]),
                runtime=as_int(r["runtime"]) or None, partition=r["slurm_partition"] or None,
                label=f" ({wc})" if wc else "",
            ))
        return out

    first = evaluate(needrun[0])
    partition_file = None
    path = getattr(settings, "partition_config", None) or os.environ.get("SNAKEMAKE_SLURM_PARTITIONS")
    if path:  # the plugin picks each job's partition from this file (same precedence as the plugin)
        import yaml

        partition_file = yaml.safe_load(Path(path).read_text()) or {}
    partitions = {str(p) for p in (evaluate(j)["slurm_partition"] for j in needrun) if p}
    return preflight(
        jobs_at,
        account=first["slurm_account"] or None,
        no_account=bool(getattr(settings, "no_account", False)),
        status_command=getattr(settings, "status_command", None) or "sacct",
        init_seconds=int(getattr(settings, "init_seconds_before_status_checks", None) or 40),
        partition_file=partition_file,
        partitions=partitions or None,
    )
