"""Top-k candidates with query and document text, for the re-rankers."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank import candidates, data, io

    ds = data.read(Path(smk.input.corpus).parent)
    cands, meta = candidates.build(
        ds, io.read_trec(smk.input.run), smk.params.depth, smk.params.max_doc_words,
        key=f"{smk.wildcards.dataset}/{smk.wildcards.retriever}",
    )
    io.write_parquet(cands, smk.output.parquet)
    io.write_json(smk.output.meta, meta)
    return {"queries": cands["qid"].n_unique(), "candidates": cands.height, **wiring.counts(meta)}


wiring.run(snakemake, main)
