"""Score every (layer, head) on the detection set (qr_mass, QRHead, CoRe), rank them, record provenance (heat maps:
rule head_plots)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import detection, heads, io, scorecache

    p, w = smk.params, smk.wildcards
    cache = Path(smk.input.scores).parent
    labels = detection.positive_labels(pl.read_parquet(smk.input.detection))
    table = heads.score_heads(scorecache.iter_scores(cache), labels, p.temperature)
    io.write_parquet(table, smk.output.heads)
    io.write_json(smk.output.provenance, heads.provenance(
        model=w.model, order=w.order, temperature=p.temperature, detection=dict(p.detection), prompt=dict(p.prompt),
        manifest=scorecache.read_manifest(cache), n_samples=len(labels),
    ))
    return {"heads": table.height, "samples": len(labels)}


wiring.run(snakemake, main)
