"""One attention pass over a candidates file -> the sharded, resumable score cache (see docs/attention.md)."""
import os
from pathlib import Path

import polars as pl

import torch

from attnrank import scorecache, wiring

wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
p = snakemake.params
on_shard = None
if os.environ.get("ATTNRANK_TEST_KILL_AFTER_SHARDS"):  # fault injection for the resume test: die like SIGKILL
    kill_after = int(os.environ["ATTNRANK_TEST_KILL_AFTER_SHARDS"])
    on_shard = lambda i, path: os._exit(137) if i + 1 >= kill_after else None  # noqa: E731
dtype = None if p.dtype == "auto" else getattr(torch, p.dtype)
scorecache.compute_cache(
    snakemake.input.model,
    pl.read_parquet(snakemake.input.candidates),
    Path(snakemake.output[0]).parent,
    prompt_cfg=dict(p.prompt),
    depth=p.depth,
    shard_size=p.shard_size,
    batch_size=getattr(snakemake.resources, "batch", p.batch_size),  # halves on an out-of-memory retry
    dtype=dtype,
    on_shard=on_shard,
)
