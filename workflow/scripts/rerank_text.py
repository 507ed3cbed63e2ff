"""Re-rank candidates with a generation or likelihood method, or a text framework scored by attention (the model runs here)."""
from attnrank import wiring


def main(smk):
    from attnrank.text import rerank

    prompt = {**smk.params.prompt, "max_doc_tokens": smk.params.max_doc_tokens}
    return rerank.rerank_job(smk.wildcards.method, smk.params.spec, prompt, dict(smk.input.items()),
                                 dict(smk.output.items()))


wiring.run(snakemake, main)
