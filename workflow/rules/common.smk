# The one place that validates the config, sets wildcard constraints and knows the results/ layout.
import attnrank.config

CFG = attnrank.config.validate(config)
R = "results"
NAME = "[A-Za-z0-9_.-]+"


wildcard_constraints:
    dataset=NAME,
    retriever=NAME,
    model=NAME,
    method=NAME,


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
    return runs


def all_outputs():
    out = [f"{R}/tables/results.csv", f"{R}/tables/results.tex"]
    out += [candidates(d, r) for d in eval_datasets() for r in CFG["candidates"]["retrievers"]]
    return out


def log_path(rule, *parts):
    return f"{R}/logs/{rule}/" + "/".join(parts) + ".log"


def bench_path(rule, *parts):
    return f"{R}/benchmarks/{rule}/" + "/".join(parts) + ".tsv"
