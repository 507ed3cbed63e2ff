"""Paper tables: long-form CSV with significance, booktabs LaTeX per metric, and a latency table.

Each evaluation file holds per-query rows (qid, metric, value) plus identifying columns (dataset, retriever,
model, method); first-stage runs use model = "-" and method = the retriever name.

LaTeX layout (``metric_table``): one row per dataset plus an average row; column groups = first-stage retrievers,
then per model (and per first stage when re-rankers re-rank several) its methods, under ``\\multicolumn`` headers
with ``\\cmidrule``. Values x100; the best value of a row (as printed) in bold; a dagger marks a run significantly
better than its baseline, a down arrow one significantly worse (see ``significance``). Needs ``booktabs`` and
``graphicx``: a table wider than the line is shrunk to ``\\linewidth`` (never enlarged); more than ``WIDE_ABOVE``
value columns use ``table*`` (full width in two-column papers).
"""

from __future__ import annotations

import json

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from ..errors import InputError
from ..io import atomic_path, write_text
from .significance import FIRST_STAGE, FIRST_STAGE_MODEL, TestConfig, compare_to_baseline

log = logging.getLogger(__name__)

ID_COLS = ["dataset", "retriever", "model", "method"]
MARK_BETTER = r"$^{\dagger}$"
MARK_WORSE = r"$^{\downarrow}$"
# markers overhang into the column gap so that numbers stay aligned on the decimal point
_CELL_MARK = {MARK_BETTER: rf"\rlap{{{MARK_BETTER}}}", MARK_WORSE: rf"\rlap{{{MARK_WORSE}}}", "": ""}
WIDE_ABOVE = 8  # value columns: table* (both columns of a two-column paper) above this
LATENCY_WIDE_ABOVE = 3  # the cost table does not fit one column of a two-column paper with more columns
METRIC_NAMES = {"ndcg": "nDCG", "recall": "Recall", "mrr": "MRR", "map": "MAP", "precision": "P", "hits": "Hits", "hit_rate": "HR"}
LATENCY_REQUIRED = ("model", "method", "seconds_per_query")
# pseudo-metrics in results.csv that are no effectiveness (attnrank.attention.position.METRIC: its own plot), so not tabulated
DIAGNOSTIC_METRICS = ("position_bias",)


@dataclass(frozen=True)
class TableOrder:
    """Preferred order of rows / columns (config order); a run label ``icr@reversed`` sits with ``icr``; names not
    listed follow alphabetically."""

    datasets: tuple[str, ...] = ()
    retrievers: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()

    @staticmethod
    def sort(names: Iterable[str], preferred: Sequence[str]) -> list[str]:
        rank = {n: i for i, n in enumerate(preferred)}
        return sorted(set(names), key=lambda n: (rank.get(n, rank.get(str(n).partition("@")[0], len(rank))), n))


def collect(paths: list[str | Path]) -> pl.DataFrame:
    frames = [pl.read_parquet(p) for p in paths]
    if not frames:
        raise InputError("tables: no evaluation files given")
    return pl.concat(frames, how="vertical_relaxed")


CI_LEVEL = 0.95


def summarise(per_query: pl.DataFrame) -> pl.DataFrame:
    """Mean of every metric per run: columns dataset, retriever, model, method, metric, value, n_queries, std (over
    queries, ddof 1), ci_low, ci_high (95% Student-t interval of the mean; null with one query)."""
    from scipy.stats import t

    out = (
        per_query.group_by(ID_COLS + ["metric"])
        .agg(value=pl.col("value").mean(), n_queries=pl.col("qid").n_unique(), std=pl.col("value").std(ddof=1))
        .sort(ID_COLS + ["metric"])
    )
    n = out["n_queries"].to_numpy()
    quantile = t.ppf(0.5 + CI_LEVEL / 2, np.maximum(n - 1, 1))
    half = pl.Series(np.where(n > 1, quantile * out["std"].fill_null(0).to_numpy() / np.sqrt(n), np.nan)).fill_nan(None)
    return out.with_columns(ci_low=pl.col("value") - half, ci_high=pl.col("value") + half)


