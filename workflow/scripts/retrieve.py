"""First-stage retrieval (bm25 or dense) to a TREC run; self-matching documents dropped and counted in its .json."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import bright, candidates, io

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
    meta = {"n_excluded": excluded.height}
    if smk.params.drop_self_matches:  # BEIR's evaluation and ICR drop a document whose id is the query id
        run, info = candidates.drop_self_matches(run, pl.read_parquet(smk.input.qrels), f"{smk.wildcards.dataset}/{smk.wildcards.retriever}")
        meta.update(info)
    io.write_trec(run, smk.output.run, tag=smk.wildcards.retriever, depth=spec["depth"])
    io.write_json(smk.output.meta, meta)
    n_hit = run["qid"].n_unique()
    return {"queries": queries.height, "without_hits": queries.height - n_hit, "excluded": excluded.height,
            "self_matches_dropped": meta.get("self_matches_dropped", 0), "rows": run.height}


wiring.run(snakemake, main)
