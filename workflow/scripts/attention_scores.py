"""One attention pass over a candidates file -> the sharded, resumable score cache (see docs/attention.md)."""
from pathlib import Path

import polars as pl

import torch

from attnrank import scorecache, wiring

wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
p = snakemake.params
dtype = None if p.dtype == "auto" else getattr(torch, p.dtype)
scorecache.compute_cache(
    snakemake.input.model,
    pl.read_parquet(snakemake.input.candidates),
    Path(snakemake.output[0]).parent,
    prompt_cfg=dict(p.prompt),
    depth=p.depth,
    shard_size=p.shard_size,
    batch_size=p.batch_size,
    dtype=dtype,
)
