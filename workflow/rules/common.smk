# The one place that validates the config, sets wildcard constraints and knows the results/ layout.
import attnrank.config

# Everything checkable before a job runs (attnrank.config.validate); a bad config stops here with one line.
CFG = attnrank.config.validate_or_exit(config)
import attnrank.protocols

CFG["methods"] = attnrank.protocols.expand(CFG["methods"])  # a method's `protocol` preset fills its unset keys
# display names (tables, plots): <section>.<name>.label, default the key; taken out of the specs so that
# editing a label reruns no computation
LABELS = {n: spec.pop("label", n) for sec in ("datasets", "retrievers", "models", "methods") for n, spec in CFG[sec].items()}
R = "results"
CONDA_ENV = "../../envs/attnrank.yaml"  # every rule's `conda:` (relative to workflow/rules/); used with --sdm conda
NAME = "[A-Za-z0-9_.-]+"


wildcard_constraints:
    dataset=NAME,
    retriever=NAME,
    model=NAME,
    method=NAME,
    order="retrieval|reversed|shuffle",
    temperature="[0-9.e+-]+",


def eval_datasets():
    return [d for d, spec in CFG["datasets"].items() if spec["evaluate"]]


def data_files(dataset):
    return {k: f"{R}/data/{dataset}/{k}.parquet" for k in ("corpus", "queries", "qrels")}


def first_stage_run(dataset, retriever):
    return f"{R}/runs/{dataset}/{retriever}.trec"


def candidates(dataset, retriever):
    return f"{R}/candidates/{dataset}/{retriever}.parquet"


def dataset_runs(dataset):
    """Every run of a dataset that goes into the tables: {trec path: identifying columns}."""
    runs = {
        first_stage_run(dataset, r): {"dataset": dataset, "retriever": r, "model": "-", "method": r}
        for r in CFG["retrievers"]
    }
    for m in CFG["models"]:
        for r in CFG["candidates"]["retrievers"]:
            for meth in TEXT_METHODS:
                ids = {"dataset": dataset, "retriever": r, "model": m, "method": meth}
                runs[rerank_run(m, dataset, r, meth)] = ids
            for meth in ATTENTION_METHODS:
                for o in method_orders(meth):
                    ids = {"dataset": dataset, "retriever": r, "model": m, "method": run_label(meth, o)}
                    runs[attention_run(m, dataset, r, meth, o)] = ids
    return runs


def table_order():
    """Rows and columns of tables and plots in config order."""
    return {"datasets": eval_datasets(), "retrievers": list(CFG["retrievers"]), "models": list(CFG["models"]),
            "methods": list(CFG["methods"])}


def all_outputs():
    out = [f"{R}/tables/results.csv", f"{R}/tables/results.tex", f"{R}/tables/results.html"]
    if ATTENTION_METHODS and CFG["models"]:
        out.append(f"{R}/tables/position_bias.png")
    out += [candidates(d, r) for d in eval_datasets() for r in CFG["candidates"]["retrievers"]]
    out += plot_outputs()  # plots.smk
    if with_latency():
        out += [f"{R}/latency/latency.csv", f"{R}/latency/tradeoff.png"]
    return out


def with_latency():
    """The latency benchmark runs when configured and there is something to time (a first-stage-only run,
    ``methods: {}``, has nothing)."""
    return "latency" in CFG and bool(CFG["models"]) and bool(CFG["methods"])


def grid_sidecars():
    """{.json sidecar of every re-ranked run: identifying columns}: the re-ranking jobs' own seconds per query (grid)
    and what each run used (diagnostics table)."""
    return {
        trec.replace(".trec", ".json"): ids
        for d in eval_datasets() for trec, ids in dataset_runs(d).items() if ids["model"] != "-"
    }


def grid_cells():
    """GRID_CELLS keyed on the method column of the runs (``icr@reversed`` with several prompt orders)."""
    return {**GRID_CELLS, **{run_label(m, o): GRID_CELLS[m] for m in ATTENTION_METHODS for o in method_orders(m)}}


def latency_csvs():
    if not with_latency():
        return []
    return [f"{R}/latency/models/{m}.csv" for m in CFG["models"]]


def log_path(rule, *parts):
    return f"{R}/logs/{rule}/" + "/".join(parts) + ".log"


