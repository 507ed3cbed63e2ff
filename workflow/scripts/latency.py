"""Time every method of one model on a fixed sample of queries (wall time, passes, tokens, peak memory)."""
import polars as pl

from attnrank import latency, methods, models, wiring

log = wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
sample, model_name = snakemake.params.sample, snakemake.wildcards.model
cands = pl.read_parquet(snakemake.input.candidates)
model, tokenizer = models.load_model(snakemake.input.model)
opts = {"n": sample["n_queries"], "seed": sample["seed"], "warmup": sample["warmup"]}
summaries = []
for name, spec in snakemake.params.methods.items():
    spec = dict(spec)
    log.info("timing %s", name)
    if snakemake.params.family[name] == "attention":
        inputs = {k.split("__", 1)[1]: v for k, v in snakemake.input.items() if k.startswith(f"{name}__")}
        artifacts = methods.load_artifacts(spec, inputs, name)
        rows = latency.benchmark_attention(spec["kind"], spec, artifacts, model, tokenizer, cands, dict(snakemake.params.prompt), name=name, **opts)
    else:
        params = {k: v for k, v in spec.items() if k != "kind"}
        if "max_doc_tokens" not in params and "doc_max_tokens" not in params:
            params["max_doc_tokens"] = snakemake.params.prompt["doc_max_tokens"]
        rows = latency.benchmark_rerank(spec["kind"], model, tokenizer, cands, params, **opts)
    summaries.append(latency.summarize(rows, model_name, name))
latency.write_latency_csv(summaries, snakemake.output[0])
