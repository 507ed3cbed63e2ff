"""What a researcher reads: HTML tables for the Snakemake report, the diagnostics table generated from the runs'
``.json`` sidecars, and the per-dataset effectiveness plot with confidence intervals.

HTML tables follow the LaTeX ones (``attnrank.evaluation.tables``): datasets as rows, first stages then each model's
re-rankers as columns, the best re-ranker per row in bold, a dagger / down arrow for a run significantly
better / worse than its baseline (Holm). Cells also show the 95% confidence interval of the mean.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import polars as pl

from ..errors import InputError
from ..io import atomic_path, save_figure, write_text
from .significance import FIRST_STAGE_MODEL
from .tables import COUNT, DIAGNOSTIC_METRICS, ID_COLS, TableOrder, fmt_num, display_name, latex_escape, lists_text, metric_label

_STYLE = (
    "<style>body{font-family:sans-serif;font-size:14px;margin:12px}"
    "table{border-collapse:collapse;margin:0 0 18px 0}.cap{max-width:1000px;margin:14px 0 4px 0}"
    "th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}"
    "th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #444}"
    ".ci{color:#777;font-size:11px}</style>"
)


def _page(title: str, body: str) -> str:
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{_STYLE}</head><body>{body}</body></html>\n"


def _lab(labels: Mapping[str, str] | None, name: str) -> str:
    return display_name(labels, name)


def run_groups(sub: pl.DataFrame, order: TableOrder = TableOrder(), labels: Mapping[str, str] | None = None
               ) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Column groups of a results frame: [("First stage", runs), (model label, its runs), ...]; a run is
    (retriever, model, method), in configured order."""
    runs = set(sub.select("retriever", "model", "method").unique().iter_rows())
    first = {r[2]: r for r in runs if r[1] == FIRST_STAGE_MODEL}
    groups = [("First stage", [first[m] for m in TableOrder.sort(first, order.retrievers)])] if first else []
    rer = [r for r in runs if r[1] != FIRST_STAGE_MODEL]
    rets = TableOrder.sort({r[0] for r in rer}, order.retrievers)
    for model in TableOrder.sort({r[1] for r in rer}, order.models):
        for ret in rets:
            ms = TableOrder.sort([r[2] for r in rer if r[:2] == (ret, model)], order.methods)
            if ms:
                name = _lab(labels, model) if len(rets) == 1 else f"{_lab(labels, model)} ({_lab(labels, ret)})"
                groups.append((name, [(ret, model, m) for m in ms]))
    return groups


