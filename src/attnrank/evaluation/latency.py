"""Latency and memory benchmark helpers (per model x method, on a fixed sample of queries).

- ``measure(fn, *args)``: wall seconds and peak memory of one call. On GPU: ``torch.cuda.max_memory_allocated``
  after a reset (kind ``cuda_max_allocated``). On CPU: the process's peak RSS during the call — Linux lets a
  process reset its high-water mark (``/proc/self/clear_refs`` ← 5, then ``VmHWM``; kind ``cpu_peak_rss``);
  elsewhere RSS is sampled by a thread every 2 ms (kind ``cpu_peak_rss_sampled``).
- ``time_method(callable_per_query, queries, n)``: generic; any method (attention with real truncation, or the
  generation / likelihood re-rankers through ``benchmark_rerank``) is timed the same way. A callable may return a
  dict of counters (forward passes, generated tokens), which land in its row.
- ``summarize`` → one row per (model, method); ``write_latency_csv``; ``plot_tradeoff`` (nDCG@10 against seconds per
  query, one panel per model, one marker per method).
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any, Callable, Sequence

import polars as pl
import torch

from ..errors import InputError
from ..io import atomic_path, save_figure

LATENCY_COLUMNS = [
    "model", "method", "device", "n_queries", "seconds_per_query", "seconds_median", "seconds_total",
    "forward_passes_per_query", "generated_tokens_per_query", "prompt_tokens_per_query", "peak_mem_bytes", "mem_kind",
]


def _resolve_device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class _RssSampler:
    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, _rss(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())


def measure(fn: Callable, *args, device: str | torch.device | None = None, **kwargs) -> dict[str, Any]:
    """Run ``fn(*args, **kwargs)`` once: ``{seconds, peak_mem_bytes, mem_kind, device, result}``."""
    dev = _resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - t0
        peak, kind = int(torch.cuda.max_memory_allocated(dev)), "cuda_max_allocated"
    elif _reset_hwm() and _vm_hwm() is not None:
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        seconds = time.perf_counter() - t0
        peak, kind = int(_vm_hwm()), "cpu_peak_rss"
    else:
        with _RssSampler() as s:
            t0 = time.perf_counter()
            result = fn(*args, **kwargs)
            seconds = time.perf_counter() - t0
        peak, kind = s.peak, "cpu_peak_rss_sampled"
    return {"seconds": seconds, "peak_mem_bytes": peak, "mem_kind": kind, "device": str(dev), "result": result}


def sample_queries(queries: Sequence, n: int | None, seed: int = 0) -> list:
    """A fixed sample of ``n`` queries (seeded; kept in input order); all when ``n`` is None or >= len."""
    if n is not None and (not isinstance(n, int) or n < 1):
        raise InputError(f"latency.n_queries: expected a positive integer or null, got {n!r}")
    items = list(queries)
    if n is None or n >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def _label(q) -> str:
    return str(q[0]) if isinstance(q, (tuple, list)) and q else str(q)


def time_method(
    callable_per_query: Callable[[Any], Any],
    queries: Sequence,
    n: int | None = None,
    seed: int = 0,
    warmup: int = 1,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Time ``callable_per_query(q)`` on a fixed sample of ``n`` queries after ``warmup`` untimed calls.

    One row per query: qid (the first element of a tuple query), seconds, peak_mem_bytes, mem_kind, device, plus
    the numeric items of a dict the callable returns.
    """
    from ..progress import progress

    sample = sample_queries(queries, n, seed)
    for q in sample[: max(warmup, 0)]:
        callable_per_query(q)
    rows = []
    for q in progress(sample, "latency", unit="q"):
        m = measure(callable_per_query, q, device=device)
        row = {"qid": _label(q), "seconds": m["seconds"], "peak_mem_bytes": m["peak_mem_bytes"],
               "mem_kind": m["mem_kind"], "device": m["device"]}
        if isinstance(m["result"], dict):
            row.update({k: v for k, v in m["result"].items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in row})
        rows.append(row)
    return rows


