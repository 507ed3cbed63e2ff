"""Time every method of one model on a fixed sample of queries (wall time, passes, tokens, peak memory)."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import attnscoring, latency, methods, models

    sample, model_name = smk.params.sample, smk.wildcards.model
    cands = pl.read_parquet(smk.input.candidates)
    model, tokenizer = models.load_model(smk.input.model)
    opts = {"n": sample["n_queries"], "seed": sample["seed"], "warmup": sample["warmup"]}
    summaries = []
    for name, spec in smk.params.methods.items():
        spec = dict(spec)
        wiring.log.info("timing %s", name)
        inputs = {k.split("__", 1)[1]: v for k, v in smk.input.items() if k.startswith(f"{name}__")}
        if smk.params.family[name] == "attention":
            artifacts = methods.load_artifacts(spec, inputs, name)
            rows = latency.benchmark_attention(spec["kind"], spec, artifacts, model, tokenizer, cands, dict(smk.params.prompt), name=name, **opts)
        else:
            params = attnscoring.text_params(name, spec, dict(smk.params.prompt), inputs)
            rows = latency.benchmark_rerank(spec["kind"], model, tokenizer, cands, params, **opts)
        summaries.append(latency.summarize(rows, model_name, name))
    latency.write_latency_csv(summaries, smk.output[0])
    return {"methods": len(summaries), "queries": opts["n"]}


wiring.run(snakemake, main)
