"""Write the study's validated config beside its results (and into the report)."""
from attnrank import wiring


def main(smk):
    from attnrank import config

    config.write(smk.params.config, smk.output[0])
    return f"config of {smk.params.config['results_dir']}"


wiring.run(snakemake, main)
