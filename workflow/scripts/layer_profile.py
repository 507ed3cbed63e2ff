"""nDCG of every single layer on the tuning split (the 'bell curve' that Selective-ICR windows are chosen from)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import io, layers, scorecache

    scores = scorecache.load_scores(Path(smk.input.scores).parent)
    profile = layers.profile_layers(scores, pl.read_parquet(smk.input.qrels), metric=smk.params.metric)
    io.write_parquet(profile, smk.output.profile)
    return {"queries": len(scores), "layers": profile.height}


wiring.run(snakemake, main)
