"""Published numbers beside ours: every run of a cell mapped in the config's `published` section, with the difference."""
from attnrank import wiring


def main(smk):
    from attnrank.evaluation import published

    p = smk.params
    return published.published_job(smk.input.results, smk.input.published, dict(smk.output.items()), spec=p.spec,
                                   depth=p.depth)


wiring.run(snakemake, main)
