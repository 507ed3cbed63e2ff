"""Cluster resources of the workflow's jobs (the SLURM preflight check that finds the cluster's limits is
``attnrank.slurm``).

Sizing: a job asks for what it needs (model jobs from the model's parameter count, first-stage jobs from the
corpus size on disk, a ``models.<m>.mem_mb`` / ``threads`` override wins), a retry after a failure asks for more
(memory x attempt), but never more than the largest node offers (the limits the preflight check finds).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


MB = 1 << 20
TORCH_MB = 2500  # a Python process with torch and transformers imported (and a CUDA context on a GPU)
FIRST_STAGE_MB = 2000  # a Python process with the BM25 index's JVM or a small dense encoder
UNPREPARED_MODEL_MB = 16000  # planning guess for a model that is not prepared yet (re-sized once it is)


# Local scheduling (``snakemake --cores N``): among the jobs that are ready, a higher priority runs first. Every
# job waits on the prepared model (the longest of these; the first stage runs beside it) and the first stage; head
# / layer selection and the latency job feed many jobs (and would otherwise run last, alone), a re-ranking job
# feeds only its dataset's evaluation.
PRIORITY = {"model": 40, "upstream": 30, "selection": 20, "latency": 10}


def text_priority(spec: dict) -> int:
    """Priority of a text re-ranking job, longest first so that the last job to start is a short one: greedy
    decoding (RankGPT's permutations, a generating setwise scorer) costs a forward pass per token, a listwise or
    setwise prompt holds many passages, a pointwise one a single passage."""
    from .text.kinds import MECHANISM_KEY

    kind = spec.get("kind")
    if kind not in ("rankgpt", "setwise"):
        return 0  # pointwise: yes/no and QLM read the logits of one forward pass per passage
    key, default = MECHANISM_KEY[kind]
    return 2 if spec.get(key, default) == "generation" else 1


# ------------------------------------------------------------------------------------------------------ limits
@dataclass
class Limits:
    """What the cluster offers one job at most (None: unknown, no cap): the largest node's memory and CPUs."""

    mem_mb: int | None = None
    threads: int | None = None


_LIMITS = Limits()


def set_limits(limits: Limits) -> None:
    """Cap every job's request from now on (the preflight check sets what it found)."""
    _LIMITS.mem_mb, _LIMITS.threads = limits.mem_mb, limits.threads


def limits() -> Limits:
    return Limits(_LIMITS.mem_mb, _LIMITS.threads)


def memory(need_mb: float, ask_mb: float | None = None, attempt: int = 1) -> int:
    """MB to request: ``ask_mb`` (default ``need_mb``) x attempt, capped at the largest node, never below ``need_mb``."""
    ask = (need_mb if ask_mb is None else ask_mb) * max(1, int(attempt))
    if _LIMITS.mem_mb:
        ask = min(ask, _LIMITS.mem_mb)
    return int(math.ceil(max(need_mb, ask)))


def threads(n: int) -> int:
    """CPUs to request: ``n`` capped at the largest node."""
    n = max(1, int(n))
    return min(n, _LIMITS.threads) if _LIMITS.threads else n


# ------------------------------------------------------------------------------------------------------ sizing
def cpu_only(cfg: dict) -> bool:
    """The CPU-only switch (config key ``cpu_only``; ``--config cpu_only=true`` passes the string 'true')."""
    return str(cfg.get("cpu_only", False)).lower() == "true"


def model_params(model_dir: str | os.PathLike | None) -> int | None:
    """Parameter count of a prepared model folder (from the safetensors headers; None when not prepared yet)."""
    if not model_dir:
        return None
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for f in files:
        with safe_open(str(f), framework="np") as h:
            for key in h.keys():
                total += math.prod(h.get_slice(key).get_shape())
    return total


def cpu_threads(params: int | None) -> int:
    """Threads for a model job on CPU: more for bigger models (matrix products parallelise well)."""
    if params is None or params < 1e9:
        return 2
    return 4 if params < 4e9 else 8


def model_job(spec: dict, model_dir: str | os.PathLike | None, attempt: int = 1, gpu: bool = True) -> dict:
    """``mem_mb`` and ``threads`` of a job that runs the model ``spec`` (prepared at ``model_dir``).

    On a GPU the weights pass through host memory once while loading (x1.5 for the copy); on a CPU they stay there
    in float32 next to the activations (x3). ``spec['mem_mb']`` / ``spec['threads']`` override the estimate.
    """
    params = model_params(model_dir) if model_dir and Path(model_dir).is_dir() else None
    if spec.get("mem_mb"):
        need = ask = float(spec["mem_mb"])
    elif params is None:
        need, ask = TORCH_MB, (TORCH_MB if spec.get("source") == "tiny" else UNPREPARED_MODEL_MB)
    else:
        half = gpu and spec.get("dtype", "auto") in ("auto", "bfloat16", "float16")
        weights_mb = params * (2 if half else 4) / MB
        need = ask = TORCH_MB + (1.5 if gpu else 3.0) * weights_mb
    n = spec.get("threads") or (2 if gpu else cpu_threads(params))
    return {"mem_mb": memory(need, ask, attempt), "threads": threads(n)}


def model_rule_resources(cfg: dict, runtime: int, batch: bool = False) -> dict:
    """Snakemake ``resources`` of every rule that runs a model (wildcard ``model``, input ``model``): a GPU
    (``sbatch --gpus=[<gpu_model>:]1``) unless ``cpu_only``, host memory from the model's size (:func:`model_job`;
    x attempt after a failure, capped by the cluster), and with ``batch`` the prompts per forward pass, halved per
    attempt (scripts read ``snakemake.resources.batch``)."""
    gpu = not cpu_only(cfg)
    models = cfg["models"]
    res = {
        "mem_mb": lambda w, input, attempt: model_job(models[w.model], input.model, attempt, gpu=gpu)["mem_mb"],
        "runtime": runtime,
    }
    if gpu:
        res["gpu"] = 1
        res["gpu_model"] = lambda w: models[w.model].get("gpu_model", "")
    if batch:
        res["batch"] = lambda w, attempt: max(1, models[w.model]["batch_size"] // 2 ** (attempt - 1))
    return res


def model_rule_threads(cfg: dict):
    """Snakemake ``threads`` of a rule that runs a model (see :func:`model_job`)."""
    gpu = not cpu_only(cfg)
    return lambda w, input: model_job(cfg["models"][w.model], input.model, gpu=gpu)["threads"]


def capped_mem(mb: float, doubling: bool = False):
    """Snakemake ``mem_mb`` of a fixed-size job: ``mb``, after a failure x attempt (x 2**(attempt-1) with
    ``doubling``), capped at the largest node of the cluster."""
    return lambda w, attempt: memory(mb, mb * (2 ** (attempt - 1) if doubling else attempt))


def corpus_rule_resources(runtime: int, cfg: dict | None = None) -> dict:
    """Snakemake ``resources`` of a first-stage rule over input ``corpus`` (see :func:`corpus_job`): ``bm25_index``
    without ``cfg``, ``retrieve`` (by the retriever's kind) with it."""
    def mem(w, input, attempt):
        stage = cfg["retrievers"][w.retriever]["kind"] if cfg is not None else "bm25_index"
        return corpus_job(input.corpus, attempt, stage)["mem_mb"]

    return {"mem_mb": mem, "runtime": runtime}


def corpus_rule_threads(w, input) -> int:
    """Snakemake ``threads`` of a first-stage rule over input ``corpus``."""
    return corpus_job(input.corpus)["threads"]


def prepare_rule_resources(cfg: dict, runtime: int) -> dict:
    """Snakemake ``resources`` of ``prepare_model`` (see :func:`prepare_job`)."""
    return {"mem_mb": lambda w, attempt: prepare_job(cfg["models"][w.model], attempt)["mem_mb"], "runtime": runtime}


def prepare_rule_threads(cfg: dict):
    return lambda w: prepare_job(cfg["models"][w.model])["threads"]


def prepare_job(spec: dict, attempt: int = 1) -> dict:
    """``mem_mb`` and ``threads`` of ``prepare_model``: it loads the checkpoint (GGUF: dequantised to float32) once."""
    if spec.get("mem_mb"):
        need = ask = float(spec["mem_mb"])
    elif spec.get("source") == "tiny":
        need = ask = TORCH_MB
    elif spec.get("source") == "gguf" and Path(spec.get("path", "")).is_file():
        # ~4.5 bits per weight on disk -> 32 bits in memory, twice while the state dict is copied in
        need = ask = TORCH_MB + 16 * os.path.getsize(spec["path"]) / MB
    else:  # weights not on disk yet: a generous guess, capped at the largest node
        need, ask = TORCH_MB, 2 * UNPREPARED_MODEL_MB
    return {"mem_mb": memory(need, ask, attempt), "threads": threads(spec.get("threads") or 2)}


# Peak memory fits from bench/bench_scale.py (synthetic BEIR corpus, 60 words a document, 0.25M-2M documents, from
# the rules' benchmark files; docs/cluster.md): (MB at zero, MB per MB of corpus parquet). Requests are HEADROOM x
# the fit; a retry asks for more (memory x attempt).
HEADROOM = 1.3
FIRST_STAGE_FIT = {"bm25_index": (550.0, 9.6), "bm25": (1000.0, 0.0), "dense": (965.0, 9.6)}
DENSE_ENCODER_MB = 500  # a real encoder's weights and activations (the probe's encoder is a tiny random BERT)


def corpus_job(corpus: str | os.PathLike | None, attempt: int = 1, stage: str = "bm25_index") -> dict:
    """``mem_mb`` and ``threads`` of a first-stage job over ``corpus`` (parquet; FIRST_STAGE_MB while it does not
    exist yet). ``stage``: ``bm25_index``, or the retriever kind of a ``retrieve`` job (``bm25``, ``dense``): the
    corpus is streamed, so memory grows with the index / the doc-id column, not with the corpus text in memory."""
    size_mb = os.path.getsize(corpus) / MB if corpus and os.path.isfile(corpus) else 0.0
    if size_mb == 0.0:
        need = FIRST_STAGE_MB
    else:
        a, b = FIRST_STAGE_FIT[stage]
        need = HEADROOM * (a + b * size_mb) + (DENSE_ENCODER_MB if stage == "dense" else 0)
    return {"mem_mb": memory(need, need, attempt), "threads": threads(1 if size_mb < 64 else 4)}


# documents in the corpora of ir_datasets ids (ir_datasets' documentation), by id prefix
KNOWN_CORPUS_DOCS = {
    "dpr-w100": 21_015_324, "msmarco-passage": 8_841_823, "beir/msmarco": 8_841_823, "beir/climate-fever": 5_416_593,
    "beir/fever": 5_416_568, "beir/hotpotqa": 5_233_329, "beir/dbpedia-entity": 4_635_922, "beir/nq": 2_681_468,
    "beir/quora": 522_931, "beir/webis-touche2020": 382_545, "beir/trec-covid": 171_332, "beir/fiqa": 57_638,
    "beir/cqadupstack": 290_379, "beir/scidocs": 25_657, "beir/arguana": 8_674, "beir/scifact": 5_183,
    "beir/nfcorpus": 3_633,
}
# the dataset job's peak (bench/bench_scale.py): Python with polars/pyarrow, the doc-id column (validation: duplicates,
# judgements of unknown documents), and a chunk of documents as Python strings and Arrow buffers
DATASET_FIT = (300.0, 200.0, 3.0)  # MB, MB per million documents, x the chunk's text
IRDS_DOC_BYTES = 600  # a document's bytes when the corpus is not on disk (DPR passages ~600, MS MARCO ~330)


def corpus_estimate(spec: dict) -> tuple[float, float] | None:
    """(documents, bytes a document) of a ``datasets.<key>`` entry before it is converted, or None if unknown:
    a BEIR folder from its corpus.jsonl (size / mean line length of its first MB), synthetic from ``n_docs``,
    an ir_datasets id from :data:`KNOWN_CORPUS_DOCS`."""
    source = spec.get("source")
    if source == "beir":
        f = Path(spec.get("path", "")) / "corpus.jsonl"
        if not f.is_file():
            return None
        with open(f, "rb") as fh:
            head = fh.read(1 << 20)
        lines = max(head.count(b"\n"), 1)
        per_doc = len(head) / lines
        return os.path.getsize(f) / per_doc, per_doc
    if source == "synthetic":
        return float(spec.get("n_docs", 240)), 400.0
    if source == "irds":
        ident = spec.get("id", "")
        for prefix, n in sorted(KNOWN_CORPUS_DOCS.items(), key=lambda kv: -len(kv[0])):
            if ident == prefix or ident.startswith(prefix + "/"):
                return float(n), float(IRDS_DOC_BYTES)
    return None


def dataset_job(spec: dict, attempt: int = 1) -> dict:
    """``mem_mb`` of the ``dataset`` job: HEADROOM x the fit over the corpus estimate; 8000 when the corpus size is
    unknown (doubling on each retry)."""
    est = corpus_estimate(spec)
    if est is None:
        return {"mem_mb": memory(8000, 8000 * 2 ** (max(1, attempt) - 1))}
    from .data.sources import CHUNK_ROWS

    docs, per_doc = est
    a, b, c = DATASET_FIT
    need = HEADROOM * (a + b * docs / 1e6 + c * CHUNK_ROWS * per_doc / MB)
    return {"mem_mb": memory(need, need * 2 ** (max(1, attempt) - 1))}


def dataset_rule_resources(cfg: dict, runtime: int) -> dict:
    """Snakemake ``resources`` of the ``dataset`` rule (see :func:`dataset_job`)."""
    return {"mem_mb": lambda w, attempt: dataset_job(cfg["datasets"][w.dataset], attempt)["mem_mb"], "runtime": runtime}
