"""Long-form results.csv with significance, results.tex (every metric), main.tex, latency.tex and the framework x
mechanism grid (grid.csv, grid.tex)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    from attnrank.evaluation import report

    p, out = smk.params, smk.output
    return report.tables_job(list(smk.input.evals), list(smk.input.latency), Path(out.csv).parent, Path(out.grid).parent,
                             metric=p.metric, metrics=p.metrics, baseline=p.baseline, significance=p.significance,
                             order=p.order, labels=p.labels, candidates=p.candidates, cells=p.cells, sidecars=p.sidecars)


wiring.run(snakemake, main)
