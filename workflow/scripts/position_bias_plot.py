"""Bar chart of every attention run's position bias per prompt order (from results.csv), PNG and PDF."""
from attnrank import wiring


def main(smk):
    from attnrank.evaluation import figures

    p = smk.params
    return figures.position_bias_job(smk.input[0], smk.output.plot, order=p.order, labels=p.labels,
                                     prompt_order=p.prompt_order)


wiring.run(snakemake, main)