def benchmark_rerank(method_kind: str, model, tokenizer, candidates: pl.DataFrame, params: dict | None = None,
                     n: int | None = None, seed: int = 0, warmup: int = 1) -> list[dict]:
    """``time_method`` for a generation / likelihood re-ranker; rows carry its per-query counters."""
    from ..text.lm import model_device
    from ..text.rerank import get_reranker, iter_queries
    from ..text.base import Stats

    fn = get_reranker(method_kind)

    def one(q) -> dict:
        _, query, docs = q
        st = Stats()
        fn(model, tokenizer, query, docs, params or {}, st)
        d = st.as_dict()
        return {k: d[k] for k in ("forward_passes", "generated_tokens", "prompt_tokens", "model_calls",
                                  "parse_failures", "empty_generations")}

    return time_method(one, iter_queries(candidates), n, seed, warmup, model_device(model))


def summarize(rows: list[dict], model: str, method: str) -> dict:
    """One latency row (``LATENCY_COLUMNS``) from per-query rows of ``time_method``."""
    if not rows:
        raise InputError(f"latency: no timed queries for model '{model}', method '{method}'")
    secs = sorted(r["seconds"] for r in rows)
    n = len(rows)
    mid = n // 2
    median = secs[mid] if n % 2 else (secs[mid - 1] + secs[mid]) / 2

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if key in r]
        return sum(vals) / len(vals) if vals else None

    return {
        "model": model, "method": method, "device": rows[0]["device"], "n_queries": n,
        "seconds_per_query": sum(secs) / n, "seconds_median": median, "seconds_total": sum(secs),
        "forward_passes_per_query": mean("forward_passes"), "generated_tokens_per_query": mean("generated_tokens"),
        "prompt_tokens_per_query": mean("prompt_tokens"),
        "peak_mem_bytes": max(r["peak_mem_bytes"] for r in rows), "mem_kind": rows[0]["mem_kind"],
    }


def latency_frame(summaries: list[dict]) -> pl.DataFrame:
    """Summary rows as a table with ``LATENCY_COLUMNS`` (missing counters null)."""
    schema = {c: (pl.String if c in ("model", "method", "device", "mem_kind") else pl.Float64) for c in LATENCY_COLUMNS}
    schema["n_queries"] = schema["peak_mem_bytes"] = pl.Int64
    return pl.DataFrame([{c: s.get(c) for c in LATENCY_COLUMNS} for s in summaries], schema=schema, orient="row")


def write_latency_csv(df: pl.DataFrame | list[dict], path: str | os.PathLike) -> None:
    """Write the latency table atomically (a list of summary rows is converted with ``latency_frame``)."""
    if isinstance(df, list):
        df = latency_frame(df)
    with atomic_path(path) as tmp:
        df.write_csv(tmp)


_MARKERS = "osD^v<>pP*Xhd"