def bench_path(rule, *parts):
    return f"{R}/benchmarks/{rule}/" + "/".join(parts) + ".tsv"


# ---------------------------------------------------------------------------------------------- models & methods
import attnrank.methods

FAMILY = attnrank.config.method_families(CFG)  # name -> "attention" | "text" (checked in validate)
ATTENTION_METHODS = [m for m, f in FAMILY.items() if f == "attention"]
TEXT_METHODS = [m for m, f in FAMILY.items() if f == "text"]

import attnrank.attnscoring
import attnrank.grid

GRID_CELLS = attnrank.grid.cells(CFG["methods"])  # method -> [framework, mechanism]


def attention_method_spec(method):
    """The attention spec a method aggregates with: an attention method's own entry, or the nested `attention` of a
    text method that scores by attention; None for other text methods."""
    spec = CFG["methods"][method]
    if FAMILY[method] == "attention":
        return spec
    return attnrank.attnscoring.text_attention_spec(spec["kind"], spec, method)


# Every rule passes `code=script_code("<its script>")`: a hash of the script and of every attnrank module it
# imports, transitively (attnrank.codehash). The profiles drop 'code' from the rerun triggers, so a job reruns
# when the logic it runs changes, not when a comment or a module it never imports changes. A test checks that
# every rule has it.
import functools
from pathlib import Path as _Path

import attnrank.codehash

SCRIPTS = _Path(workflow.basedir) / "workflow" / "scripts"


@functools.lru_cache(maxsize=None)
def script_code(script):
    return attnrank.codehash.script_code_hash(SCRIPTS / f"{script}.py")


@functools.lru_cache(maxsize=None)
def method_code(script, name):
    """script_code for a script that runs one attention method: without the other methods' own functions
    (editing one method's function reruns that method only; anything shared reruns all)."""
    kind = CFG["methods"][name]["kind"]
    if kind not in attnrank.methods.METHODS:  # a text framework: scored by attention or not, its script's code
        return script_code(script)
    return attnrank.codehash.registry_code_hash(SCRIPTS / f"{script}.py", attnrank.methods.METHODS, kind)


def one_of(names):
    """A wildcard regex matching exactly these names (or nothing)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def model_dir(model):
    return f"{R}/models/{model}"


def scores_manifest(model, dataset, retriever, order):
    return f"{R}/scores/{model}/{dataset}/{retriever}/{order}/manifest.json"


def rerank_run(model, dataset, retriever, method):
    return f"{R}/rerank/{model}/{dataset}/{retriever}/{method}.trec"


def attention_run(model, dataset, retriever, method, order):
    return f"{R}/rerank/{model}/{dataset}/{retriever}/{order}/{method}.trec"


# ---------------------------------------------------------------------------------------------- prompt order axis
ORDERS = ("retrieval", "reversed", "shuffle")


def _orders(value, key):
    vals = [value] if isinstance(value, str) else list(value or [])
    bad = [v for v in vals if v not in ORDERS]
    if not vals or bad:
        raise attnrank.errors.InputError(f"config key '{key}': orders must be a non-empty list of {list(ORDERS)} (got {value!r})")
    return sorted(set(vals), key=ORDERS.index)


def method_orders(method):
    """Prompt orders an attention method runs in: its own ``order`` (str or list), else ``prompt.orders``, else
    ``prompt.order``. One attention pass per model x dataset x candidate list x order serves every method.
    A text method scored by attention has one run, so one order: its nested ``attention.order`` if set, else the
    first configured order (its windows / sets are prompted, and its heads / layers / weights built, in it)."""
    if FAMILY[method] == "attention":
        spec, key = CFG["methods"][method], f"methods.{method}.order"
    else:
        spec, key = attention_method_spec(method) or {}, f"methods.{method}.attention.order"
    if "order" in spec:
        orders = _orders(spec["order"], key)
    else:
        orders = _orders(CFG["prompt"].get("orders") or CFG["prompt"]["order"], "prompt.orders")
    return orders if FAMILY[method] == "attention" else orders[:1]


ALL_ORDERS = sorted({o for m in ATTENTION_METHODS for o in method_orders(m)}, key=ORDERS.index)


def run_label(method, order):
    """The method column of a run: ``icr`` when the grid has one prompt order, ``icr@reversed`` when it has several."""
    return f"{method}@{order}" if len(ALL_ORDERS) > 1 else method


def prompt_cfg(order):
    """The PromptConfig dict of the attention pass in ``order``."""
    return {**{k: v for k, v in CFG["prompt"].items() if k != "orders"}, "order": order}


def temperature_tag(t):
    return repr(float(t))


def core_temperature(model, method=None):
    """The CoRe detection temperature: the method's ``temperature`` (a text method's: its nested attention spec's),
    else the model's ``core_temperature``, else 0.1."""
    spec = (attention_method_spec(method) or {}) if method in CFG["methods"] else {}
    t = spec.get("temperature", CFG["models"][model].get("core_temperature", 0.1))
    return float(t)


