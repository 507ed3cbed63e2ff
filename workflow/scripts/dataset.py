"""Normalise one configured dataset to Parquet (see attnrank.data)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank import data

    notes = data.prepare(smk.params.spec, smk.wildcards.dataset, Path(smk.output.meta).parent, smk.params.ir_datasets_home)
    return wiring.counts(notes)  # n_docs, n_queries, n_qrels and what was skipped


wiring.run(snakemake, main)
