"""Train HeadRank head weights on the tuning split's cached attention scores (model frozen)."""
from pathlib import Path

import polars as pl

from attnrank import headrank, scorecache, wiring

wiring.setup(snakemake.log[0])
params = {k: v for k, v in snakemake.params.spec.items() if k in headrank.HeadRankConfig.__dataclass_fields__}
result = headrank.train(
    scorecache.load_scores(Path(snakemake.input.scores).parent), pl.read_parquet(snakemake.input.qrels), headrank.HeadRankConfig(**params)
)
headrank.save_weights(result, snakemake.output[0])
