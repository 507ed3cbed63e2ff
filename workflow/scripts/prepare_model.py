"""Materialise a configured model as a local safetensors folder (HF id, local dir, GGUF, tiny random)."""
from attnrank import wiring

def main(smk):
    from attnrank import models

    out = models.prepare_model(dict(smk.params.spec), smk.output[0])  # the spec without run-only keys (attnrank.plan)
    return {"source": smk.params.spec.get("source"), "folder": out}


wiring.run(snakemake, main)