def metric_html(results: pl.DataFrame, metric: str, *, order: TableOrder = TableOrder(),
                labels: Mapping[str, str] | None = None, caption: str = "", scale: float = 100.0) -> str:
    """One HTML table of ``metric`` from ``tables.results_frame`` output (as read back from results.csv)."""
    sub = results.filter(pl.col("metric") == metric)
    if sub.is_empty():
        raise InputError(f"report: no results for metric {metric!r}")
    groups = run_groups(sub, order, labels)
    cols = [c for _, cs in groups for c in cs]
    cell = {(r["dataset"], r["retriever"], r["model"], r["method"]): r for r in sub.iter_rows(named=True)}
    out = [f"<p class='cap'>{html.escape(caption)}</p><table><thead><tr><th></th>"]
    out += [f"<th colspan='{len(cs)}' style='text-align:center'>{html.escape(g)}</th>" for g, cs in groups]
    out.append("</tr><tr><th>Dataset (queries)</th>")
    out += [f"<th>{html.escape(_lab(labels, c[2]))}</th>" for c in cols]
    out.append("</tr></thead><tbody>")
    for d in TableOrder.sort(sub["dataset"].unique(), order.datasets):
        rows = [cell.get((d, *c)) for c in cols]
        shown = [None if r is None else f"{scale * r['value']:.1f}" for r in rows]
        eligible = [i for i, s in enumerate(shown) if s is not None and cols[i][1] != FIRST_STAGE_MODEL]
        eligible = eligible or [i for i, s in enumerate(shown) if s is not None]
        best = max((float(shown[i]) for i in eligible), default=None)
        nq = max((r["n_queries"] for r in rows if r is not None), default=0)
        out.append(f"<tr><td>{html.escape(_lab(labels, d))} ({nq})</td>")
        for i, (r, s) in enumerate(zip(rows, shown)):
            if r is None:
                out.append("<td>&ndash;</td>")
                continue
            txt = f"<b>{s}</b>" if i in eligible and float(s) == best else s
            if r.get("significant"):
                txt += "&dagger;" if (r.get("delta") or 0) > 0 else "&darr;"
            if r.get("ci_low") is not None and r.get("ci_high") is not None:
                txt += f"<br><span class='ci'>[{scale * r['ci_low']:.1f}, {scale * r['ci_high']:.1f}]</span>"
            out.append(f"<td>{txt}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def results_html(results: pl.DataFrame, metric: str, metrics: Sequence[str] = (), *, order: TableOrder = TableOrder(),
                 labels: Mapping[str, str] | None = None, candidates: Mapping | None = None) -> str:
    """A page with one table per metric (``metric`` first)."""
    present = set(results["metric"].unique())
    ordered = [metric] + [m for m in TableOrder.sort(present, metrics) if m not in (metric, *DIAGNOSTIC_METRICS)]
    depth = ""
    if candidates and "depth" in candidates:
        rets = ", ".join(_lab(labels, r) for r in candidates.get("retrievers") or [])
        depth = f" Re-rankers re-rank the top-{int(candidates['depth'])} of {rets}. {lists_text(candidates, lambda n: _lab(labels, n))}".rstrip()
    parts = []
    for m in ordered:
        cap = (f"{metric_label(m)} (x100) of first-stage retrievers and re-rankers.{depth} Best re-ranker per row in "
               "bold; \u2020/\u2193: significantly better/worse than the run it is tested against (Holm-corrected); "
               "[95% confidence interval of the mean over queries].")
        parts.append(metric_html(results, m, order=order, labels=labels, caption=cap))
    return _page("Results", "".join(parts))


def latency_html(latency: pl.DataFrame, metric: str = "ndcg@10", *, order: TableOrder = TableOrder(),
                 labels: Mapping[str, str] | None = None) -> str:
    """The cost table (``latency.csv``: model, method, seconds per query, passes, tokens, memory, the metric)."""
    cols = [("seconds_per_query", "ms / query", lambda v: fmt_num(None if v is None else 1000 * v, ",.1f")),
            ("forward_passes_per_query", "forward passes / query", lambda v: fmt_num(v, COUNT)),
            ("generated_tokens_per_query", "generated tokens / query", lambda v: fmt_num(v, COUNT)),
            ("peak_mem_bytes", "peak memory (GiB)", lambda v: fmt_num(None if v is None else v / 2**30, ".2f")),
            (metric, f"{metric_label(metric)} (x100)", lambda v: fmt_num(None if v is None else 100 * v, ".1f"))]
    cols = [c for c in cols if c[0] in latency.columns]
    where = ""
    if "device" in latency.columns and latency["device"].n_unique() == 1:
        where += f" on {latency['device'][0]}"
    if "n_queries" in latency.columns and latency["n_queries"].n_unique() == 1:
        where += f", {latency['n_queries'][0]} sampled queries"
    out = [f"<p class='cap'>{html.escape(f'Cost per query{where}.')}</p><table><thead><tr><th>Model</th><th>Method</th>"]
    out += [f"<th>{html.escape(h)}</th>" for _, h, _ in cols]
    out.append("</tr></thead><tbody>")
    for model in TableOrder.sort(latency["model"].unique(), order.models):
        sub = {r["method"]: r for r in latency.filter(pl.col("model") == model).iter_rows(named=True)}
        for m in TableOrder.sort(sub, order.methods):
            out.append(f"<tr><td>{html.escape(_lab(labels, model))}</td><td>{html.escape(_lab(labels, m))}</td>")
            out += [f"<td>{f(sub[m].get(k))}</td>" for k, _, f in cols]
            out.append("</tr>")
    out.append("</tbody></table>")
    return _page("Cost", "".join(out))