def plot_tradeoff(df: pl.DataFrame, path: str | os.PathLike, metric: str = "ndcg@10",
                  x: str = "seconds_per_query", *, reference: dict[str, float] | None = None, title: str | None = None,
                  labels: dict[str, str] | None = None) -> None:
    """Effectiveness against cost: one panel per model, one marker per method (same marker across panels); a log
    x axis with plain-number ticks when the costs span more than a decade; ``reference`` ({label: value}, e.g.
    the first stage) as dashed horizontal lines; ``title`` above the panels. A PDF is written beside a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter


    missing = [c for c in ("model", "method", x, metric) if c not in df.columns]
    if missing:
        raise InputError(f"plot_tradeoff: table lacks column(s) {missing}")
    from .tables import display_name

    lab = lambda n: display_name(labels, n)  # noqa: E731
    df = df.filter(pl.col(x).is_not_null() & pl.col(metric).is_not_null()).sort(["model", "method"])
    models = df["model"].unique(maintain_order=True).to_list() or ["(none)"]
    methods = sorted(df["method"].unique().to_list())
    marker = {m: _MARKERS[i % len(_MARKERS)] for i, m in enumerate(methods)}
    color = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(models), figsize=(5.0 * len(models), 4.0), squeeze=False, sharey=True)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    for ax, model in zip(axes[0], models):
        sub = df.filter(pl.col("model") == model)
        for m in methods:
            pts = sub.filter(pl.col("method") == m)
            if pts.height:
                ax.scatter(pts[x].to_list(), pts[metric].to_list(), marker=marker[m], color=color[m], label=lab(m), s=50)
        for i, (name, value) in enumerate((reference or {}).items()):
            ax.axhline(value, color="0.3", linestyle=("--", ":", "-.")[i % 3], linewidth=1, label=name)
        xs = [v for v in sub[x].to_list() if v > 0]
        if xs and max(xs) / min(xs) > 10:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(lab(model))
        ax.set_xlabel("seconds per query" if x == "seconds_per_query" else x.replace("_", " "))
        ax.grid(alpha=0.3, which="major")
    axes[0][0].set_ylabel(metric.replace("ndcg", "nDCG"))
    handles = [plt.Line2D([], [], marker=marker[m], color=color[m], linestyle="", label=lab(m)) for m in methods]
    handles += [plt.Line2D([], [], color="0.3", linestyle=("--", ":", "-.")[i % 3], label=name)
                for i, name in enumerate(reference or {})]
    if handles:
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def benchmark_attention(kind: str, params: dict, artifacts: dict | None, model, tokenizer, candidates: pl.DataFrame,
                        prompt_cfg: dict | None = None, name: str | None = None, n: int | None = None, seed: int = 0,
                        warmup: int = 1) -> list[dict]:
    """``time_method`` for an attention method with real depth truncation: the engine runs only the layers the
    method needs (``methods.required_layers``) and the method aggregates its scores, per query.

    Rows carry ``forward_passes`` (1: the documents are read once), ``model_calls`` (2: the shared prefix, then the
    query and the "N/A" suffixes together on its KV cache) and ``layers`` (the layers computed).
    """
    from ..attention import methods
    from ..attention.engine import Scorer, iter_candidates

    n_layers = int(model.config.num_hidden_layers)
    layers = methods.required_layers(kind, dict(params), artifacts, n_layers) or n_layers
    # per-head token scores: masked calibration over a head subset / window needs them (as in the real pass)
    scorer = Scorer(model, tokenizer, prompt_cfg, layers=layers, batch_size=1, token_scores=True)

    def one(item) -> dict:
        qs = scorer.score([item])[0]
        methods.aggregate(qs, kind, dict(params), artifacts, name=name, n_layers=n_layers)
        return {"forward_passes": 1, "model_calls": 2, "generated_tokens": 0, "layers": layers,
                "prompt_tokens": int(qs.n_tokens.sum())}

    items = [(it.qid, it) for it in iter_candidates(candidates)]
    return time_method(lambda q: one(q[1]), items, n, seed, warmup, next(model.parameters()).device)



def method_inputs(inputs: dict, method: str) -> dict:
    """A method's artifact files among the latency job's inputs, which name them ``<method>__<key>``
    (``attnrank.plan.Plan.latency_inputs``): {key: path}."""
    return {k.split("__", 1)[1]: v for k, v in inputs.items() if k.startswith(f"{method}__")}


def benchmark_model(model_dir: str, candidates_path: str, method_specs: dict, family: dict, inputs: dict,
                    prompt_cfg: dict, sample: dict, model_name: str, out_csv: str) -> dict:
    """The ``latency`` job: load the model once and time every method on the same sample of queries (attention
    methods with real truncation; text methods as configured), one summary row per method in ``out_csv``."""
    import logging

    from .. import models
    from ..attention import artifacts as artifact_files
    from ..text import attnscoring

    cands = pl.read_parquet(candidates_path)
    model, tokenizer = models.load_model(model_dir)
    opts = {"n": sample["n_queries"], "seed": sample["seed"], "warmup": sample["warmup"]}
    summaries = []
    for name, spec in method_specs.items():
        spec = dict(spec)
        logging.getLogger("attnrank").info("timing %s", name)
        files = method_inputs(inputs, name)
        if family[name] == "attention":
            artifacts = artifact_files.load_artifacts(spec, files, name)
            rows = benchmark_attention(spec["kind"], spec, artifacts, model, tokenizer, cands, dict(prompt_cfg), name=name, **opts)
        else:
            params = attnscoring.text_params(name, spec, dict(prompt_cfg), files)
            rows = benchmark_rerank(spec["kind"], model, tokenizer, cands, params, **opts)
        summaries.append(summarize(rows, model_name, name))
    write_latency_csv(summaries, out_csv)
    return {"methods": len(summaries), "queries": opts["n"]}
