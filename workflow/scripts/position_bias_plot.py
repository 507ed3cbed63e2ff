"""Bar chart of every attention run's position bias per prompt order (from results.csv), PNG and PDF."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import position, tables

    p = smk.params
    results = pl.read_csv(smk.input[0], infer_schema_length=None)
    position.plot(results, smk.output.plot, order=tables.TableOrder(**{k: tuple(v) for k, v in p.order.items()}),
                  labels=dict(p.labels), prompt_order=p.prompt_order)
    return {"runs": results.filter(pl.col("metric") == position.METRIC).height}


wiring.run(snakemake, main)