def grid_html(frame: pl.DataFrame, *, order: TableOrder = TableOrder(), labels: Mapping[str, str] | None = None,
              scale: float = 100.0) -> str:
    """The framework x mechanism grid (``grid.csv``, ``attnrank.evaluation.grid``): per model, dataset and first stage a table
    with frameworks as rows and mechanisms as columns, each cell the main metric, seconds per query and the method."""
    from .grid import FRAMEWORKS, MECHANISMS, chosen_cells

    if frame.is_empty():
        return _page("Grid", "<p class='cap'>No configured method has a cell of the framework x mechanism grid.</p>")
    parts = []
    keys = frame.select("model", "dataset", "retriever").unique().rows()
    rank = {k: {n: i for i, n in enumerate(TableOrder.sort({r[j] for r in keys}, pref))}
            for j, (k, pref) in enumerate((("model", order.models), ("dataset", order.datasets), ("retriever", order.retrievers)))}
    for model, dataset, retriever in sorted(keys, key=lambda r: (rank["model"][r[0]], rank["dataset"][r[1]], rank["retriever"][r[2]])):
        chosen = chosen_cells(frame, model, dataset, retriever, order.methods)
        metric = next(iter(chosen.values()))["metric"]
        mechs = [m for m in MECHANISMS if any(k[1] == m for k in chosen)]
        shown = {k: f"{scale * r['value']:.1f}" for k, r in chosen.items()}
        best = max(float(v) for v in shown.values())
        nq = max(r["n_queries"] for r in chosen.values())
        cap = (f"{metric_label(metric)} (x{scale:g}) and seconds per query of re-ranking frameworks (rows) by relevance "
               f"mechanism (columns): {_lab(labels, model)} on {_lab(labels, dataset)} ({nq} queries), "
               f"{_lab(labels, retriever)} candidates. Best in bold.")
        out = [f"<p class='cap'>{html.escape(cap)}</p><table><thead><tr><th>Framework</th>"]
        out += [f"<th>{html.escape(m.capitalize())}</th>" for m in mechs] + ["</tr></thead><tbody>"]
        for fw in [f for f in FRAMEWORKS if any(k[0] == f for k in chosen)]:
            out.append(f"<tr><td>{html.escape(fw.capitalize())}</td>")
            for m in mechs:
                r = chosen.get((fw, m))
                if r is None:
                    out.append("<td>&ndash;</td>")
                    continue
                v = shown[(fw, m)]
                secs = r["seconds_per_query"]
                secs = "&ndash;" if secs is None or np.isnan(secs) else f"{secs:.2f} s/q"
                out.append(f"<td>{f'<b>{v}</b>' if float(v) == best else v}<br><span class='ci'>{secs}, "
                           f"{html.escape(_lab(labels, r['method']))}</span></td>")
            out.append("</tr>")
        out.append("</tbody></table>")
        parts.append("".join(out))
    return _page("Grid", "".join(parts))


# ------------------------------------------------------------------------------------------------ diagnostics
DIAGNOSTIC_COLUMNS = ["dataset", "retriever", "model", "method", "kind", "layers_needed", "model_layers", "heads",
                      "window", "selectivity_relevant", "selectivity_irrelevant", "answers", "parse_failures",
                      "parse_repairs", "empty_answers"]


