"""Score every (layer, head) on the detection set (QR and CoRe), rank them, and plot heat maps."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import detection, heads, io, scorecache

    labels = detection.positive_labels(pl.read_parquet(smk.input.detection))
    table = heads.score_heads(scorecache.iter_scores(Path(smk.input.scores).parent), labels, smk.params.temperature)
    io.write_parquet(table, smk.output.heads)
    heads.plot_heatmap(table, "qr", smk.output.qr_plot, title=f"QR score, {smk.wildcards.model}")
    heads.plot_heatmap(table, "core", smk.output.core_plot, title=f"CoRe score (t={smk.params.temperature}), {smk.wildcards.model}")
    return {"heads": table.height, "samples": len(labels)}


wiring.run(snakemake, main)
