"""Collect latency rows, join the main metric, and plot effectiveness against cost per model."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import latency

    lat = pl.concat([pl.read_csv(p) for p in smk.input.runs], how="vertical_relaxed")
    metric, sample = smk.params.metric, smk.params.sample
    res = pl.read_csv(smk.input.results).filter(
        (pl.col("metric") == metric) & (pl.col("dataset") == sample["dataset"]) & (pl.col("retriever") == sample["retriever"])
    )
    table = lat.join(res.select("model", "method", pl.col("value").alias(metric)), on=["model", "method"], how="left")
    latency.write_latency_csv(table, smk.output.csv)
    latency.plot_tradeoff(table, smk.output.plot, metric=metric)
    return {"rows": table.height, f"without_{metric}": table[metric].null_count()}


wiring.run(snakemake, main)
