"""Detection set for QR/CoRe heads: positives with mined hard negatives, P samples per query in the configured layout (QRHead shuffle, CoRe spread)."""
from attnrank import wiring


def main(smk):
    from attnrank import io
    import polars as pl

    from attnrank.selection import detection

    spec = smk.params.spec
    report = {}
    det = detection.build_detection_set(  # the corpus is scanned for the documents it needs, not read whole
        pl.read_parquet(smk.input.queries), pl.read_parquet(smk.input.qrels), io.read_trec(smk.input.run), smk.input.corpus,
        n_queries=spec["n_queries"], n_negatives=spec["n_negatives"], positions=spec["positions"], seed=spec["seed"],
        report=report, negatives=spec.get("negatives", "hardest"), layout=spec["layout"],
    )
    io.write_parquet(det, smk.output.parquet)
    io.write_json(smk.output.report, report)
    return {"samples": det["qid"].n_unique(), "rows": det.height, **wiring.counts(report)}


wiring.run(snakemake, main)
