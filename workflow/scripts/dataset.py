"""Normalise one configured dataset to Parquet (see attnrank.data)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank import data

    spec = dict(smk.params.spec)
    if spec["source"] == "synthetic":
        spec.setdefault("path", str(Path(smk.output.meta).parent / "source"))
    ds = data.load(spec, smk.wildcards.dataset, smk.params.ir_datasets_home)
    data.save(ds, Path(smk.output.meta).parent)
    return wiring.counts(ds.notes)  # n_docs, n_queries, n_qrels and what was skipped


wiring.run(snakemake, main)
