"""Long-form results.csv with significance, results.tex (every metric), main.tex and latency.tex."""
from pathlib import Path

from attnrank import tables, wiring

wiring.setup(snakemake.log[0])
p = snakemake.params
tables.write_tables(
    list(snakemake.input.evals), Path(snakemake.output.csv).parent, p.metric, metrics=p.metrics, baseline=p.baseline,
    significance=dict(p.significance), latency_paths=list(snakemake.input.latency),
    order=tables.TableOrder(**{k: tuple(v) for k, v in p.order.items()}),
)
