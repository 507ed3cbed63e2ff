"""Long-form results.csv with significance, results.tex (every metric), main.tex and latency.tex."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank import tables

    p = smk.params
    tables.write_tables(
        list(smk.input.evals), Path(smk.output.csv).parent, p.metric, metrics=p.metrics, baseline=p.baseline,
        significance=dict(p.significance), latency_paths=list(smk.input.latency),
        order=tables.TableOrder(**{k: tuple(v) for k, v in p.order.items()}),
    )
    return {"evals": len(smk.input.evals), "latency_files": len(smk.input.latency)}


wiring.run(snakemake, main)
