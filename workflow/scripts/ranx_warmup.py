"""Compile ranx's numba kernels into the shared cache once."""
from attnrank import evaluation, io, wiring

wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
evaluation.warmup()
io.write_text(snakemake.output[0], "ok\n")
