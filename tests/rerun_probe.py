"""Snakemake's own view of the workflow, for tests/test_rerun.py (run as a subprocess, on a copy of the repo).

    python rerun_probe.py rules SPEC.json    -> {rule: {"script", "action", "params", "code"}}
    python rerun_probe.py touch SPEC.json    -> a completed run without running any job: {"outputs": n}
    python rerun_probe.py edits SPEC.json    -> {"rulegraph": [[up, down], ...], "scheduled": {file: {rule: n}}}

SPEC.json: {"snakefile", "workdir", "configfile", "profile", "files": [...], "probe": text}. ``edits`` appends
``probe`` to each file in turn, dry-runs (in this one process: snakemake is imported once) and restores the file.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from helpers import scheduled_jobs  # noqa: E402


def cli_args(spec: dict) -> list[str]:
    return [
        "-s", spec["snakefile"], "-d", spec["workdir"], "--configfile", spec["configfile"],
        "--replace-workflow-config", "--cores", "2", "--workflow-profile", spec["profile"],
    ]


def snakemake(args: list[str]) -> str:
    from snakemake.cli import main

    buf = io.StringIO()
    rc = 0
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            main(args)
        except SystemExit as e:
            rc = e.code or 0
    if rc:
        raise RuntimeError(f"snakemake {' '.join(args)} failed ({rc}):\n{buf.getvalue()[-4000:]}")
    return buf.getvalue()


def dry_run(args: list[str]) -> dict[str, int]:
    out = snakemake([*args, "-n"])
    return scheduled_jobs(type("P", (), {"stdout": out, "stderr": ""})())


def rulegraph(args: list[str]) -> list[tuple[str, str]]:
    dot = snakemake([*args, "--rulegraph"])
    labels = dict(re.findall(r"^\s*(\d+)\[label = \"([^\"]+)\"", dot, flags=re.M))
    return [(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)]


def rules(spec: dict) -> dict:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    out = {}
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[Path(spec["configfile"])], replace_workflow_config=True),
            snakefile=Path(spec["snakefile"]),
            workdir=Path(spec["workdir"]),
        )
        for r in wf._workflow.rules:
            script = str((Path(r.basedir) / r.script).resolve()) if r.script else None
            code = r.params.get("code") if "code" in r.params._names else None
            out[r.name] = {
                "script": script,
                "snakefile": str(r.snakefile),
                "action": bool(r.script or r.shellcmd or r.is_run or r.wrapper or r.notebook or r.template_engine),
                "params": list(r.params._names),
                "code": code if code is None or isinstance(code, str) else f"<{type(code).__name__}>",
            }
    return out


def touch(spec: dict) -> dict:
    """A completed run without running a job: every output of the DAG as an empty placeholder (a folder for
    ``directory()`` outputs), then ``snakemake --touch --forceall`` records each job's metadata (params included)
    exactly as a finished job would."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

    workdir = Path(spec["workdir"])
    n = 0
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[Path(spec["configfile"])], replace_workflow_config=True),
            snakefile=Path(spec["snakefile"]),
            workdir=workdir,
        )
        wf.dag(dag_settings=DAGSettings(forceall=True))
        workflow = wf._workflow
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        for job in workflow.dag.jobs:
            for f in job.output:
                path = workdir / str(f)
                if f.is_directory:
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.touch()
                n += 1
    snakemake([*cli_args(spec), "--touch", "--forceall"])
    return {"outputs": n}


def edits(spec: dict) -> dict:
    args = cli_args(spec)
    result = {"rulegraph": rulegraph(args), "scheduled": {}}
    before = dry_run(args)
    if before:
        raise RuntimeError(f"the completed run is not complete: {before}")
    for f in spec["files"]:
        path = Path(f)
        text = path.read_text()
        try:
            path.write_text(text + spec["probe"])
            result["scheduled"][f] = dry_run(args)
        finally:
            path.write_text(text)
    return result


if __name__ == "__main__":
    mode, spec_path = sys.argv[1:3]
    spec = json.loads(Path(spec_path).read_text())
    res = {"rules": rules, "touch": touch, "edits": edits}[mode](spec)
    print("\n@@RESULT@@" + json.dumps(res))
