"""Detection set for QR/CoRe heads: positives with mined hard negatives, positive at each of the first P slots."""
from pathlib import Path

import polars as pl

from attnrank import data, detection, io, wiring

wiring.setup(snakemake.log[0])
spec = snakemake.params.spec
ds = data.read(Path(snakemake.input.corpus).parent)
report = {}
det = detection.build_detection_set(
    ds.queries, ds.qrels, io.read_trec(snakemake.input.run), ds.corpus,
    n_queries=spec["n_queries"], n_negatives=spec["n_negatives"], positions=spec["positions"], seed=spec["seed"],
    report=report,
)
io.write_parquet(det, snakemake.output[0])
io.write_json(snakemake.output[0].removesuffix(".parquet") + ".json", report)
