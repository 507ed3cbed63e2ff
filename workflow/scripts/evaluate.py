"""Per-query metrics (ranx) of every run of one dataset."""
from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import evaluation, io
    from attnrank.progress import progress

    qrels = pl.read_parquet(smk.input.qrels)
    frames = []
    for path, ids in progress(sorted(smk.params.runs.items()), "evaluate", unit="run"):
        per_q = evaluation.per_query(qrels, io.read_trec(path), smk.params.metrics)
        frames.append(per_q.with_columns(**{k: pl.lit(v) for k, v in ids.items()}))
    out = pl.concat(frames)
    io.write_parquet(out, smk.output[0])
    return {"runs": len(frames), "rows": out.height}


wiring.run(snakemake, main)
