"""Normalise one configured dataset to Parquet (see attnrank.data)."""
from pathlib import Path

from attnrank import data, wiring

wiring.setup(snakemake.log[0])
spec = dict(snakemake.params.spec)
if spec["source"] == "synthetic":
    spec.setdefault("path", str(Path(snakemake.output.meta).parent / "source"))
ds = data.load(spec, snakemake.wildcards.dataset, snakemake.params.ir_datasets_home)
data.save(ds, Path(snakemake.output.meta).parent)
