"""nDCG of every single layer on the tuning split (the 'bell curve' that Selective-ICR windows are chosen from)."""
from pathlib import Path

import polars as pl

from attnrank import io, layers, scorecache, wiring

wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
scores = scorecache.load_scores(Path(snakemake.input.scores).parent)
profile = layers.profile_layers(scores, pl.read_parquet(snakemake.input.qrels), metric=snakemake.params.metric)
io.write_parquet(profile, snakemake.output.profile)
layers.plot_profile(profile, snakemake.output.plot, title=f"single-layer {snakemake.params.metric}, {snakemake.wildcards.model}")
