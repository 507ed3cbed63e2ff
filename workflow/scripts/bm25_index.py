"""Build the Lucene index of one dataset's corpus."""
import polars as pl

from attnrank import bm25, wiring

wiring.setup(snakemake.log[0])
bm25.build_index(pl.read_parquet(snakemake.input.corpus), snakemake.output[0], threads=snakemake.threads)
