"""The package's shape: no import cycle (module- or function-level), and the CPU stages that aggregate cached
attention scores (config validation, the workflow plan, reading score caches, ranking by every attention method)
never import torch, transformers or scipy.stats (seconds of start-up in every job)."""

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl

from attnrank import io
from attnrank.attention import scorecache
from attnrank.selection import heads, headrank

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "attnrank"


def package_imports(root: Path = PACKAGE) -> dict[str, set[str]]:
    """{module: package modules it imports}, every import statement counted (also those inside functions)."""
    mods = {}
    for p in root.rglob("*.py"):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    graph = {}
    for name, p in mods.items():
        pkg = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
                mod = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
                for a in node.names:
                    deps.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (c := visit(w)):
                return c
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (c := visit(v)):
            return c
    return None


def test_cycle_finder_finds_function_level_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import x\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    graph = package_imports(pkg)
    assert graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("")
    assert find_cycle(package_imports(pkg)) is None


def test_package_import_graph_has_no_cycle():
    graph = package_imports()
    assert len(graph) > 30
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_reading_caches_and_ranking_by_attention_methods_imports_no_torch(tmp_path, tiny_llama_dir):
    """A real score cache (tiny model), then in a fresh interpreter: validate and plan the demo config, read the
    cache, load every attention kind's artifacts and rank and describe with each: torch is never imported."""
    from test_scorecache import make_candidates

    cache = scorecache.compute_cache(tiny_llama_dir, make_candidates(), tmp_path / "cache", {}, shard_size=2,
                                     token_scores=True, progress=False)
    n_layers, n_heads = 3, 4
    rng = np.random.default_rng(0)
    table = heads.head_table({c: rng.random((n_layers, n_heads)) for c in ("qr_mass", "qrhead", "core")})
    io.write_parquet(table, tmp_path / "heads.parquet")
    io.write_parquet(pl.DataFrame({"layer": [0, 1, 2], "ndcg@10": [0.1, 0.5, 0.3]}), tmp_path / "profile.parquet")
    w = np.full((n_layers, n_heads), 1.0 / (n_layers * n_heads))
    headrank.save_weights(headrank.TrainResult(w, [(0, 1), (1, 2)], 2, [1.0], 0.0, "zscore"), tmp_path / "w.json")
    files = {"heads": str(tmp_path / "heads.parquet"), "profile": str(tmp_path / "profile.parquet"),
             "weights": str(tmp_path / "w.json")}
    specs = {"icr": {"kind": "icr"}, "qrhead": {"kind": "qrhead", "k_heads": 2}, "qr-mass": {"kind": "qr-mass", "k_heads": 2},
             "core": {"kind": "core", "k_heads": 2}, "selective": {"kind": "selective", "width": 2},
             "headrank": {"kind": "headrank"}, "pruned": {"kind": "icr", "calibration": "na", "max_layer": 1}}
    repo = Path(__file__).resolve().parents[1]
    code = textwrap.dedent(f"""
        import json, sys
        import attnrank.attention.artifacts as artifacts
        import attnrank.attention.attnrun  # the rerank_attention job's module (position bias included)
        import attnrank.config as config
        import attnrank.attention.methods as methods
        import attnrank.plan as plan
        import attnrank.attention.scorecache as scorecache
        cfg = config.read_yaml({str(repo / "config" / "demo.yaml")!r})
        plan.Plan(config.validate(cfg, check_files=False), validated=True).all_outputs()
        scores = scorecache.load_scores({str(cache)!r})
        out = {{}}
        for name, spec in json.loads({json.dumps(json.dumps(specs))}).items():
            needs = methods.needs(spec["kind"])
            inputs = {{k: v for k, v in json.loads({json.dumps(json.dumps(files))}).items()
                       if {{"heads": "heads", "profile": "window", "weights": "weights"}}[k] in needs}}
            art = artifacts.load_artifacts(spec, inputs, name)
            run = methods.rank(scores, spec["kind"], spec, art, name=name, n_layers=3)
            out[name] = [run.height, methods.describe(spec["kind"], spec, art, name=name, n_layers=3)["layers_needed"]]
        heavy = sorted(m for m in ("torch", "transformers", "accelerate", "scipy.stats") if m in sys.modules)
        print(json.dumps({{"heavy": heavy, "out": out}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [], f"imported {got['heavy']}"
    assert set(got["out"]) == set(specs) and all(n == 14 for n, _ in got["out"].values())  # 5 queries, 14 documents
    assert got["out"]["pruned"][1] == 2 and got["out"]["headrank"][1] == 2 and got["out"]["selective"][1] == 3