def diagnostics_frame(sidecars: Mapping[str | Path, Mapping[str, str]]) -> pl.DataFrame:
    """One row per re-ranking run from its ``.json`` sidecar ({path: identifying columns}): layers needed (of the
    model's layers), heads used, Selective-ICR window, middle-zone selectivity (share of middle-third relevant /
    irrelevant documents reaching the top quartile), and for text re-rankers the answers parsed, failed, repaired."""
    rows = []
    for path, ids in sidecars.items():
        try:
            used = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{path}: cannot read the run's sidecar ({e})") from None
        row = {k: ids[k] for k in ID_COLS} | {k: None for k in DIAGNOSTIC_COLUMNS[4:]}
        spec = used.get("spec") or {}
        row["kind"] = used.get("kind") or spec.get("kind")
        row["layers_needed"] = used.get("layers_needed")
        row["model_layers"] = used.get("model_layers")
        if used.get("heads") is not None:
            row["heads"] = len(used["heads"])
        if used.get("window") is not None:
            row["window"] = "-".join(str(int(x)) for x in used["window"])
        sel = used.get("selectivity") or {}
        row["selectivity_relevant"] = sel.get("share_relevant")
        row["selectivity_irrelevant"] = sel.get("share_irrelevant")
        stats = used.get("stats") or {}
        if stats:
            row["answers"] = stats.get("generations")
            row["parse_failures"] = stats.get("parse_failures")
            row["parse_repairs"] = stats.get("parse_repairs")
            row["empty_answers"] = stats.get("empty_generations")
        rows.append(row)
    schema = {c: pl.String for c in ID_COLS + ["kind", "window"]} | {
        c: pl.Int64 for c in ("layers_needed", "model_layers", "heads", "answers", "parse_failures", "parse_repairs", "empty_answers")
    } | {"selectivity_relevant": pl.Float64, "selectivity_irrelevant": pl.Float64}
    return pl.DataFrame(rows, schema={c: schema[c] for c in DIAGNOSTIC_COLUMNS}).sort(ID_COLS)


def _diag_cells(r: dict) -> list[str]:
    layers = "--" if r["layers_needed"] is None else (
        f"{r['layers_needed']}/{r['model_layers']}" if r["model_layers"] is not None else str(r["layers_needed"]))
    sel = "--" if r["selectivity_relevant"] is None else (
        f"{r['selectivity_relevant']:.2f} / " + ("--" if r["selectivity_irrelevant"] is None else f"{r['selectivity_irrelevant']:.2f}"))
    parse = "--" if r["answers"] is None else f"{r['parse_failures']} / {r['parse_repairs']} of {r['answers']}"
    return [layers, "--" if r["heads"] is None else str(r["heads"]), r["window"] or "--", sel, parse]


_DIAG_HEAD = ["Layers needed", "Heads", "Window", "Selectivity rel / irr", "Parse failures / repairs"]
_DIAG_CAPTION = ("Diagnostics of every re-ranking run (generated from the runs' sidecars). Layers needed: of the "
                 "model's layers, the deepest one the method reads. Heads: heads aggregated (QR, CoRe, HeadRank); "
                 "Window: Selective-ICR layers. Selectivity: share of the middle third of the candidates that reaches "
                 "the top quartile, relevant / irrelevant documents. Parse failures / repairs: answers of text "
                 "re-rankers with no usable ranking / that needed ids dropped or filled, of all answers.")


def diagnostics_html(diag: pl.DataFrame, *, order: TableOrder = TableOrder(), labels: Mapping[str, str] | None = None) -> str:
    out = [f"<p class='cap'>{html.escape(_DIAG_CAPTION)}</p><table><thead><tr><th>Dataset</th><th>Model</th><th>Method</th>"]
    out += [f"<th>{html.escape(h)}</th>" for h in _DIAG_HEAD] + ["</tr></thead><tbody>"]
    for r in _ordered(diag, order):
        cells = [_lab(labels, r["dataset"]) + ("" if r["retriever"] is None else f" ({_lab(labels, r['retriever'])})"),
                 _lab(labels, r["model"]), _lab(labels, r["method"])] + _diag_cells(r)
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return _page("Diagnostics", "".join(out))


def diagnostics_tex(diag: pl.DataFrame, *, order: TableOrder = TableOrder(), labels: Mapping[str, str] | None = None) -> str:
    lines = [r"\begin{table*}[t]", r"\centering", r"\small", rf"\caption{{{latex_escape(_DIAG_CAPTION)}}}",
             r"\label{tab:diagnostics}", r"\begin{tabular}{lllrrlll}", r"\toprule",
             " & ".join(["Dataset", "Model", "Method"] + _DIAG_HEAD) + r" \\", r"\midrule"]
    for r in _ordered(diag, order):
        cells = [_lab(labels, r["dataset"]), _lab(labels, r["model"]), _lab(labels, r["method"])] + _diag_cells(r)
        lines.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}", r"\end{table*}", ""])


