"""Re-rank candidates with a generation or likelihood method, or a text framework scored by attention (the model runs here)."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import attnscoring, candidates, io, textrerank

    name, spec = smk.wildcards.method, dict(smk.params.spec)
    prompt = {**smk.params.prompt, "max_doc_tokens": smk.params.max_doc_tokens}
    params = attnscoring.text_params(name, spec, prompt, dict(smk.input.items()))
    run, stats = textrerank.rerank_candidates(spec["kind"], smk.input.model, pl.read_parquet(smk.input.candidates), params, name=name)
    full = candidates.merge_with_tail(run, io.read_trec(smk.input.run))
    io.write_trec(full, smk.output.run, tag=name)
    io.write_json(smk.output.used, {"method": name, "spec": spec, "stats": stats})
    return {"queries": run["qid"].n_unique(), "reranked": run.height, **wiring.counts(stats)}


wiring.run(snakemake, main)
