"""One attention pass over a candidates file -> the sharded, resumable score cache (see docs/attention.md)."""
from attnrank import wiring


def main(smk):
    from attnrank.attention import scorecache

    p = smk.params
    batch = getattr(smk.resources, "batch", p.batch_size)  # halves on an out-of-memory retry
    return scorecache.attention_pass(smk.input.model, smk.input.candidates, smk.output[0], p.prompt, p.layers,
                                     p.shard_size, batch, p.dtype, p.token_scores, p.token_dtype,
                                     on_shard=wiring.shard_kill_hook())  # fault injection of the resume tests


wiring.run(snakemake, main)
