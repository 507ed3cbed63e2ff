"""HTML results and grid tables for the report, the diagnostics table from the runs' sidecars, and effectiveness per
dataset."""
from attnrank import wiring


def main(smk):
    from pathlib import Path

    import polars as pl

    from attnrank import io, report, tables

    p, out = smk.params, smk.output
    order = tables.TableOrder(**{k: tuple(v) for k, v in p.order.items()})
    labels = dict(p.labels)
    results = pl.read_csv(smk.input.results, infer_schema_length=None)
    io.write_text(out.html, report.results_html(results, p.metric, p.metrics, order=order, labels=labels, candidates=dict(p.candidates)))
    io.write_text(out.grid, report.grid_html(pl.read_csv(smk.input.grid, infer_schema_length=None), order=order, labels=labels))
    diag = report.write_diagnostics(dict(p.sidecars), Path(out.diagnostics).parent, order=order, labels=labels)
    report.plot_effectiveness(results, out.plot, p.metric, order=order, labels=labels)
    return {"runs": diag.height}


wiring.run(snakemake, main)
