"""The single-layer profile of a model in one prompt order with each Selective-ICR method's window shaded."""
from attnrank import wiring


def main(smk):
    from attnrank.evaluation import figures

    p, w = smk.params, smk.wildcards
    return figures.layer_plot_job(smk.input.profile, smk.output.plot, w.model, w.order, metric=p.metric,
                                  sidecars=p.sidecars, labels=p.labels)


wiring.run(snakemake, main)