def results_frame(per_query: pl.DataFrame, baseline: str = FIRST_STAGE, cfg: TestConfig = TestConfig()) -> pl.DataFrame:
    """Long form: the summary plus baseline, its value, delta, n_pairs, p_value, p_holm, significant (null: untested)."""
    summary = summarise(per_query)
    sig = compare_to_baseline(per_query, baseline, cfg)
    base = summary.select("dataset", "metric", baseline_retriever="retriever", baseline_model="model",
                          baseline_method="method", baseline_value="value")
    out = summary.join(sig, on=ID_COLS + ["metric"], how="left").join(
        base, on=["dataset", "metric", "baseline_retriever", "baseline_model", "baseline_method"], how="left"
    )
    return out.with_columns(delta=pl.col("value") - pl.col("baseline_value")).select(
        ID_COLS + ["metric", "value", "n_queries", "std", "ci_low", "ci_high", "baseline_retriever", "baseline_model", "baseline_method", "baseline_value", "delta",
                   "n_pairs", "p_value", "p_holm", "significant"]
    ).sort(ID_COLS + ["metric"])


_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(s: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_ESCAPES.get(c, c) for c in str(s))


def metric_label(metric: str) -> str:
    """``ndcg@10`` -> ``nDCG@10``."""
    name, _, cut = metric.partition("@")
    return METRIC_NAMES.get(name, name) + (f"@{cut}" if cut else "")


def display_name(labels: Mapping[str, str] | None, name: str) -> str:
    """Display name of a config key: its ``label`` (``labels``), else the key. A run of a method in one of several
    prompt orders (``icr@reversed``) keeps its order: ``<label of icr>@reversed``."""
    labels = labels or {}
    if name in labels:
        return labels[name]
    base, sep, order = str(name).partition("@")
    return f"{labels[base]}@{order}" if sep and base in labels else name


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", s).strip("-")


@dataclass(frozen=True)
class _Group:
    label: str
    columns: list[tuple[str, str, str]]  # (retriever, model, method)


def _groups(sub: pl.DataFrame, order: TableOrder, labels: Mapping[str, str] | None = None) -> list[_Group]:
    runs = set(sub.select("retriever", "model", "method").unique().iter_rows())
    groups = []
    first = [r for r in runs if r[1] == FIRST_STAGE_MODEL]
    if first:
        meth = {r[2]: r for r in first}
        groups.append(_Group("First stage", [meth[m] for m in TableOrder.sort(meth, order.retrievers)]))
    rerank = [r for r in runs if r[1] != FIRST_STAGE_MODEL]
    retrievers = TableOrder.sort({r[0] for r in rerank}, order.retrievers)
    for model in TableOrder.sort({r[1] for r in rerank}, order.models):
        for ret in retrievers:
            methods = [r[2] for r in rerank if r[0] == ret and r[1] == model]
            if methods:
                label = (display_name(labels, model) if len(retrievers) == 1
                         else f"{display_name(labels, model)} ({display_name(labels, ret)})")
                groups.append(_Group(label, [(ret, model, m) for m in TableOrder.sort(methods, order.methods)]))
    return groups


def _fmt(v: float, scale: float, decimals: int) -> str:
    return f"{scale * v:.{decimals}f}"


def _begin(n_values: int, spec: str, caption: str, label: str, wide_above: int = WIDE_ABOVE) -> list[str]:
    env = "table*" if n_values > wide_above else "table"
    return [rf"\begin{{{env}}}[t]", r"\centering", r"\small", rf"\caption{{{caption}}}", rf"\label{{{label}}}",
            r"\sbox0{%", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]


def _end(n_values: int, wide_above: int = WIDE_ABOVE) -> list[str]:
    env = "table*" if n_values > wide_above else "table"
    # shrink to the line width only when wider (graphicx); narrower tables keep their font size
    return [r"\bottomrule", r"\end{tabular}}%", r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi",
            rf"\end{{{env}}}", ""]


def _baseline_text(baseline: str) -> str:
    if baseline == FIRST_STAGE:
        return "the first-stage run it re-ranks"
    b = latex_escape(baseline)
    return f"{b} (the same model's {b} run where one exists, else the {b} first stage)"


