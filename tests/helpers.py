"""Shared helpers for the workflow tests: run snakemake on a config in a temp folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True, env: dict | None = None,
              new_session: bool = False) -> subprocess.CompletedProcess:
    """Run snakemake with ``config`` (replacing config.yaml) in ``workdir``, results in ``workdir/results`` unless
    ``config`` sets ``results_dir``; return the completed process.

    ``new_session``: snakemake leads its own process group (a test may then SIGKILL the whole run)."""
    cfg = workdir / "config.test.yaml"
    # results_dir: the tests read results/ (unset, it would be results/config.test, from the file's name)
    cfg.write_text(yaml.safe_dump({"results_dir": "results", **config}))
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
        "--configfile", str(cfg), "--replace-workflow-config", "--cores", "2",
        "--workflow-profile", str(REPO / "profiles" / "default"), *args,
    ]
    full_env = {**os.environ, "ATTNRANK_CACHE": str(REPO / ".cache"), **(env or {})}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=full_env, start_new_session=new_session)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def scheduled_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Parse the 'Job stats' table of a (dry) run into {rule: count}."""
    out, stats, on = proc.stdout + proc.stderr, {}, False
    for line in out.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            on = True
            continue
        if on:
            if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
                stats[parts[0]] = int(parts[1])
            elif parts and parts[0] == "total":
                break
    return stats


def stdlib_import_closure(src: Path, script: Path | None = None, module: str | None = None, package: str = "attnrank") -> set[str]:
    """Modules of ``package`` (under ``src``) that a script or module imports, transitively, according to the
    standard library's ``modulefinder`` (a bytecode scan; independent of ``attnrank.codehash``)."""
    import modulefinder

    class Finder(modulefinder.ModuleFinder):
        # stdlib quirk: after a failed `import io` (stdlib modules are outside the search path), the name is
        # "bad" and a relative `from .io import x` is skipped; retry relative imports
        def _safe_import_hook(self, name, caller, fromlist, level=-1):
            saved = self.badmodules.pop(name, None) if level > 0 else None
            try:
                super()._safe_import_hook(name, caller, fromlist, level=level)
            finally:
                if saved:
                    self.badmodules.setdefault(name, {}).update(saved)

    mf = Finder(path=[str(src)])
    if script is not None:
        mf.run_script(str(script))
    if module is not None:
        mf.import_hook(module)
    return {m for m in mf.modules if m.split(".")[0] == package}
