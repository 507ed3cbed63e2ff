"""Per-query metrics (ranx) of every run of one dataset (attention runs add their position bias per query)."""
from attnrank import wiring


def main(smk):
    import json
    from pathlib import Path

    import polars as pl

    from attnrank import evaluation, io, position
    from attnrank.progress import progress

    qrels = pl.read_parquet(smk.input.qrels)
    frames = []
    for path, ids in progress(sorted(smk.params.runs.items()), "evaluate", unit="run"):
        per_q = evaluation.per_query(qrels, io.read_trec(path), smk.params.metrics)
        used = Path(path).with_suffix(".json")
        if used.is_file() and "position_bias_per_query" in (info := json.loads(used.read_text())):
            per_q = pl.concat([per_q, position.per_query_rows(info["position_bias_per_query"])])
        frames.append(per_q.with_columns(**{k: pl.lit(v) for k, v in ids.items()}))
    out = pl.concat(frames)
    io.write_parquet(out, smk.output[0])
    return {"runs": len(frames), "rows": out.height}


wiring.run(snakemake, main)
