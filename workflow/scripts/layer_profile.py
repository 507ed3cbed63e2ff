"""nDCG of every single layer on the tuning split (the 'bell curve' that Selective-ICR windows are chosen from)."""
from attnrank import wiring


def main(smk):
    from attnrank.selection import layers

    return layers.profile_job(smk.input.scores, smk.input.qrels, smk.params.metric, smk.output.profile)


wiring.run(snakemake, main)
