"""Per-query metrics (ranx) of every run of one dataset (attention runs add their position bias per query)."""
from attnrank import wiring


def main(smk):
    from attnrank.evaluation import metrics

    return metrics.evaluate_runs(smk.input.qrels, dict(smk.params.runs), smk.params.metrics, smk.output[0])


wiring.run(snakemake, main)
