"""First-stage retrieval (bm25 or dense) to a TREC run."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import bright, io

    spec = smk.params.spec
    queries = pl.read_parquet(smk.input.queries)
    if spec["kind"] == "bm25":
        from attnrank import bm25

        run = bm25.search(smk.input.index, queries, k=spec["depth"], k1=spec.get("k1", 0.9), b=spec.get("b", 0.4), threads=smk.threads)
    else:
        from attnrank import dense

        encoder = {k: v for k, v in spec.items() if k not in ("kind", "depth")}
        run = dense.run(pl.read_parquet(smk.input.corpus), queries, encoder, k=spec["depth"], cache_path=smk.params.embeddings)
    excluded = bright.read_excluded(smk.input.meta)  # BRIGHT: documents excluded per query (empty elsewhere)
    if excluded.height:
        run = bright.drop_excluded(run, excluded)
    io.write_trec(run, smk.output[0], tag=smk.wildcards.retriever, depth=spec["depth"])
    n_hit = run["qid"].n_unique()
    return {"queries": queries.height, "without_hits": queries.height - n_hit, "excluded": excluded.height, "rows": run.height}


wiring.run(snakemake, main)
