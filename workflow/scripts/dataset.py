"""Normalise one configured dataset to Parquet (see attnrank.data.sources)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank.data import sources

    notes = sources.prepare(smk.params.spec, smk.wildcards.dataset, Path(smk.output.meta).parent, smk.params.ir_datasets_home)
    return wiring.counts(notes)  # n_docs, n_queries, n_qrels and what was skipped


wiring.run(snakemake, main)