def engine_depth():
    """Layers the main attention pass computes (None = all): the engine.depth key, or for 'auto' the deepest
    layer any configured attention method needs (explicit cuts only; artifacts are not known at planning)."""
    d = CFG["engine"]["depth"]
    if d == "full":
        return None
    if d == "auto":
        return attnrank.methods.engine_depth({m: CFG["methods"][m] for m in ATTENTION_METHODS}, None, None)
    return int(d)


def heads_table(model, order, temperature):
    return f"{R}/heads/{model}/{order}/t{temperature_tag(temperature)}/heads.parquet"


def artifact_files(model, method, order=None):
    """Inputs an attention method (or a text method scored by attention) needs besides the score cache: head
    ranking, layer profile, HeadRank weights, keyed on the kind of its attention spec. Heads are detected, layers
    profiled and HeadRank trained with prompts in the order the method re-ranks in (default: its first order)."""
    spec = attention_method_spec(method)
    if spec is None:
        return {}
    order = order or method_orders(method)[0]
    needs = attnrank.methods.needs(spec["kind"])
    files = {}
    if "heads" in needs:
        files["heads"] = heads_table(model, order, core_temperature(model, method))
    if "window" in needs:
        files["profile"] = f"{R}/layers/{model}/{order}/profile.parquet"
    if "weights" in needs:
        files["weights"] = f"{R}/headrank/{model}/{order}/{method}.json"
    return files


def method_artifacts(w):
    return artifact_files(w.model, w.method, getattr(w, "order", None))


# ----------------------------------------------------------------------------------------------------- resources
import attnrank.resources

GPU = not attnrank.resources.cpu_only(CFG)  # model rules run without GPUs, CPU-sized (docs/cluster.md)


def model_resources(runtime, batch=False):
    """Resources of every rule that runs a model: a GPU (sbatch --gpus=[<gpu_model>:]1) unless cpu_only, host
    memory from the model's size (attnrank.resources.model_job; x attempt after a failure, capped by the cluster),
    and with ``batch`` the prompts per forward pass, halved per attempt (scripts read snakemake.resources.batch)."""
    res = {
        "mem_mb": lambda w, input, attempt: attnrank.resources.model_job(CFG["models"][w.model], input.model, attempt, gpu=GPU)["mem_mb"],
        "runtime": runtime,
    }
    if GPU:
        res["gpu"] = 1
        res["gpu_model"] = lambda w: CFG["models"][w.model].get("gpu_model", "")
    if batch:
        res["batch"] = lambda w, attempt: max(1, CFG["models"][w.model]["batch_size"] // 2 ** (attempt - 1))
    return res


def model_threads(w, input):
    return attnrank.resources.model_job(CFG["models"][w.model], input.model, gpu=GPU)["threads"]


def capped_mem(mb, doubling=False):
    """A fixed-size job's memory: ``mb``, after a failure x attempt (x 2**(attempt-1) with ``doubling``), capped at
    the largest node of the cluster."""
    return lambda w, attempt: attnrank.resources.memory(mb, mb * (2 ** (attempt - 1) if doubling else attempt))


# The one onstart handler of the workflow (Snakemake keeps only the last one defined).
onstart:
    # record which lock files this run owns, so a later run can release them after a kill (attnrank.wiring)
    attnrank.wiring.record_lock_owner(getattr(workflow.persistence, "_lockfile", None))
    # --profile slurm: check the cluster before anything is submitted, and cap requests at its largest node
    attnrank.resources.snakemake_preflight(workflow)
