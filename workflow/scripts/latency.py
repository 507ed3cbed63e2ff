"""Time one (model, method) on a fixed sample of queries (wall time, passes, tokens, peak memory)."""
import polars as pl

from attnrank import latency, models, wiring

wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
name, spec, sample = snakemake.wildcards.method, dict(snakemake.params.spec), snakemake.params.sample
kind = spec["kind"]
params = {k: v for k, v in spec.items() if k != "kind"}
cands = pl.read_parquet(snakemake.input.candidates)
model, tokenizer = models.load_model(snakemake.input.model)
opts = {"n": sample["n_queries"], "seed": sample["seed"], "warmup": sample["warmup"]}
if snakemake.params.family == "attention":
    artifacts = {}
    if "heads" in snakemake.input.keys():
        artifacts["heads"] = pl.read_parquet(snakemake.input.heads)
    if "profile" in snakemake.input.keys():
        from attnrank import layers

        artifacts["window"] = layers.select_window(pl.read_parquet(snakemake.input.profile), spec.get("width", 4), key=f"methods.{name}.width")
    if "weights" in snakemake.input.keys():
        from attnrank import headrank

        artifacts["weights"] = headrank.load_weights(snakemake.input.weights)
    rows = latency.benchmark_attention(kind, spec, artifacts, model, tokenizer, cands, dict(snakemake.params.prompt), name=name, **opts)
else:
    rows = latency.benchmark_rerank(kind, model, tokenizer, cands, params, **opts)
latency.write_latency_csv([latency.summarize(rows, snakemake.wildcards.model, name)], snakemake.output[0])
