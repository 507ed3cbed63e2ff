"""HTML results and grid tables for the report, the diagnostics table from the runs' sidecars, and effectiveness per
dataset."""
from attnrank import wiring


def main(smk):
    from attnrank.evaluation import report

    p = smk.params
    return report.report_job(smk.input.results, smk.input.grid, dict(smk.output.items()), metric=p.metric,
                             metrics=p.metrics, order=p.order, labels=p.labels, candidates=p.candidates, sidecars=p.sidecars)


wiring.run(snakemake, main)
