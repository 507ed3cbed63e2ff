"""One attention pass over a candidates file -> the sharded, resumable score cache (see docs/attention.md)."""
import os
from pathlib import Path

from attnrank import wiring


def main(smk):
    import polars as pl
    import torch

    from attnrank import scorecache

    p = smk.params
    on_shard = None
    if os.environ.get("ATTNRANK_TEST_KILL_AFTER_SHARDS"):  # fault injection for the resume tests: die like SIGKILL
        kill_after = int(os.environ["ATTNRANK_TEST_KILL_AFTER_SHARDS"])
        on_shard = lambda i, path: wiring.simulate_kill(os.environ.get("ATTNRANK_TEST_KILL_WHAT", "job")) if i + 1 >= kill_after else None  # noqa: E731
    cache = scorecache.compute_cache(
        smk.input.model,
        pl.read_parquet(smk.input.candidates),
        Path(smk.output[0]).parent,
        prompt_cfg=dict(p.prompt),
        layers=p.layers,
        shard_size=p.shard_size,
        batch_size=getattr(smk.resources, "batch", p.batch_size),  # halves on an out-of-memory retry
        dtype=None if p.dtype == "auto" else getattr(torch, p.dtype),
        on_shard=on_shard,
        token_scores=p.token_scores,
        token_dtype=p.token_dtype,
    )
    man = scorecache.read_manifest(cache)
    return {"queries": man["n_queries"], "shards": len(man["shards"]), "layers": man["n_layers"], "heads": man["n_heads"]}


wiring.run(snakemake, main)
