"""One attention re-ranking run: an aggregation over the cached score tensor (no forward pass), merged with the
first-stage tail, and the sidecar that says what it used (layers, heads, window), how selective it was, its
position bias and, for a paper's preset, where the grid deviates from the paper."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .. import io
from . import artifacts as artifact_files, methods, position, scorecache
from ..retrieval import candidates
from ..selection import selectivity


def rerank(name: str, spec: dict, inputs: dict, outputs: dict, retriever: str, grid: dict | None = None) -> dict:
    """The ``rerank_attention`` job: ``inputs`` (scores manifest, first-stage run, qrels, artifacts: heads / profile
    / weights) -> ``outputs`` (run: TREC, used: its sidecar). Returns the job's summary counts."""
    spec = dict(spec)
    kind = spec["kind"]
    cache = Path(inputs["scores"]).parent
    manifest = scorecache.read_manifest(cache)
    n_layers = manifest["n_layers_model"]
    artifacts = artifact_files.load_artifacts(spec, inputs, name)
    scores = scorecache.load_scores(cache)
    run = methods.rank(scores, kind, spec, artifacts, name=name, n_layers=n_layers)
    used = {"method": name, "spec": spec, "score_cache": str(cache), "cache_layers": manifest["n_layers"],
            "model_layers": n_layers}
    used.update(methods.describe(kind, spec, artifacts, name=name, n_layers=n_layers))

    def score(s):
        return methods.aggregate(s, kind, spec, artifacts, name=name, n_layers=n_layers)

    # HeadRank's middle-zone selectivity, for every attention method: share of relevant vs irrelevant documents from
    # the middle of the prompt that reach the top quartile
    used["selectivity"] = selectivity.selectivity(scores, pl.read_parquet(inputs["qrels"]), score)
    # position bias: per query Spearman between a document's score and its prompt slot (evaluation reports the mean)
    bias = position.position_bias(scores, score)
    used["prompt_order"] = manifest["prompt"]["order"]
    used["position_bias"] = sum(bias.values()) / len(bias) if bias else None
    used["position_bias_per_query"] = bias
    if spec.get("protocol"):
        from .. import protocols

        used["protocol"] = spec["protocol"]
        grid = grid or {}
        used["protocol_deviations"] = protocols.deviations(
            spec["protocol"], grid, retriever, prompt=manifest.get("prompt"), model_id=grid.get("model_id"),
            dataset=grid.get("dataset_name"), method=spec)
    full = candidates.merge_with_tail(run, io.read_trec(inputs["run"]))
    io.write_trec(full, outputs["run"], tag=name)
    io.write_json(outputs["used"], used)
    return {"queries": run["qid"].n_unique(), "reranked": run.height, "ranked": full.height,
            "position_bias": used["position_bias"]}
