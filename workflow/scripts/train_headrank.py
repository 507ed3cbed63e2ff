"""Train HeadRank head weights on the tuning split's cached attention scores (model frozen)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import headrank, headrank_fit, scorecache

    params = {k: v for k, v in smk.params.spec.items() if k in headrank.HeadRankConfig.__dataclass_fields__}
    result = headrank_fit.train(
        scorecache.load_scores(Path(smk.input.scores).parent), pl.read_parquet(smk.input.qrels), headrank.HeadRankConfig(**params)
    )
    headrank.save_weights(result, smk.output[0])
    return {"train_queries": len(result.train_qids), "skipped": sum(result.skipped.values()), "selected_heads": len(result.selected), "depth": result.depth}


wiring.run(snakemake, main)
