"""Aggregate per-query metrics of every run into long-form CSV and a booktabs LaTeX table.

Each evaluation file holds per-query rows (qid, metric, value) plus identifying columns (dataset, retriever,
model, method); first-stage runs use model = "-" and method = the retriever name.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .io import write_text

ID_COLS = ["dataset", "retriever", "model", "method"]


def collect(paths: list[str | Path]) -> pl.DataFrame:
    frames = [pl.read_parquet(p) for p in paths]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def summarise(per_query: pl.DataFrame) -> pl.DataFrame:
    """Mean of every metric per run: columns dataset, retriever, model, method, metric, value, n_queries."""
    return (
        per_query.group_by(ID_COLS + ["metric"])
        .agg(value=pl.col("value").mean(), n_queries=pl.col("qid").n_unique())
        .sort(ID_COLS + ["metric"])
    )


def _latex_escape(s: str) -> str:
    return s.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%").replace("#", r"\#")


def to_latex(summary: pl.DataFrame, metric: str, caption: str = "") -> str:
    """Booktabs table: one row per (retriever, model, method), one column per dataset, best per column in bold."""
    sub = summary.filter(pl.col("metric") == metric)
    datasets = sorted(sub["dataset"].unique().to_list())
    rows = sub.select(["retriever", "model", "method"]).unique().sort(["retriever", "model", "method"]).rows()
    val = {(r["dataset"], r["retriever"], r["model"], r["method"]): r["value"] for r in sub.iter_rows(named=True)}
    best = {d: max((v for k, v in val.items() if k[0] == d), default=None) for d in datasets}
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{_latex_escape(caption or metric)}}}",
        r"\begin{tabular}{lll" + "r" * len(datasets) + "}",
        r"\toprule",
        "First stage & Model & Method & " + " & ".join(_latex_escape(d) for d in datasets) + r" \\",
        r"\midrule",
    ]
    for r in rows:
        cells = []
        for d in datasets:
            v = val.get((d, *r))
            if v is None:
                cells.append("--")
            else:
                txt = f"{100 * v:.1f}"
                cells.append(rf"\textbf{{{txt}}}" if best[d] is not None and abs(v - best[d]) < 1e-12 else txt)
        lines.append(" & ".join(_latex_escape(x) for x in r) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write_tables(eval_paths: list[str | Path], out_dir: str | Path, metric: str) -> pl.DataFrame:
    per_q = collect(eval_paths)
    summary = summarise(per_q)
    out = Path(out_dir)
    from .io import atomic_path

    with atomic_path(out / "results.csv") as tmp:
        summary.write_csv(tmp)
    write_text(out / "results.tex", to_latex(summary, metric, caption=f"{metric} (x100); best per dataset in bold."))
    return summary
