"""Materialise a configured model as a local safetensors folder (HF id, local dir, GGUF, tiny random)."""
from attnrank import wiring

RUNTIME_KEYS = {"dtype", "batch_size", "core_temperature", "gpu_model", "mem_mb"}  # used by later stages


def main(smk):
    from attnrank import models

    spec = {k: v for k, v in smk.params.spec.items() if k not in RUNTIME_KEYS}
    out = models.prepare_model(spec, smk.output[0])
    return {"source": spec.get("source"), "folder": out}


wiring.run(snakemake, main)
