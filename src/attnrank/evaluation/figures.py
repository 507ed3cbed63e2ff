"""Figures marked with what the methods really used, read from their runs' ``.json`` sidecars: heads on the
head-score heat maps, Selective-ICR windows on the layer profile; and the position bias of every attention run.
PNG for the report, a PDF beside it for papers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import polars as pl

from ..attention import position
from ..selection import heads, layers
from .tables import TableOrder, display_name, metric_label

# heat map -> method kinds whose heads it marks (HeadRank's weighted heads on the two detection scores)
MARKED = {"qr_mass": ("qr-mass",), "qrhead": ("qrhead", "headrank"), "core": ("core", "headrank")}


def used_components(sidecars: Mapping[str, str | Path]) -> dict[str, dict]:
    """{method: {"kind", "heads": [(layer, head)], "window": (a, b)}} from the sidecars of one model's attention
    runs ({method: path}), for marking heat maps and the layer profile with what each method really used."""
    out = {}
    for method, path in sidecars.items():
        used = json.loads(Path(path).read_text())
        entry = {"kind": used.get("kind") or (used.get("spec") or {}).get("kind")}
        if used.get("heads") is not None:
            entry["heads"] = [(int(h[0]), int(h[1])) for h in used["heads"]]
        if used.get("window") is not None:
            entry["window"] = (int(used["window"][0]), int(used["window"][1]))
        out[method] = entry
    return out


def head_plots_job(heads_path: str, outputs: Mapping[str, str], model: str, order: str, temperature: str, *,
                   sidecars: Mapping[str, str], labels: Mapping[str, str]) -> dict:
    """The ``head_plots`` job: a heat map per head score, the heads of each method that uses them outlined."""
    used = used_components(dict(sidecars))
    table = pl.read_parquet(heads_path)
    who = f"{display_name(labels, model)}, {order} order"
    titles = {"qr_mass": "QR attention mass", "qrhead": "QRHead nDCG@10", "core": f"CoRe score (t={float(temperature):g})"}
    for score, title in titles.items():
        marks = {display_name(labels, m): u["heads"] for m, u in used.items() if u.get("heads") and u["kind"] in MARKED[score]}
        heads.plot_heatmap(table, score, outputs[score], title=f"{title} per head, {who}", marks=marks)
    return {"methods": len(used)}


def layer_plot_job(profile_path: str, out_plot: str, model: str, order: str, *, metric: str,
                   sidecars: Mapping[str, str], labels: Mapping[str, str]) -> dict:
    """The ``layer_plot`` job: the per-layer profile, each Selective-ICR method's window shaded."""
    windows = {display_name(labels, m): u["window"] for m, u in used_components(dict(sidecars)).items() if u.get("window")}
    layers.plot_profile(pl.read_parquet(profile_path), out_plot, windows=windows,
                        title=f"single-layer {metric_label(metric)} on the tuning split, "
                              f"{display_name(labels, model)}, {order} order")
    return {"windows": len(windows)}


def position_bias_job(results_csv: str, out_plot: str, *, order: Mapping, labels: Mapping[str, str],
                      prompt_order: str | None) -> dict:
    """The ``position_bias_plot`` job: Spearman of score vs prompt slot of every attention run (95% CIs)."""
    results = pl.read_csv(results_csv, infer_schema_length=None)
    position.plot(results, out_plot, order=TableOrder(**{k: tuple(v) for k, v in order.items()}), labels=dict(labels),
                  prompt_order=prompt_order)
    return {"runs": results.filter(pl.col("metric") == position.METRIC).height}