def metric_table(results: pl.DataFrame, metric: str, *, order: TableOrder = TableOrder(), baseline: str = FIRST_STAGE,
                 cfg: TestConfig = TestConfig(), label: str | None = None, scale: float = 100.0, decimals: int = 1,
                 labels: Mapping[str, str] | None = None, candidates: Mapping | None = None,
                 deviations: Mapping[str, Sequence[str]] | None = None) -> str:
    """Booktabs table of one metric from ``results_frame`` output (datasets as rows, run groups as columns).

    The best re-ranker per row (compared as printed, so ties are all bold; first stages only where a row has no
    re-ranker) in bold; the average row (only with >= 2 datasets) is the mean over datasets of each column that
    has every dataset, else "--". ``labels`` maps dataset / retriever / model / method keys to display names;
    ``candidates`` ({"depth": k, "retrievers": [...]}) puts the re-ranked depth and first stage in the caption;
    ``deviations`` ({method: [key, ...]}, ``protocol_deviation_keys``) where each paper-protocol row differs from
    its paper.
    """
    lab = lambda n: display_name(labels, n)  # noqa: E731
    sub = results.filter(pl.col("metric") == metric)
    if sub.is_empty():
        raise InputError(f"tables: no results for metric {metric!r} (have {sorted(results['metric'].unique())})")
    groups = _groups(sub, order, labels)
    columns = [c for g in groups for c in g.columns]
    reranker = [c[1] != FIRST_STAGE_MODEL for c in columns]
    datasets = TableOrder.sort(sub["dataset"].unique(), order.datasets)
    cell = {(r["dataset"], r["retriever"], r["model"], r["method"]): r for r in sub.iter_rows(named=True)}

    spec = "l" + "".join("r" * len(g.columns) for g in groups)
    caption = _caption(metric, baseline, cfg, bool(family_rows(row_groups(datasets))), scale, _candidates_text(candidates, lab))
    caption += _deviations_text(deviations, lab, set(sub["method"].unique()))
    lines = _begin(len(columns), spec, caption, label or f"tab:{_safe(metric)}")
    head, rules, start = [""], [], 2
    for g in groups:
        head.append(rf"\multicolumn{{{len(g.columns)}}}{{c}}{{{latex_escape(g.label)}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + len(g.columns) - 1}}}")
        start += len(g.columns)
    lines += [" & ".join(head) + r" \\", " ".join(rules)]
    lines.append(" & ".join(["Dataset"] + [latex_escape(lab(c[2])) for c in columns]) + r" \\")
    lines.append(r"\midrule")

    def row(name: str, values: list[float | None], marks: list[str]) -> str:
        shown = [None if v is None else _fmt(v, scale, decimals) for v in values]
        eligible = [i for i, s in enumerate(shown) if s is not None and reranker[i]]
        eligible = eligible or [i for i, s in enumerate(shown) if s is not None]  # a row without re-rankers
        best = max((float(shown[i]) for i in eligible), default=None)
        cells = [latex_escape(lab(name))]
        for i, (s, mark) in enumerate(zip(shown, marks)):
            if s is None:
                cells.append("--")
            else:
                cells.append((rf"\textbf{{{s}}}" if i in eligible and float(s) == best else s) + _CELL_MARK[mark])
        return " & ".join(cells) + r" \\"

    table_rows = row_groups(datasets)
    value = {}  # (row label, column) -> value of the row (a collapsed row: mean of its members, all needed)
    for label, members in table_rows:
        for c in columns:
            vals = [cell[(d, *c)]["value"] for d in members if (d, *c) in cell]
            value[(label, c)] = math.fsum(vals) / len(vals) if vals and len(vals) == len(members) else None
    for label, members in table_rows:
        marks = []
        for c in columns:
            r = cell.get((members[0], *c)) if len(members) == 1 else None  # a collapsed row carries no test marks
            marks.append("" if r is None or not r["significant"] else (MARK_BETTER if r["delta"] > 0 else MARK_WORSE))
        lines.append(row(label, [value[(label, c)] for c in columns], marks))
    for fam, fam_rows in family_rows(table_rows):
        avg = []
        for c in columns:
            vals = [value[(r, c)] for r in fam_rows]
            avg.append(None if any(v is None for v in vals) else math.fsum(vals) / len(vals))
        lines += [r"\midrule", row(f"Average ({fam})", avg, [""] * len(columns))]
    return "\n".join(lines + _end(len(columns)))


