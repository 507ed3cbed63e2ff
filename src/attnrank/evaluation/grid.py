"""The framework x mechanism grid (Selective-ICR's comparison): one table per model, dataset and first stage with
re-ranking frameworks as rows (pointwise, listwise sliding windows, setwise heapsort; attention kinds such as ICR
form the row "full list": every candidate in one prompt) and relevance mechanisms as columns (generation,
likelihood, attention), each cell nDCG@10 (the main metric) and seconds per query.

A method's cell is derived from its config entry (``cell``): ``yesno`` = pointwise generation, ``qlm`` = pointwise
likelihood, ``pointwise`` = pointwise attention, ``rankgpt`` = listwise by its ``scoring``, ``setwise`` = setwise by
its ``scorer``, attention kinds = full list / attention. Seconds per query come from the latency stage when it timed
the method (same sampled queries and conditions for every method), else from the re-ranking job itself
(``stats.seconds_per_query`` of the run's ``.json`` sidecar, every query); ``seconds_source`` says which.
Several methods in one cell: all are in the CSV; the LaTeX table shows the first in config order and names it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import polars as pl

from ..errors import InputError
from ..io import atomic_path, write_text

FRAMEWORKS = ("pointwise", "listwise", "setwise", "full list")
MECHANISMS = ("generation", "likelihood", "attention")
GRID_COLUMNS = ["dataset", "retriever", "model", "framework", "mechanism", "method", "metric", "value", "n_queries",
                "seconds_per_query", "seconds_source"]


def cell(kind: str, spec: Mapping, name: str | None = None) -> tuple[str, str]:
    """(framework, mechanism) of a method config entry; InputError for an unknown kind or mechanism."""
    from ..attention import methods
    from ..text.kinds import MECHANISM_KEY

    fixed = {"yesno": ("pointwise", "generation"), "qlm": ("pointwise", "likelihood")}
    if kind in fixed:
        return fixed[kind]
    if kind in MECHANISM_KEY:
        key, default = MECHANISM_KEY[kind]
        mech = spec.get(key, default)
        if mech not in MECHANISMS:
            raise InputError(f"methods.{name or kind}.{key}: {mech!r} is not one of {list(MECHANISMS)}")
        return ("listwise" if kind == "rankgpt" else kind), mech
    if kind in methods.METHODS:
        return "full list", "attention"
    raise InputError(f"methods.{name or kind}.kind: {kind!r} has no place in the framework x mechanism grid")


def cells(method_specs: Mapping[str, Mapping]) -> dict[str, list[str]]:
    """{method name: [framework, mechanism]} of config ``methods``."""
    return {n: list(cell(s["kind"], s, n)) for n, s in method_specs.items()}


def sidecar_seconds(sidecars: Mapping[str, Mapping]) -> pl.DataFrame:
    """Seconds per query of re-ranking jobs from their ``.json`` sidecars ({path: {dataset, retriever, model,
    method}}); sidecars without timing (attention aggregations) are skipped."""
    rows = []
    for path, ids in sidecars.items():
        with open(path) as f:
            stats = json.load(f).get("stats") or {}
        if stats.get("seconds_per_query") is not None:
            rows.append({**{k: ids[k] for k in ("dataset", "retriever", "model", "method")},
                         "seconds_per_query": float(stats["seconds_per_query"])})
    schema = {"dataset": pl.String, "retriever": pl.String, "model": pl.String, "method": pl.String, "seconds_per_query": pl.Float64}
    return pl.DataFrame(rows, schema=schema, orient="row")


def grid_frame(results: pl.DataFrame, method_cells: Mapping[str, Sequence[str]], metric: str,
               latency: pl.DataFrame | None = None, job_seconds: pl.DataFrame | None = None) -> pl.DataFrame:
    """Long form (``GRID_COLUMNS``): one row per (dataset, retriever, model, method) with a cell.

    ``results``: ``tables.results_frame`` output (or any frame with dataset, retriever, model, method, metric, value,
    n_queries); ``latency``: latency CSV rows (model, method, seconds_per_query); ``job_seconds``:
    ``sidecar_seconds`` output.
    """
    sub = results.filter((pl.col("metric") == metric) & pl.col("method").is_in(list(method_cells)))
    lat = {}
    if latency is not None and latency.height:
        lat = {(r["model"], r["method"]): r["seconds_per_query"] for r in latency.iter_rows(named=True)}
    job = {}
    if job_seconds is not None and job_seconds.height:
        job = {(r["dataset"], r["retriever"], r["model"], r["method"]): r["seconds_per_query"] for r in job_seconds.iter_rows(named=True)}
    rows = []
    for r in sub.iter_rows(named=True):
        fw, mech = method_cells[r["method"]]
        key = (r["dataset"], r["retriever"], r["model"], r["method"])
        if (r["model"], r["method"]) in lat:
            secs, src = lat[(r["model"], r["method"])], "latency"
        elif key in job:
            secs, src = job[key], "rerank job"
        else:
            secs, src = None, None
        rows.append({**{k: r[k] for k in ("dataset", "retriever", "model", "method", "metric", "value", "n_queries")},
                     "framework": fw, "mechanism": mech, "seconds_per_query": secs, "seconds_source": src})
    schema = {c: pl.String for c in GRID_COLUMNS}
    schema.update(value=pl.Float64, n_queries=pl.Int64, seconds_per_query=pl.Float64)
    return pl.DataFrame(rows, schema=schema, orient="row").select(GRID_COLUMNS)


def _order(values, preferred: Sequence[str]) -> list[str]:
    from .tables import TableOrder

    return TableOrder.sort(values, preferred)


def chosen_cells(frame: pl.DataFrame, model: str, dataset: str, retriever: str, methods_order: Sequence[str] = ()
                 ) -> dict[tuple[str, str], dict]:
    """{(framework, mechanism): grid row} of one (model, dataset, retriever): per cell the first method in
    ``methods_order``; InputError when none has a cell."""
    sub = frame.filter((pl.col("model") == model) & (pl.col("dataset") == dataset) & (pl.col("retriever") == retriever))
    if sub.is_empty():
        raise InputError(f"grid: no grid methods for model {model!r}, dataset {dataset!r}, first stage {retriever!r}")
    chosen: dict[tuple[str, str], dict] = {}
    for name in _order(sub["method"].unique(), methods_order):
        r = sub.filter(pl.col("method") == name).row(0, named=True)
        chosen.setdefault((r["framework"], r["mechanism"]), r)
    return chosen


def grid_table(frame: pl.DataFrame, model: str, dataset: str, retriever: str, *, methods_order: Sequence[str] = (),
               scale: float = 100.0, labels: Mapping[str, str] | None = None) -> str:
    """Booktabs table of one (model, dataset, retriever): frameworks as rows, per mechanism the metric (x ``scale``)
    and seconds per query; the best metric in bold. A cell holds the first method in ``methods_order``. ``labels``:
    display names of config keys."""
    from .tables import display_name, latex_escape, metric_label

    lab = lambda n: latex_escape(display_name(labels, n))  # noqa: E731
    chosen = chosen_cells(frame, model, dataset, retriever, methods_order)
    metric = next(iter(chosen.values()))["metric"]
    frameworks = [f for f in FRAMEWORKS if any(k[0] == f for k in chosen)]
    mechs = [m for m in MECHANISMS if any(k[1] == m for k in chosen)]
    shown = {k: f"{r['value'] * scale:.1f}" for k, r in chosen.items()}
    best = max(float(v) for v in shown.values())
    mlabel = latex_escape(metric_label(metric))
    cap = (f"{mlabel} ($\\times${scale:g}) and seconds per query (s/q) of re-ranking frameworks (rows) by relevance "
           f"mechanism (columns): {lab(model)} on {lab(dataset)}, {lab(retriever)} candidates. "
           "Best in bold. Methods: " + "; ".join(f"{lab(r['method'])} ({k[0]}, {k[1]})" for k, r in chosen.items()) + ".")
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{cap}}}",
             rf"\label{{tab:grid:{_safe(model)}:{_safe(dataset)}:{_safe(retriever)}}}",
             r"\begin{tabular}{l" + "rr" * len(mechs) + "}", r"\toprule",
             " & ".join([""] + [rf"\multicolumn{{2}}{{c}}{{{m.capitalize()}}}" for m in mechs]) + r" \\",
             " ".join(rf"\cmidrule(lr){{{2 + 2 * i}-{3 + 2 * i}}}" for i in range(len(mechs))),
             " & ".join(["Framework"] + [mlabel, "s/q"] * len(mechs)) + r" \\", r"\midrule"]
    for fw in frameworks:
        cells_ = [fw.capitalize()]
        for m in mechs:
            r = chosen.get((fw, m))
            if r is None:
                cells_ += ["--", "--"]
                continue
            v = shown[(fw, m)]
            cells_.append(rf"\textbf{{{v}}}" if float(v) == best else v)
            s = r["seconds_per_query"]
            cells_.append("--" if s is None or (isinstance(s, float) and math.isnan(s)) else f"{s:.2f}")
        lines.append(" & ".join(cells_) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s)


def write_grid(results: pl.DataFrame, method_cells: Mapping[str, Sequence[str]], metric: str, out_dir: str | Path, *,
               latency_paths: Sequence[str | Path] = (), sidecars: Mapping[str, Mapping] | None = None,
               methods_order: Sequence[str] = (), labels: Mapping[str, str] | None = None) -> pl.DataFrame:
    """Write grid.csv (long form) and grid.tex (one table per model, dataset and first stage; a LaTeX comment when
    no configured method has a cell with results; ``labels``: display names). Returns the long-form frame."""
    frames = [pl.read_csv(p) for p in latency_paths]
    lat = pl.concat(frames, how="diagonal_relaxed") if frames else None
    frame = grid_frame(results, method_cells, metric, lat, sidecar_seconds(sidecars or {}))
    out = Path(out_dir)
    with atomic_path(out / "grid.csv") as tmp:
        frame.write_csv(tmp)
    keys = frame.select("model", "dataset", "retriever").unique(maintain_order=True).rows()
    tex = "\n".join(grid_table(frame, m, d, r, methods_order=methods_order, labels=labels) for m, d, r in keys)
    write_text(out / "grid.tex", tex or "% no method of the framework x mechanism grid has results\n")
    return frame
