"""Train HeadRank head weights on the tuning split's cached attention scores (model frozen)."""
from attnrank import wiring


def main(smk):
    from attnrank.selection import headrank_fit

    return headrank_fit.train_from_cache(smk.input.scores, smk.input.qrels, dict(smk.params.spec), smk.output[0])


wiring.run(snakemake, main)
