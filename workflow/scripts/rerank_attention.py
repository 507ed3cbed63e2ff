"""Rank candidates by one attention method: an aggregation over the cached score tensor (no forward pass)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import candidates, io, methods, scorecache, selectivity

    name, spec = smk.wildcards.method, dict(smk.params.spec)
    kind = spec["kind"]
    cache = Path(smk.input.scores).parent
    manifest = scorecache.read_manifest(cache)
    n_layers = manifest["n_layers_model"]
    artifacts = methods.load_artifacts(spec, dict(smk.input.items()), name)
    scores = scorecache.load_scores(cache)
    run = methods.rank(scores, kind, spec, artifacts, name=name, n_layers=n_layers)
    used = {"method": name, "spec": spec, "score_cache": str(cache), "cache_layers": manifest["n_layers"]}
    used.update(methods.describe(kind, spec, artifacts, name=name, n_layers=n_layers))
    # HeadRank's middle-zone selectivity, for every attention method: share of relevant vs irrelevant documents from
    # the middle of the prompt that reach the top quartile
    used["selectivity"] = selectivity.selectivity(
        scores, pl.read_parquet(smk.input.qrels),
        lambda s: methods.aggregate(s, kind, spec, artifacts, name=name, n_layers=n_layers),
    )
    full = candidates.merge_with_tail(run, io.read_trec(smk.input.run))
    io.write_trec(full, smk.output.run, tag=name)
    io.write_json(smk.output.used, used)
    return {"queries": run["qid"].n_unique(), "reranked": run.height, "ranked": full.height}


wiring.run(snakemake, main)
