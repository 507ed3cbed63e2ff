"""First-stage retrieval (bm25 or dense) to a TREC run."""
import polars as pl

from attnrank import bright, io, wiring

wiring.setup(snakemake.log[0])
spec = snakemake.params.spec
queries = pl.read_parquet(snakemake.input.queries)
if spec["kind"] == "bm25":
    from attnrank import bm25

    run = bm25.search(snakemake.input.index, queries, k=spec["depth"], k1=spec.get("k1", 0.9), b=spec.get("b", 0.4), threads=snakemake.threads)
else:
    from attnrank import dense

    encoder = {k: v for k, v in spec.items() if k not in ("kind", "depth")}
    run = dense.run(pl.read_parquet(snakemake.input.corpus), queries, encoder, k=spec["depth"], cache_path=snakemake.params.embeddings)
excluded = bright.read_excluded(snakemake.input.meta)  # BRIGHT: documents excluded per query (empty elsewhere)
if excluded.height:
    run = bright.drop_excluded(run, excluded)
io.write_trec(run, snakemake.output[0], tag=snakemake.wildcards.retriever, depth=spec["depth"])
