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


def corpus_rule_resources(runtime: int) -> dict:
    """Snakemake ``resources`` of a first-stage rule over input ``corpus`` (see :func:`corpus_job`)."""
    return {"mem_mb": lambda w, input, attempt: corpus_job(input.corpus, attempt)["mem_mb"], "runtime": runtime}


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


def corpus_job(corpus: str | os.PathLike | None, attempt: int = 1) -> dict:
    """``mem_mb`` and ``threads`` of a first-stage job over ``corpus`` (parquet; 0 MB while it does not exist yet):
    Python with the BM25 index's JVM or the dense encoder, plus the corpus text (parquet is compressed ~2-3x) and
    the index or embeddings built from it."""
    size_mb = os.path.getsize(corpus) / MB if corpus and os.path.isfile(corpus) else 0.0
    need = FIRST_STAGE_MB + 6 * size_mb
    return {"mem_mb": memory(need, need, attempt), "threads": threads(1 if size_mb < 64 else 4)}
