"""Materialise a configured model as a local safetensors folder (HF id, local dir, GGUF, tiny random)."""
from attnrank import models, wiring

wiring.setup(snakemake.log[0], snakemake.params.cache_dir)
RUNTIME_KEYS = {"dtype", "batch_size", "core_temperature", "gpu_model", "mem_mb"}  # used by later stages
spec = {k: v for k, v in snakemake.params.spec.items() if k not in RUNTIME_KEYS}
models.prepare_model(spec, snakemake.output[0])
