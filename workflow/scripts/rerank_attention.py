"""Rank candidates by one attention method: an aggregation over the cached score tensor (no forward pass)."""
from attnrank import wiring


def main(smk):
    from attnrank.attention import attnrun

    return attnrun.rerank(smk.wildcards.method, smk.params.spec, dict(smk.input.items()), dict(smk.output.items()),
                          smk.wildcards.retriever, smk.params.grid)


wiring.run(snakemake, main)
