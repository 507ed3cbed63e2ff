"""Time every method of one model on a fixed sample of queries (wall time, passes, tokens, peak memory)."""
from attnrank import wiring


def main(smk):
    from attnrank.evaluation import latency

    p = smk.params
    return latency.benchmark_model(smk.input.model, smk.input.candidates, p.methods, p.family, dict(smk.input.items()),
                                   p.prompt, p.sample, smk.wildcards.model, smk.output[0])


wiring.run(snakemake, main)
