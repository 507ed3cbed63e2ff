"""Re-rank candidates with a generation or likelihood method (the model runs here)."""
import polars as pl

from attnrank import candidates, generation, io, wiring

wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
name, spec = snakemake.wildcards.method, dict(snakemake.params.spec)
params = {k: v for k, v in spec.items() if k != "kind"}
if "max_doc_tokens" not in params and "doc_max_tokens" not in params:
    params["max_doc_tokens"] = snakemake.params.doc_max_tokens
run, stats = generation.rerank_candidates(spec["kind"], snakemake.input.model, pl.read_parquet(snakemake.input.candidates), params, name=name)
full = candidates.merge_with_tail(run, io.read_trec(snakemake.input.run))
io.write_trec(full, snakemake.output.run, tag=name)
io.write_json(snakemake.output.used, {"method": name, "spec": spec, "stats": stats})
