"""Long-form results.csv with significance, results.tex (every metric), main.tex, latency.tex and the framework x
mechanism grid (grid.csv, grid.tex)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank import grid, tables

    p = smk.params
    results = tables.write_tables(
        list(smk.input.evals), Path(smk.output.csv).parent, p.metric, metrics=p.metrics, baseline=p.baseline,
        significance=dict(p.significance), latency_paths=list(smk.input.latency),
        order=tables.TableOrder(**{k: tuple(v) for k, v in p.order.items()}),
        labels=dict(p.labels), candidates=dict(p.candidates),
    )
    grid.write_grid(results, p.cells, p.metric, Path(smk.output.grid).parent, latency_paths=list(smk.input.latency),
                    sidecars=dict(p.sidecars), methods_order=p.order["methods"], labels=dict(p.labels))
    return {"evals": len(smk.input.evals), "latency_files": len(smk.input.latency)}


wiring.run(snakemake, main)
