"""Compile ranx's numba kernels into the shared cache once."""
from attnrank import wiring


def main(smk):
    from attnrank import io
    from attnrank.evaluation import metrics

    metrics.warmup(smk.params.metrics)
    io.write_text(smk.output[0], "ok\n")
    return "ranx kernels compiled"


wiring.run(snakemake, main)
