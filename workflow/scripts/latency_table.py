"""Collect latency rows, join the main metric, and plot effectiveness against cost per model."""
from attnrank import wiring


def main(smk):
    from attnrank.evaluation import report

    p = smk.params
    return report.latency_job(list(smk.input.runs), smk.input.results, dict(smk.output.items()), metric=p.metric,
                              sample=p.sample, order=p.order, labels=p.labels)


wiring.run(snakemake, main)
