"""Collect latency rows, join the main metric, and plot effectiveness against cost per model."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import io, latency, report, tables

    lat = pl.concat([pl.read_csv(p) for p in smk.input.runs], how="vertical_relaxed")
    metric, sample = smk.params.metric, smk.params.sample
    res = pl.read_csv(smk.input.results).filter(
        (pl.col("metric") == metric) & (pl.col("dataset") == sample["dataset"]) & (pl.col("retriever") == sample["retriever"])
    )
    table = lat.join(res.select("model", "method", pl.col("value").alias(metric)), on=["model", "method"], how="left")
    latency.write_latency_csv(table, smk.output.csv)
    labels = dict(smk.params.labels)
    first = res.filter((pl.col("model") == "-") & (pl.col("method") == sample["retriever"]))
    reference = {f"{labels.get(sample['retriever'], sample['retriever'])} (first stage)": first["value"][0]} if first.height else {}
    n_eval = res["n_queries"].max() if res.height else 0
    title = (f"{labels.get(sample['dataset'], sample['dataset'])}: {report.metric_label(metric)} on {n_eval} queries "
             f"vs. seconds per query on {lat['n_queries'].max()} sampled queries")
    latency.plot_tradeoff(table, smk.output.plot, metric=metric, reference=reference, title=title, labels=labels)
    order = tables.TableOrder(**{k: tuple(v) for k, v in smk.params.order.items()})
    io.write_text(smk.output.html, report.latency_html(table, metric, order=order, labels=labels))
    return {"rows": table.height, f"without_{metric}": table[metric].null_count()}


wiring.run(snakemake, main)