def _ordered(diag: pl.DataFrame, order: TableOrder) -> list[dict]:
    rank = {k: {n: i for i, n in enumerate(TableOrder.sort(diag[k].unique(), pref))}
            for k, pref in (("dataset", order.datasets), ("retriever", order.retrievers), ("model", order.models),
                            ("method", order.methods))}
    return sorted(diag.iter_rows(named=True), key=lambda r: tuple(rank[k][r[k]] for k in rank))


def write_diagnostics(sidecars: Mapping[str | Path, Mapping[str, str]], out_dir: str | Path, *,
                      order: TableOrder = TableOrder(), labels: Mapping[str, str] | None = None) -> pl.DataFrame:
    """diagnostics.csv, diagnostics.tex and diagnostics.html in ``out_dir``."""
    diag = diagnostics_frame(sidecars)
    out = Path(out_dir)
    with atomic_path(out / "diagnostics.csv") as tmp:
        diag.write_csv(tmp)
    write_text(out / "diagnostics.tex", diagnostics_tex(diag, order=order, labels=labels))
    write_text(out / "diagnostics.html", diagnostics_html(diag, order=order, labels=labels))
    return diag


# ------------------------------------------------------------------------------------------------------ plots
def plot_effectiveness(results: pl.DataFrame, path: str | Path, metric: str = "ndcg@10", *,
                       order: TableOrder = TableOrder(), labels: Mapping[str, str] | None = None) -> None:
    """One panel per dataset: ``metric`` of every run (first stages, then each model's re-rankers) with its 95%
    confidence interval (``ci_low`` / ``ci_high`` of results.csv); the first stage each re-ranker re-ranks as a
    dashed line. Writes a PDF beside the PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = results.filter(pl.col("metric") == metric)
    if sub.is_empty():
        raise InputError(f"plot_effectiveness: no results for metric {metric!r}")
    datasets = TableOrder.sort(sub["dataset"].unique(), order.datasets)
    runs = [r for _, rs in run_groups(sub, order, labels) for r in rs]
    n_models = len({r[1] for r in runs if r[1] != FIRST_STAGE_MODEL})
    names = [_lab(labels, r[2]) if r[1] == FIRST_STAGE_MODEL or n_models == 1 else f"{_lab(labels, r[2])}\n{_lab(labels, r[1])}" for r in runs]
    fig, axes = plt.subplots(len(datasets), 1, figsize=(max(6.0, 0.55 * len(runs) + 2), 3.4 * len(datasets)), squeeze=False)
    for ax, d in zip(axes[:, 0], datasets):
        rows = {(r["retriever"], r["model"], r["method"]): r for r in sub.filter(pl.col("dataset") == d).iter_rows(named=True)}
        x = np.arange(len(runs))
        val = np.array([rows[r]["value"] if r in rows else np.nan for r in runs], dtype=float)
        lo = np.array([rows[r]["ci_low"] if r in rows and rows[r]["ci_low"] is not None else np.nan for r in runs], dtype=float)
        hi = np.array([rows[r]["ci_high"] if r in rows and rows[r]["ci_high"] is not None else np.nan for r in runs], dtype=float)
        first = np.array([r[1] == FIRST_STAGE_MODEL for r in runs])
        err = np.vstack([val - lo, hi - val])
        err = np.where(np.isnan(err), 0, err)
        ax.bar(x, val, color=np.where(first, "0.65", "tab:blue"), yerr=err, capsize=3, ecolor="0.2")
        for ret in {r[0] for r in runs if r[1] != FIRST_STAGE_MODEL}:
            ref = rows.get((ret, FIRST_STAGE_MODEL, ret))
            if ref is not None:
                ax.axhline(ref["value"], color="0.3", linestyle="--", linewidth=1, label=f"{_lab(labels, ret)} (first stage)")
        nq = max((r["n_queries"] for r in rows.values()), default=0)
        ax.set_title(f"{_lab(labels, d)}: {metric_label(metric)} per method, 95% CI ({nq} queries)")
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_ylabel(metric_label(metric))
        ax.set_ylim(0, min(1.0, max(np.nanmax(hi) if np.isfinite(hi).any() else 0, np.nanmax(val)) * 1.15 + 0.02))
        ax.grid(axis="y", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------------ jobs
def tables_job(evals: Sequence[str], latency_paths: Sequence[str], out_dir: str | Path, grid_dir: str | Path, *,
               metric: str, metrics: Sequence[str], baseline: str, significance: Mapping, order: Mapping,
               labels: Mapping[str, str], candidates: Mapping, cells: Mapping, sidecars: Mapping) -> dict:
    """The ``tables`` job: results.csv / .tex, main.tex, latency.tex (``attnrank.evaluation.tables``) and the framework x
    mechanism grid (``attnrank.evaluation.grid``). Returns counts."""
    from . import grid, tables

    results = tables.write_tables(
        list(evals), out_dir, metric, metrics=metrics, baseline=baseline, significance=dict(significance),
        latency_paths=list(latency_paths), order=TableOrder(**{k: tuple(v) for k, v in order.items()}),
        labels=dict(labels), candidates=dict(candidates), deviations=tables.protocol_deviation_keys(dict(sidecars)),
    )
    grid.write_grid(results, cells, metric, grid_dir, latency_paths=list(latency_paths), sidecars=dict(sidecars),
                    methods_order=order["methods"], labels=dict(labels))
    return {"evals": len(evals), "latency_files": len(latency_paths)}


def report_job(results_csv: str, grid_csv: str, outputs: Mapping[str, str], *, metric: str, metrics: Sequence[str],
               order: Mapping, labels: Mapping[str, str], candidates: Mapping, sidecars: Mapping) -> dict:
    """The ``report_tables`` job: results and grid as HTML, the diagnostics table from every run's sidecar, the
    effectiveness figure. Returns counts."""
    table_order = TableOrder(**{k: tuple(v) for k, v in order.items()})
    labels = dict(labels)
    results = pl.read_csv(results_csv, infer_schema_length=None)
    write_text(outputs["html"], results_html(results, metric, metrics, order=table_order, labels=labels, candidates=dict(candidates)))
    write_text(outputs["grid"], grid_html(pl.read_csv(grid_csv, infer_schema_length=None), order=table_order, labels=labels))
    diag = write_diagnostics(dict(sidecars), Path(outputs["diagnostics"]).parent, order=table_order, labels=labels)
    plot_effectiveness(results, outputs["plot"], metric, order=table_order, labels=labels)
    return {"runs": diag.height}


def latency_job(runs: Sequence[str], results_csv: str, outputs: Mapping[str, str], *, metric: str, sample: Mapping,
                order: Mapping, labels: Mapping[str, str]) -> dict:
    """The ``latency_table`` job: every model's latency rows joined with the main metric on the latency sample's
    dataset and first stage; latency.csv, the trade-off figure (first stage as a reference line) and the HTML
    table. Returns counts."""
    from . import latency

    lat = pl.concat([pl.read_csv(p) for p in runs], how="vertical_relaxed")
    res = pl.read_csv(results_csv).filter(
        (pl.col("metric") == metric) & (pl.col("dataset") == sample["dataset"]) & (pl.col("retriever") == sample["retriever"])
    )
    table = lat.join(res.select("model", "method", pl.col("value").alias(metric)), on=["model", "method"], how="left")
    latency.write_latency_csv(table, outputs["csv"])
    labels = dict(labels)
    first = res.filter((pl.col("model") == "-") & (pl.col("method") == sample["retriever"]))
    reference = {f"{labels.get(sample['retriever'], sample['retriever'])} (first stage)": first["value"][0]} if first.height else {}
    n_eval = res["n_queries"].max() if res.height else 0
    title = (f"{labels.get(sample['dataset'], sample['dataset'])}: {metric_label(metric)} on {n_eval} queries "
             f"vs. seconds per query on {lat['n_queries'].max()} sampled queries")
    latency.plot_tradeoff(table, outputs["plot"], metric=metric, reference=reference, title=title, labels=labels)
    write_text(outputs["html"], latency_html(table, metric, order=TableOrder(**{k: tuple(v) for k, v in order.items()}), labels=labels))
    return {"rows": table.height, f"without_{metric}": table[metric].null_count()}
