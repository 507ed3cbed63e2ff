"""Every path of a study's results folder, written once: the workflow's rules (through
``workflow/rules/common.smk``), the scripts and the tests take them from here.

The folder is the config's ``results_dir`` (default ``results/<config file stem>``, :func:`attnrank.config.
default_results_dir`); the workflow sets it once at parse time (:func:`set_root`, from
:func:`attnrank.plan.plan_or_exit`). Until then it is ``results``.

Each function takes names or Snakemake wildcard patterns (``"{model}"``) and returns a string. A ``.json``
sidecar sits beside the file it describes (:func:`sidecar`).
"""

from __future__ import annotations

import os

ROOT = "results"


def set_root(root: str) -> None:
    """Make ``root`` the results folder of every path below (one study per Snakemake process)."""
    global ROOT
    ROOT = root


def sidecar(path: str) -> str:
    """The ``.json`` beside an output (``x/run.trec`` -> ``x/run.json``): what the job used and counted."""
    stem, ext = os.path.splitext(path)
    if not ext or "/" in ext:
        raise ValueError(f"sidecar: {path!r} has no file extension")
    return stem + ".json"


def ranx_ready(cache_dir: str) -> str:
    """The marker that ranx's numba kernels are compiled into ``<cache_dir>/numba`` (rule ``ranx_warmup``)."""
    return f"{cache_dir}/numba/.ready"


def study_config() -> str:
    """The validated config of the study (defaults filled in), as it ran: embedded in ``snakemake --report``."""
    return f"{ROOT}/config.yaml"


# ---------------------------------------------------------------------------------------------------- data
def data_files(dataset: str) -> dict[str, str]:
    """``corpus``, ``queries``, ``qrels`` parquet files of a dataset."""
    return {k: f"{ROOT}/data/{dataset}/{k}.parquet" for k in ("corpus", "queries", "qrels")}


def dataset_meta(dataset: str) -> str:
    return f"{ROOT}/data/{dataset}/meta.json"


# ---------------------------------------------------------------------------------------------------- first stage
def bm25_index(dataset: str) -> str:
    return f"{ROOT}/indexes/{dataset}/bm25"


def dense_embeddings(dataset: str, retriever: str) -> str:
    return f"{ROOT}/indexes/{dataset}/dense-{retriever}.npz"


def first_stage_run(dataset: str, retriever: str) -> str:
    return f"{ROOT}/runs/{dataset}/{retriever}.trec"


def candidates(dataset: str, retriever: str) -> str:
    """The candidates of one list: a first stage's shared list (named by the retriever) or a ``candidates.lists``
    entry (its own first stage, depth and word cut)."""
    return f"{ROOT}/candidates/{dataset}/{retriever}.parquet"


def candidates_run(dataset: str, clist: str) -> str:
    """The first-stage run cut at the list's depth (the first-stage row of a candidate list in the tables)."""
    return f"{ROOT}/candidates/{dataset}/{clist}.trec"


# ---------------------------------------------------------------------------------------------------- models, attention
def model_dir(model: str) -> str:
    return f"{ROOT}/models/{model}"


def scores_manifest(model: str, dataset: str, retriever: str, order: str) -> str:
    """The manifest of one attention pass's score cache (its shards lie beside it)."""
    return f"{ROOT}/scores/{model}/{dataset}/{retriever}/{order}/manifest.json"


# ---------------------------------------------------------------------------------------------------- heads, layers
def temperature_tag(t) -> str:
    """The folder tag of a CoRe temperature: ``repr(float(t))``; a wildcard pattern is kept as it is."""
    return t if isinstance(t, str) else repr(float(t))


def detection_set(dataset: str, retriever: str, layout: str) -> str:
    """The detection set in one layout (``shuffle``, ``spread``, ``first``: attnrank.selection.detection)."""
    return f"{ROOT}/detection/{dataset}/{retriever}/{layout}.parquet"


def detection_scores(model: str, order: str, layout: str) -> str:
    """The manifest of the score cache of the detection set in ``layout``."""
    return f"{ROOT}/heads/{model}/{order}/{layout}/scores/manifest.json"


def heads_dir(model: str, order: str, temperature, layout: str) -> str:
    return f"{ROOT}/heads/{model}/{order}/{layout}/t{temperature_tag(temperature)}"


def heads_table(model: str, order: str, temperature, layout: str) -> str:
    """Every (layer, head) with its qr-mass, QRHead and CoRe score and rank, detected on the detection set in
    ``layout`` (``heads.json``: provenance)."""
    return f"{heads_dir(model, order, temperature, layout)}/heads.parquet"


def heads_plot(model: str, order: str, temperature, layout: str, score: str, ext: str = "png") -> str:
    """Heat map of one head score (``qr_mass``, ``qrhead``, ``core``)."""
    return f"{heads_dir(model, order, temperature, layout)}/{score}.{ext}"


def layer_profile(model: str, order: str) -> str:
    """Per-layer metric on the tuning split (Selective-ICR windows)."""
    return f"{ROOT}/layers/{model}/{order}/profile.parquet"


def layer_plot(model: str, order: str, ext: str = "png") -> str:
    return f"{ROOT}/layers/{model}/{order}/profile.{ext}"


def headrank_weights(model: str, order: str, method: str) -> str:
    return f"{ROOT}/headrank/{model}/{order}/{method}.json"


# ---------------------------------------------------------------------------------------------------- runs, evaluation
def rerank_run(model: str, dataset: str, retriever: str, method: str, order: str | None = None) -> str:
    """A re-ranked run: attention methods have a prompt-order folder, text re-rankers none."""
    where = f"{ROOT}/rerank/{model}/{dataset}/{retriever}"
    return f"{where}/{order}/{method}.trec" if order is not None else f"{where}/{method}.trec"


def eval_table(dataset: str) -> str:
    return f"{ROOT}/eval/{dataset}.parquet"


def table(name: str) -> str:
    """A file of the tables stage (``results.csv``, ``main.tex``, ``grid.csv``, ``position_bias.png``, ...)."""
    return f"{ROOT}/tables/{name}"


def plot(name: str) -> str:
    """A figure of the report (``effectiveness.png``, ...)."""
    return f"{ROOT}/plots/{name}"


def latency_model(model: str) -> str:
    return f"{ROOT}/latency/models/{model}.csv"


def latency(name: str) -> str:
    """A file of the latency summary (``latency.csv``, ``tradeoff.png``)."""
    return f"{ROOT}/latency/{name}"


# ---------------------------------------------------------------------------------------------------- logs
def log(rule: str, *parts: str) -> str:
    return f"{ROOT}/logs/{rule}/" + "/".join(parts) + ".log"


def benchmark(rule: str, *parts: str) -> str:
    return f"{ROOT}/benchmarks/{rule}/" + "/".join(parts) + ".tsv"
