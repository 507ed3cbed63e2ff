"""Top-k candidates with query and document text, for the re-rankers."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank.retrieval import candidates

    return candidates.write_candidates(str(Path(smk.input.corpus).parent), smk.input.run, smk.params.depth,
                                       smk.params.max_doc_words, f"{smk.wildcards.dataset}/{smk.wildcards.retriever}",
                                       smk.output.parquet, smk.output.meta, run_out=smk.output.run)


wiring.run(snakemake, main)
