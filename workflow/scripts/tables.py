"""Aggregate every evaluated run into results.csv and results.tex."""
from pathlib import Path

from attnrank import tables, wiring

wiring.setup(snakemake.log[0])
tables.write_tables(list(snakemake.input), Path(snakemake.output.csv).parent, snakemake.params.metric)
