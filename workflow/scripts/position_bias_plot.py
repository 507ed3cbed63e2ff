"""Bar chart of every attention run's position bias (from results.csv)."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import position

    results = pl.read_csv(smk.input[0], infer_schema_length=None)
    position.plot(results, smk.output[0])
    return {"runs": results.filter(pl.col("metric") == position.METRIC).height}


wiring.run(snakemake, main)
