"""Detection set for QR/CoRe heads: positives with mined hard negatives, P samples per query in the configured layout (QRHead shuffle, CoRe spread)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank import io
    from attnrank.data import sources
    from attnrank.selection import detection

    spec = smk.params.spec
    ds = sources.read(Path(smk.input.corpus).parent)
    report = {}
    det = detection.build_detection_set(
        ds.queries, ds.qrels, io.read_trec(smk.input.run), ds.corpus,
        n_queries=spec["n_queries"], n_negatives=spec["n_negatives"], positions=spec["positions"], seed=spec["seed"],
        report=report, negatives=spec.get("negatives", "hardest"), layout=spec["layout"],
    )
    io.write_parquet(det, smk.output.parquet)
    io.write_json(smk.output.report, report)
    return {"samples": det["qid"].n_unique(), "rows": det.height, **wiring.counts(report)}


wiring.run(snakemake, main)
