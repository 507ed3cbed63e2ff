"""First-stage retrieval (bm25 or dense) to a TREC run; self-matching documents dropped and counted in its .json."""
from attnrank import wiring


def main(smk):
    from attnrank.retrieval import firststage

    return firststage.retrieve(smk.params.spec, dict(smk.input.items()), dict(smk.output.items()), smk.wildcards.retriever,
                              smk.params.drop_self_matches, smk.params.embeddings, smk.threads,
                              where=f"{smk.wildcards.dataset}/{smk.wildcards.retriever}")


wiring.run(snakemake, main)
