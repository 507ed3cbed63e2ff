"""Build the Lucene index of one dataset's corpus."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank.retrieval import bm25

    corpus = pl.read_parquet(smk.input.corpus)
    bm25.build_index(corpus, smk.output[0], threads=smk.threads)
    return {"documents": corpus.height}


wiring.run(snakemake, main)
