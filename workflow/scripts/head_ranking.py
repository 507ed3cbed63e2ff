"""Score every (layer, head) on the detection set (QR and CoRe), rank them, and plot heat maps."""
from pathlib import Path

import polars as pl

from attnrank import detection, heads, io, scorecache, wiring

wiring.setup(snakemake.log[0])
labels = detection.positive_labels(pl.read_parquet(snakemake.input.detection))
table = heads.score_heads(scorecache.iter_scores(Path(snakemake.input.scores).parent), labels, snakemake.params.temperature)
io.write_parquet(table, snakemake.output.heads)
heads.plot_heatmap(table, "qr", snakemake.output.qr_plot, title=f"QR score, {snakemake.wildcards.model}")
heads.plot_heatmap(table, "core", snakemake.output.core_plot, title=f"CoRe score (t={snakemake.params.temperature}), {snakemake.wildcards.model}")
