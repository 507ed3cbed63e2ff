"""Collect latency rows, join the main metric, and plot effectiveness against cost per model."""
import polars as pl

from attnrank import latency, wiring

wiring.setup(snakemake.log[0])
lat = pl.concat([pl.read_csv(p) for p in snakemake.input.runs], how="vertical_relaxed")
metric, sample = snakemake.params.metric, snakemake.params.sample
res = pl.read_csv(snakemake.input.results).filter(
    (pl.col("metric") == metric) & (pl.col("dataset") == sample["dataset"]) & (pl.col("retriever") == sample["retriever"])
)
table = lat.join(res.select("model", "method", pl.col("value").alias(metric)), on=["model", "method"], how="left")
latency.write_latency_csv(table, snakemake.output.csv)
latency.plot_tradeoff(table, snakemake.output.plot, metric=metric)
