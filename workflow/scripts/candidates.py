"""Top-k candidates with query and document text, for the re-rankers."""
from pathlib import Path

from attnrank import candidates, data, io, wiring

wiring.setup(snakemake.log[0])
ds = data.read(Path(snakemake.input.corpus).parent)
cands, meta = candidates.build(
    ds, io.read_trec(snakemake.input.run), snakemake.params.depth, snakemake.params.max_doc_words,
    key=f"{snakemake.wildcards.dataset}/{snakemake.wildcards.retriever}",
)
io.write_parquet(cands, snakemake.output.parquet)
io.write_json(snakemake.output.meta, meta)
