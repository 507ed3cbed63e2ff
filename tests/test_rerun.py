"""Reruns follow the code: every rule carries the hash of the code it runs, and editing any module of the package
or any script schedules exactly the rules whose code imports it, plus the rules downstream of them.

The expected rules come from Snakemake's own view (each rule's script, the rule graph) and from the standard
library's ``modulefinder`` (its own bytecode scan of imports), not from ``attnrank.codehash``. The completed run
is made with ``snakemake --touch`` over placeholder outputs: Snakemake records every job (params included) as
after a real run, in seconds; what reruns depends on those records, not on the outputs' content.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from attnrank import codehash
from helpers import REPO, stdlib_import_closure

PROBE = Path(__file__).with_name("rerun_probe.py")
# a tiny grid that instantiates every rule of the workflow
CONFIG = {
    "results_dir": "results",  # the tests read results/ (the default would be results/config.test)
    "cache_dir": ".cache",
    "datasets": {
        "tiny": {"source": "synthetic", "split": "test", "n_docs": 48, "n_queries": 4},
        "tiny-train": {"source": "synthetic", "split": "train", "n_docs": 48, "n_queries": 6, "evaluate": False},
    },
    "retrievers": {"bm25": {"kind": "bm25", "depth": 20}},
    "candidates": {"depth": 4, "max_doc_words": 30, "retrievers": ["bm25"]},
    "models": {"tiny-llama": {"source": "tiny", "arch": "llama"}},
    "prompt": {"max_doc_tokens": 30},
    "engine": {"shard_size": 2},
    "detection": {"dataset": "tiny-train", "retriever": "bm25", "n_queries": 4, "n_negatives": 3, "positions": 2},
    "tuning": {"dataset": "tiny-train", "retriever": "bm25"},
    "methods": {
        "icr": {"kind": "icr"},
        "qr": {"kind": "qrhead", "k_heads": 2},
        "selective": {"kind": "selective", "width": 1},
        "headrank": {"kind": "headrank", "steps": 5},
        "yesno": {"kind": "yesno"},
    },
    "latency": {"dataset": "tiny", "retriever": "bm25", "n_queries": 2, "seed": 0},
    "evaluation": {"metrics": ["ndcg@10", "bpref"]},  # bpref: ranx computes it, so ranx_warmup is in the DAG
    # a published-table mapping (a stand-in cell), so published_table is in the DAG
    "published": {"file": str(REPO / "data" / "published" / "core-beir.csv"), "table": 3,
                  "dataset": {"tiny": "trec-covid"}, "model": {"tiny-llama": "Llama-3.1-8B-Instruct"},
                  "method": {"icr": "ICR"}, "first_stage": {"bm25": "granite-embedding-30m-english"},
                  "note": "stand-in mapping for the rerun probe"},
}


def copy_repo(dst: Path) -> Path:
    """The parts of the repository a run needs, without caches."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake")
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "config.yaml", "workflow", "src", "profiles", "config", "envs"):
        src = REPO / name
        (shutil.copytree(src, dst / name, ignore=ignore) if src.is_dir() else shutil.copy2(src, dst / name))
    return dst


def probe(mode: str, repo: Path, workdir: Path, files=(), timeout: int = 900) -> dict:
    cfg = workdir / "config.test.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    spec = {
        "snakefile": str(repo / "Snakefile"), "workdir": str(workdir), "configfile": str(cfg),
        "profile": str(repo / "profiles" / "default"), "files": [str(f) for f in files], "probe": "\n_CODE_PROBE = 1\n",
    }
    (workdir / f"probe-{mode}.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "ATTNRANK_CACHE": str(REPO / ".cache")}
    proc = subprocess.run(
        [sys.executable, str(PROBE), mode, str(workdir / f"probe-{mode}.json")], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return json.loads(proc.stdout.split("@@RESULT@@", 1)[1])


def rules_in_smk_files(repo: Path) -> set[str]:
    names = set()
    for f in (repo / "workflow" / "rules").glob("*.smk"):
        names |= set(re.findall(r"^(?:rule|checkpoint)\s+(\w+)\s*:", f.read_text(), flags=re.M))
    return names


def test_every_rule_carries_the_hash_of_its_code(tmp_path):
    rules = probe("rules", REPO, tmp_path)
    assert rules_in_smk_files(REPO) <= set(rules), "snakemake did not load every rule of workflow/rules"
    missing = [name for name, r in rules.items() if r["action"] and "code" not in r["params"]]
    assert not missing, f"rules without a `code=script_code(...)` param: {missing}"
    checked = 0
    for name, r in rules.items():
        if r["script"] and isinstance(r["code"], str) and not r["code"].startswith("<"):
            assert r["code"] == codehash.script_code_hash(r["script"]), f"rule {name}: code param is not its script's hash"
            checked += 1
    assert checked >= len(rules) // 2


def modulefinder_closure(script: Path, src: Path) -> set[Path]:
    """Files of the package that ``script`` imports, transitively, according to the standard library."""
    files = set()
    for name in stdlib_import_closure(src, script=script):
        base = src.joinpath(*name.split("."))
        files.add((base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py").resolve())
    return files


# rule-graph edges into rules that read some jobs of the upstream rule, not all (plots.smk: heat maps and layer
# profiles read the sidecars of the methods that use that head table / profile)
PARTIAL_EDGES = {("rerank_attention", "head_plots"), ("rerank_attention", "layer_plot")}


def downstream(rules: set[str], edges: list[tuple[str, str]]) -> set[str]:
    out, todo = set(), set(rules)
    while todo:
        r = todo.pop()
        if r not in out:
            out.add(r)
            todo |= {b for a, b in edges if a == r}
    return out


@pytest.mark.slow
def test_editing_any_module_or_script_reruns_exactly_the_rules_that_run_it(tmp_path):
    repo, wd = copy_repo(tmp_path / "repo"), tmp_path / "wd"
    wd.mkdir()
    probe("touch", repo, wd)  # a completed run (outputs and Snakemake's job records) without running the jobs
    src = repo / "src"
    files = sorted(p.resolve() for p in (src / "attnrank").rglob("*.py")) + sorted((repo / "workflow" / "scripts").glob("*.py"))
    rules = probe("rules", repo, wd)
    res = probe("edits", repo, wd, files)
    imports = {name: modulefinder_closure(Path(r["script"]), src) | {Path(r["script"]).resolve()} for name, r in rules.items() if r["script"]}
    rows, wrong = [], []
    for f in files:
        got = res["scheduled"][str(f)]
        edited = {name for name, files_ in imports.items() if f.resolve() in files_}
        expected = downstream(edited, res["rulegraph"])
        # a figure reads the runs of only the methods that use its head table / layer profile: an edit that reruns
        # other methods' runs may leave it alone (every other rule aggregates all runs of its upstream rule)
        must = downstream(edited, [e for e in res["rulegraph"] if tuple(e) not in PARTIAL_EDGES])
        rel = f.relative_to(src) if f.is_relative_to(src) else f.relative_to(repo)
        rows.append(f"| {rel} | {', '.join(f'{k} {v}' for k, v in got.items()) or '(nothing)'} |")
        if not must <= set(got) <= expected:
            wrong.append(f"{rel}: scheduled {sorted(got)}, expected {sorted(must)} (and maybe {sorted(expected - must)})")
    print("\n| module or script edited | rules scheduled (jobs) |\n|---|---|\n" + "\n".join(rows))
    assert not wrong, "\n".join(wrong)
    # every rule that runs code is rerun by an edit of its own script
    assert {r for s in res["scheduled"].values() for r in s} >= {n for n, r in rules.items() if r["script"]}
