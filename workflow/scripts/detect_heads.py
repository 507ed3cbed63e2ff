"""Score every (layer, head) on the detection set (qr_mass, QRHead, CoRe), rank them, record provenance (heat maps:
rule head_plots)."""
from attnrank import wiring


def main(smk):
    from attnrank.selection import detection

    p, w = smk.params, smk.wildcards
    return detection.detect_heads(smk.input.scores, smk.input.detection, p.temperature, smk.output.heads,
                                  smk.output.provenance, model=w.model, order=w.order, detection=p.detection, prompt=p.prompt)


wiring.run(snakemake, main)
