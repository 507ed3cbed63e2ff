"""Heat maps of a model's head scores (qr_mass, QRHead, CoRe) in one prompt order, each method's heads outlined."""
from attnrank import wiring


def main(smk):
    from attnrank.evaluation import figures

    w = smk.wildcards
    return figures.head_plots_job(smk.input.heads, dict(smk.output.items()), w.model, w.order, w.temperature,
                                  sidecars=smk.params.sidecars, labels=smk.params.labels)


wiring.run(snakemake, main)
