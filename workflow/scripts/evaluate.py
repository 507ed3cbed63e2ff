"""Per-query metrics (ranx) of every run of one dataset."""
import polars as pl
from tqdm import tqdm

from attnrank import evaluation, io, wiring

wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
qrels = pl.read_parquet(snakemake.input.qrels)
frames = []
for path, ids in tqdm(sorted(snakemake.params.runs.items()), desc="evaluate"):
    per_q = evaluation.per_query(qrels, io.read_trec(path), snakemake.params.metrics)
    frames.append(per_q.with_columns(**{k: pl.lit(v) for k, v in ids.items()}))
io.write_parquet(pl.concat(frames), snakemake.output[0])
