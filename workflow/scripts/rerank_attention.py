"""Rank candidates by one attention method: an aggregation over the cached score tensor (no forward pass)."""
from pathlib import Path

from attnrank import wiring


def main(smk):
    import polars as pl

    from attnrank import candidates, io, methods, position, scorecache, selectivity

    name, spec = smk.wildcards.method, dict(smk.params.spec)
    kind = spec["kind"]
    cache = Path(smk.input.scores).parent
    manifest = scorecache.read_manifest(cache)
    n_layers = manifest["n_layers_model"]
    artifacts = methods.load_artifacts(spec, dict(smk.input.items()), name)
    scores = scorecache.load_scores(cache)
    run = methods.rank(scores, kind, spec, artifacts, name=name, n_layers=n_layers)
    used = {"method": name, "spec": spec, "score_cache": str(cache), "cache_layers": manifest["n_layers"],
            "model_layers": n_layers}
    used.update(methods.describe(kind, spec, artifacts, name=name, n_layers=n_layers))

    def score(s):
        return methods.aggregate(s, kind, spec, artifacts, name=name, n_layers=n_layers)

    # HeadRank's middle-zone selectivity, for every attention method: share of relevant vs irrelevant documents from
    # the middle of the prompt that reach the top quartile
    used["selectivity"] = selectivity.selectivity(scores, pl.read_parquet(smk.input.qrels), score)
    # position bias: per query Spearman between a document's score and its prompt slot (evaluation reports the mean)
    bias = position.position_bias(scores, score)
    used["prompt_order"] = manifest["prompt"]["order"]
    used["position_bias"] = sum(bias.values()) / len(bias) if bias else None
    used["position_bias_per_query"] = bias
    if spec.get("protocol"):
        from attnrank import protocols

        used["protocol"] = spec["protocol"]
        used["protocol_deviations"] = protocols.deviations(spec["protocol"], smk.params.grid, smk.wildcards.retriever)
    full = candidates.merge_with_tail(run, io.read_trec(smk.input.run))
    io.write_trec(full, smk.output.run, tag=name)
    io.write_json(smk.output.used, used)
    return {"queries": run["qid"].n_unique(), "reranked": run.height, "ranked": full.height,
            "position_bias": used["position_bias"]}


wiring.run(snakemake, main)
