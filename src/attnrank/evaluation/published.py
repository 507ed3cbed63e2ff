"""Published numbers beside ours: each run of a cell a paper reports, next to the paper's value, with the difference.

A published file is a long CSV, one printed number a row, open to any paper's table (``data/published/``):
``source, table, candidates, first_stage, dataset, model, method, metric, value`` and optional ``scale`` (100: the
paper prints the metric x100; default 1). First-stage rows have ``method = first_stage`` and ``model = -``.

Which of our runs is which published cell is never guessed: the config's ``published`` section maps our names to
the paper's (``dataset``, ``model``, ``method``, ``first_stage``: {ours: theirs}); a run is compared only when its
dataset, model (first-stage runs: none), method and first stage are all mapped and the paper has that cell at our
candidate depth (``published.candidates`` sets another depth on purpose; both depths are columns of the table). A
method key may be a run label (``core@retrieval``) or a method name (then every prompt order of it maps). Optional
filters ``source`` and ``table`` pick one table of the file; ``note`` is printed in every caption (e.g. that a run is
a stand-in, not a reproduction).
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Mapping

import polars as pl

from ..errors import InputError
from ..io import atomic_path, write_text
from .significance import FIRST_STAGE_MODEL
from .tables import latex_escape, metric_label

REQUIRED = ("source", "table", "candidates", "first_stage", "dataset", "model", "method", "metric", "value")
FIRST_STAGE_METHOD = "first_stage"
DEFAULT_FILE = "data/published/core-beir.csv"
COLUMNS = ["dataset", "retriever", "model", "method", "metric", "n_queries", "ours", "ci_low", "ci_high", "published",
           "difference", "source", "table", "published_dataset", "published_model", "published_method",
           "published_first_stage", "published_candidates", "our_candidates"]


def read_published(path: str | Path) -> pl.DataFrame:
    """The published file with ``value`` divided by ``scale`` (the metric in [0, 1], as our results)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"published: file {str(path)!r} not found")
    df = pl.read_csv(path, infer_schema_length=None)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"published: {path} lacks column(s) {missing} (has {df.columns})")
    if "scale" not in df.columns:
        df = df.with_columns(scale=pl.lit(1.0))
    df = df.with_columns(pl.col(c).cast(pl.String) for c in ("source", "table", "first_stage", "dataset", "model", "method", "metric"))
    df = df.with_columns(candidates=pl.col("candidates").cast(pl.Int64), value=pl.col("value").cast(pl.Float64) / pl.col("scale").cast(pl.Float64))
    dup = df.group_by(["source", "table", "candidates", "first_stage", "dataset", "model", "method", "metric"]).len().filter(pl.col("len") > 1)
    if dup.height:
        raise InputError(f"published: {path} has {dup.height} cell(s) twice, e.g. {dup.row(0, named=True)}")
    return df


def _method_key(mapping: Mapping[str, str], run_method: str) -> str | None:
    """The paper's method name of a run label (``core@retrieval``): the label's own entry, else its method's."""
    if run_method in mapping:
        return mapping[run_method]
    return mapping.get(run_method.partition("@")[0])


def _check_targets(pub: pl.DataFrame, spec: Mapping) -> None:
    """Every mapped name exists in the (filtered) file: a typo is an error naming the key, never an empty table."""
    for key, col in (("dataset", "dataset"), ("model", "model"), ("method", "method"), ("first_stage", "first_stage")):
        have = set(pub[col].to_list())
        for ours, theirs in (spec.get(key) or {}).items():
            if theirs not in have:
                raise InputError(f"config key 'published.{key}.{ours}': {theirs!r} is not in the published file "
                                 f"(has: {sorted(have)})")


def compare(results: pl.DataFrame, pub: pl.DataFrame, spec: Mapping, our_depth: int | Mapping[str, int]) -> pl.DataFrame:
    """Our runs (``results.csv`` rows) of mapped cells beside the published values (:data:`COLUMNS`);
    ``our_depth``: the candidate depth, or {candidate list (the ``retriever`` column): depth}."""
    for key in ("source", "table"):
        if spec.get(key) is not None:
            pub = pub.filter(pl.col(key) == str(spec[key]))
            if not pub.height:
                raise InputError(f"config key 'published.{key}': no published rows with {key} {spec[key]!r}")
    _check_targets(pub, spec)
    cells = {(r["candidates"], r["dataset"], r["model"], r["method"], r["first_stage"], r["metric"]): r
             for r in pub.iter_rows(named=True)}
    dmap, mmap, meth, fmap = (dict(spec.get(k) or {}) for k in ("dataset", "model", "method", "first_stage"))
    rows = []
    for r in results.iter_rows(named=True):
        ours_k = our_depth.get(r["retriever"]) if isinstance(our_depth, Mapping) else our_depth
        if ours_k is None:
            continue
        depth = int(spec.get("candidates") or ours_k)
        first = r["model"] == FIRST_STAGE_MODEL
        p_model = "-" if first else mmap.get(r["model"])
        p_method = FIRST_STAGE_METHOD if first else _method_key(meth, r["method"])
        key = (dmap.get(r["dataset"]), p_model, p_method, fmap.get(r["retriever"]), r["metric"])
        if None in key or (depth, *key) not in cells:
            continue
        c = cells[(depth, *key)]
        rows.append({
            "dataset": r["dataset"], "retriever": r["retriever"], "model": r["model"], "method": r["method"],
            "metric": r["metric"], "n_queries": r.get("n_queries"), "ours": r["value"], "ci_low": r.get("ci_low"),
            "ci_high": r.get("ci_high"), "published": c["value"], "difference": r["value"] - c["value"],
            "source": c["source"], "table": c["table"], "published_dataset": key[0], "published_model": key[1],
            "published_method": key[2], "published_first_stage": key[3], "published_candidates": depth,
            "our_candidates": ours_k,
        })
    schema = {c: pl.Float64 for c in ("ours", "ci_low", "ci_high", "published", "difference")}
    schema.update({c: pl.Int64 for c in ("n_queries", "published_candidates", "our_candidates")})
    return pl.DataFrame(rows, schema={c: schema.get(c, pl.String) for c in COLUMNS})


