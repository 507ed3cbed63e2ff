"""The single-layer profile of a model in one prompt order with each Selective-ICR method's window shaded."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import layers, report, tables

    w, p = smk.wildcards, smk.params
    windows = {tables.display_name(p.labels, m): u["window"]
               for m, u in report.used_components(dict(p.sidecars)).items() if u.get("window")}
    layers.plot_profile(pl.read_parquet(smk.input.profile), smk.output.plot, windows=windows,
                        title=f"single-layer {tables.metric_label(p.metric)} on the tuning split, "
                              f"{tables.display_name(p.labels, w.model)}, {w.order} order")
    return {"windows": len(windows)}


wiring.run(snakemake, main)