FAMILIES = ("BEIR", "TREC DL", "BRIGHT")
GROUPED = {"cqadupstack": "CQADupStack"}  # dataset-name prefix -> one table row (the mean of its members)


def dataset_family(name: str) -> str:
    """Benchmark family of a dataset (by its config name): ``bright-*`` BRIGHT, ``trec-dl*`` / ``dl19`` / ``dl20``
    TREC DL, everything else BEIR. Averages are taken per family, never across families."""
    n = name.lower()
    if n.startswith("bright"):
        return "BRIGHT"
    if n.startswith(("trec-dl", "dl19", "dl20", "msmarco-passage-trec-dl")):
        return "TREC DL"
    return "BEIR"


def row_groups(datasets: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Table rows as (label, member datasets): the CQADupStack forums (``cqadupstack-*``) collapse into one row
    ``CQADupStack`` (their mean, as BEIR reports it) at the place of the first forum; other datasets are their own row."""
    rows: list[tuple[str, list[str]]] = []
    grouped: dict[str, list[str]] = {}
    for d in datasets:
        prefix = next((p for p in GROUPED if d.lower().startswith(p + "-")), None)
        if prefix is None:
            rows.append((d, [d]))
        else:
            if prefix not in grouped:
                grouped[prefix] = []
                rows.append((GROUPED[prefix], grouped[prefix]))
            grouped[prefix].append(d)
    return rows


def family_rows(rows: Sequence[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """(family, row labels) for every family with at least two rows (a one-row family needs no average)."""
    fams: dict[str, list[str]] = {}
    for label, members in rows:
        fams.setdefault(dataset_family(members[0]), []).append(label)
    return [(f, fams[f]) for f in FAMILIES if len(fams.get(f, [])) > 1]


def _candidates_text(candidates: Mapping | None, lab=lambda n: n) -> str:
    """'Re-rankers re-rank the top-20 of bm25. ' from {"depth": 20, "retrievers": ["bm25"]} (empty without)."""
    if not candidates or "depth" not in candidates:
        return ""
    rets = ", ".join(latex_escape(lab(r)) for r in candidates.get("retrievers") or []) or "the first stage"
    return f"Re-rankers re-rank the top-{int(candidates['depth'])} of {rets}. " + latex_escape(lists_text(candidates, lab))


def lists_text(candidates: Mapping, lab=lambda n: n) -> str:
    """'Further candidate lists: bm25-200 = top-200 of bm25, 400 words. ' (empty without further lists)."""
    lists = candidates.get("lists") or {}
    if not lists:
        return ""
    parts = [f"{lab(n)} = top-{s['depth']} of {lab(s['retriever'])}"
             + (f", {s['max_doc_words']} words" if s.get("max_doc_words") else "") for n, s in lists.items()]
    return "Further candidate lists: " + "; ".join(parts) + ". "


def protocol_deviation_keys(sidecars: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """{method column: sorted keys its runs deviate from their paper protocol in} from the runs' ``.json``
    sidecars ({path: {method, ...}}; only runs that name a protocol)."""
    out: dict[str, set[str]] = {}
    for path, ids in sidecars.items():
        with open(path) as f:
            used = json.load(f)
        if not used.get("protocol"):
            continue
        keys = out.setdefault(ids["method"], set())
        for d in used.get("protocol_deviations") or []:
            keys.add(d.split(" (")[0] if d.startswith("not comparable: ") else d.split(":")[0])
    return {m: sorted(k) for m, k in out.items()}


def _deviations_text(deviations: Mapping[str, Sequence[str]] | None, lab, present: set[str]) -> str:
    rows = {m: k for m, k in (deviations or {}).items() if m in present}
    if not rows:
        return ""
    parts = [f"{latex_escape(lab(m))}: {', '.join(latex_escape(x) for x in k) if k else 'none'}" for m, k in sorted(rows.items())]
    return (" Where paper-protocol rows differ from their paper (keys; each run's .json lists the values): "
            + "; ".join(parts) + ".")


def _caption(metric: str, baseline: str, cfg: TestConfig, average: bool, scale: float, rerank_text: str = "") -> str:
    unit = rf" ($\times${scale:g})" if scale != 1 else ""
    return (
        f"{latex_escape(metric_label(metric))}{unit} of first-stage retrievers and re-rankers. {rerank_text}"
        "Best re-ranker per row in bold. "
        rf"{MARK_BETTER}/{MARK_WORSE}: significantly better/worse than {_baseline_text(baseline)} "
        f"({cfg.describe()}, Holm-corrected over the runs tested on each dataset, $p \\leq {cfg.alpha:g}$)."
        + (" Average: mean over the datasets of one benchmark family (BEIR, TREC DL, BRIGHT; CQADupStack is the"
           " mean of its forums and counts once)." if average else "")
    )


COUNT = "count"  # format of counts: an integer as an integer ("1"), a fractional mean with one decimal ("91.3")


def fmt_num(v: float | None, fmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "--"
    if fmt == COUNT:
        return format(int(round(v)), ",d") if float(v).is_integer() else format(v, ",.1f")
    return format(v, fmt)


def latency_table(latency: pl.DataFrame, effectiveness: pl.DataFrame | None = None, metric: str = "ndcg@10", *,
                  order: TableOrder = TableOrder(), label: str = "tab:latency", labels: Mapping[str, str] | None = None) -> str:
    """Booktabs cost table: one row per (model, method), grouped by model; the best value per model in bold.

    ``latency`` has columns model, method, seconds_per_query and optionally forward_passes_per_query,
    generated_tokens_per_query, peak_mem_bytes, device, n_queries (``attnrank.evaluation.latency`` CSVs). ``effectiveness``
    (``results_frame`` output) adds the metric averaged over datasets, for the first configured first stage.
    """
    missing = [c for c in LATENCY_REQUIRED if c not in latency.columns]
    if missing:
        raise InputError(f"latency CSV: missing column(s) {missing}")
    dup = latency.group_by("model", "method").len().filter(pl.col("len") > 1)
    if dup.height:
        raise InputError(f"latency CSV: several rows for (model, method) {dup.select('model', 'method').row(0)}")
    # (key, header, format, better: "min" | "max" | "" = not bolded)
    cols: list[tuple[str, str, str, str]] = [("seconds_per_query", "ms/q", ",.1f", "min")]
    lat = latency.with_columns(seconds_per_query=pl.col("seconds_per_query").cast(pl.Float64) * 1000)
    for key, head, fmt, better in (("forward_passes_per_query", "Passes", COUNT, ""),
                                   ("generated_tokens_per_query", "Tokens", COUNT, ""),
                                   ("peak_mem_bytes", "Mem (GiB)", ".2f", "min")):
        if key in lat.columns and lat[key].drop_nulls().len():
            lat = lat.with_columns(pl.col(key).cast(pl.Float64))
            cols.append((key, head, fmt, better))
    if "peak_mem_bytes" in lat.columns:
        lat = lat.with_columns(peak_mem_bytes=pl.col("peak_mem_bytes") / 2**30)
    if effectiveness is not None:
        eff = effectiveness.filter((pl.col("metric") == metric) & (pl.col("model") != FIRST_STAGE_MODEL))
        if eff.height:
            ret = TableOrder.sort(eff["retriever"].unique(), order.retrievers)[0]
            eff = eff.filter(pl.col("retriever") == ret).group_by("model", "method").agg(effect=pl.col("value").mean() * 100)
            lat = lat.join(eff, on=["model", "method"], how="left")
            cols.append(("effect", latex_escape(metric_label(metric)), ".1f", "max"))
    rows = {(r["model"], r["method"]): r for r in lat.iter_rows(named=True)}
    caption = _latency_caption(latency, [c[0] for c in cols], metric)
    lines = _begin(len(cols), "ll" + "r" * len(cols), caption, label, wide_above=LATENCY_WIDE_ABOVE)
    lines += [" & ".join(["Model", "Method"] + [c[1] for c in cols]) + r" \\", r"\midrule"]
    models = TableOrder.sort(lat["model"].unique(), order.models)
    for i, model in enumerate(models):
        methods = TableOrder.sort([m for (mo, m) in rows if mo == model], order.methods)
        best = {}
        for key, _, fmt, better in cols:
            shown = [fmt_num(rows[(model, m)][key], fmt) for m in methods]
            nums = [float(s.replace(",", "")) for s in shown if s != "--"]
            if better and len(nums) > 1 and min(nums) != max(nums):
                best[key] = format(max(nums) if better == "max" else min(nums), fmt)
        if i:
            lines.append(r"\midrule")
        for j, m in enumerate(methods):
            cells = [latex_escape(display_name(labels, model)) if j == 0 else "", latex_escape(display_name(labels, m))]
            for key, _, fmt, _ in cols:
                s = fmt_num(rows[(model, m)][key], fmt)
                cells.append(rf"\textbf{{{s}}}" if best.get(key) == s else s)
            lines.append(" & ".join(cells) + r" \\")
    return "\n".join(lines + _end(len(cols), wide_above=LATENCY_WIDE_ABOVE))


_LATENCY_WORDS = {"seconds_per_query": "ms/q = wall time per query in ms", "forward_passes_per_query": "Passes = forward passes per query",
                  "generated_tokens_per_query": "Tokens = generated tokens per query", "peak_mem_bytes": "Mem = peak memory"}


def _latency_caption(latency: pl.DataFrame, keys: list[str], metric: str) -> str:
    where = ""
    if "device" in latency.columns and latency["device"].n_unique() == 1:
        where = f" on {latex_escape(latency['device'][0])}"
    if "n_queries" in latency.columns and latency["n_queries"].n_unique() == 1:
        where += f" ({latency['n_queries'][0]} sampled queries)"
    words = [_LATENCY_WORDS[k] for k in keys if k in _LATENCY_WORDS]
    if "effect" in keys:
        words.append(f"{latex_escape(metric_label(metric))} ($\\times$100) = mean over datasets")
    return f"Cost per query{where}: " + "; ".join(words) + ". Fastest, least memory and most effective per model in bold."


NO_LATENCY = "% no latency measurements were given to the tables rule\n"


def write_tables(eval_paths: list[str | Path], out_dir: str | Path, metric: str, *, metrics: Sequence[str] = (),
                 baseline: str = FIRST_STAGE, significance: dict | TestConfig | None = None,
                 latency_paths: Sequence[str | Path] = (), order: TableOrder = TableOrder(),
                 labels: Mapping[str, str] | None = None, candidates: Mapping | None = None,
                 deviations: Mapping[str, Sequence[str]] | None = None) -> pl.DataFrame:
    """Write results.csv (long form), results.tex (every metric), main.tex (``metric``) and latency.tex.

    latency.tex holds only a LaTeX comment when no latency CSV is given. ``labels``: display names;
    ``candidates``: the re-ranked depth and first stages, for the captions. Returns the long-form frame.
    """
    cfg = significance if isinstance(significance, TestConfig) else TestConfig.from_config(significance)
    results = results_frame(collect(eval_paths), baseline, cfg)
    present = set(results["metric"].unique())
    if metric not in present:
        raise InputError(f"config key 'evaluation.main_metric': {metric!r} was not evaluated (have {sorted(present)})")
    ordered = [metric] + [m for m in TableOrder.sort(present, metrics) if m not in (metric, *DIAGNOSTIC_METRICS)]
    out = Path(out_dir)
    with atomic_path(out / "results.csv") as tmp:
        results.write_csv(tmp)
    kw = dict(order=order, baseline=baseline, cfg=cfg, labels=labels, candidates=candidates, deviations=deviations)
    write_text(out / "results.tex", "\n".join(metric_table(results, m, **kw) for m in ordered))
    write_text(out / "main.tex", metric_table(results, metric, label="tab:main", **kw))
    frames = [pl.read_csv(p) for p in latency_paths]
    lat = (latency_table(pl.concat(frames, how="diagonal_relaxed"), results, metric, order=order, labels=labels)
           if frames else NO_LATENCY)
    write_text(out / "latency.tex", lat)
    return results