def caption(frame: pl.DataFrame, spec: Mapping, scale: float = 100.0) -> str:
    """What the table shows, where the numbers come from, and the config's note."""
    srcs = sorted({f"{s}, Table {t}" for s, t in frame.select("source", "table").iter_rows()}) if frame.height else []
    text = (f"Our runs beside the published values (x{scale:g}); difference = ours - published. Cells mapped in the "
            f"config's published section; published: {'; '.join(srcs) or 'no matching cell'}.")
    if frame.height and (frame["published_candidates"] != frame["our_candidates"]).any():
        text += " The published candidate depth differs from ours (columns 'top-k')."
    if spec.get("note"):
        text += f" {spec['note']}"
    return text


def _cells(r: dict, scale: float) -> list[str]:
    ci = "" if r["ci_low"] is None else f"[{r['ci_low'] * scale:.1f}, {r['ci_high'] * scale:.1f}]"
    return [r["dataset"], r["published_dataset"], r["model"], r["published_model"], r["method"], r["published_method"],
            f"{r['retriever']} / {r['published_first_stage']}", f"{r['our_candidates']} / {r['published_candidates']}",
            metric_label(r["metric"]), str(r["n_queries"] or ""), f"{r['ours'] * scale:.1f}", ci,
            f"{r['published'] * scale:.1f}", f"{r['difference'] * scale:+.1f}"]


HEADER = ["dataset", "paper's dataset", "model", "paper's model", "method", "paper's method", "first stage (ours / paper)",
          "top-k (ours / paper)", "metric", "n", "ours", "95% CI", "published", "diff."]


def to_latex(frame: pl.DataFrame, spec: Mapping, scale: float = 100.0) -> str:
    """A booktabs table (needs ``booktabs`` and ``graphicx``)."""
    lines = [r"\begin{table*}[t]", r"\centering", rf"\caption{{{latex_escape(caption(frame, spec, scale))}}}",
             r"\label{tab:published}", r"\resizebox{\linewidth}{!}{%", r"\begin{tabular}{" + "l" * 10 + "r" * 4 + "}",
             r"\toprule", " & ".join(latex_escape(h) for h in HEADER) + r" \\", r"\midrule"]
    for r in frame.iter_rows(named=True):
        lines.append(" & ".join(latex_escape(c) for c in _cells(r, scale)) + r" \\")
    if not frame.height:
        lines.append(rf"\multicolumn{{{len(HEADER)}}}{{l}}{{no run maps to a published cell}} \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\end{table*}", ""]
    return "\n".join(lines)


def to_html(frame: pl.DataFrame, spec: Mapping, scale: float = 100.0) -> str:
    """The table as an HTML page for the report."""
    from .report import _page

    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in _cells(r, scale)) + "</tr>"
                   for r in frame.iter_rows(named=True))
    if not frame.height:
        body = f"<tr><td colspan='{len(HEADER)}'>no run maps to a published cell</td></tr>"
    table = (f"<p class='cap'>{html.escape(caption(frame, spec, scale))}</p>"
             f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return _page("Published vs ours", table)


def published_job(results_csv: str, published_file: str, outputs: Mapping[str, str], *, spec: Mapping,
                  depth: int | Mapping[str, int]) -> dict:
    """The ``published_table`` job: published.csv / .tex / .html. Returns counts."""
    results = pl.read_csv(results_csv, infer_schema_length=None)
    frame = compare(results, read_published(published_file), spec, depth)
    with atomic_path(outputs["csv"]) as tmp:
        frame.write_csv(tmp)
    write_text(outputs["tex"], to_latex(frame, spec))
    write_text(outputs["html"], to_html(frame, spec))
    return {"cells": frame.height}
