"""End to end: the whole DAG on a tiny synthetic collection through snakemake, then incremental behaviour."""

import copy

import polars as pl
import pytest

from helpers import scheduled_jobs, snakemake

pytestmark = pytest.mark.slow

CONFIG = {
    "cache_dir": ".cache",
    "datasets": {
        "tiny": {"source": "synthetic", "split": "test", "n_docs": 96, "n_queries": 12},
    },
    "retrievers": {
        "bm25": {"kind": "bm25", "depth": 50},
        "dense": {"kind": "dense", "depth": 50, "model": "sentence-transformers/all-MiniLM-L6-v2", "batch_size": 32},
    },
    "candidates": {"depth": 5, "max_doc_words": 40, "retrievers": ["bm25"]},
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    snakemake(wd, CONFIG)
    return wd


def test_pipeline_writes_tables(run_dir):
    csv = pl.read_csv(run_dir / "results" / "tables" / "results.csv")
    got = {(r["method"], r["metric"]) for r in csv.iter_rows(named=True)}
    assert {("bm25", "ndcg@10"), ("dense", "ndcg@10"), ("bm25", "recall@100")} <= got
    ndcg = dict(csv.filter(pl.col("metric") == "ndcg@10").select("method", "value").iter_rows())
    assert ndcg["bm25"] > 0.3 and ndcg["dense"] > 0.3  # far above random on the synthetic topics
    tex = (run_dir / "results" / "tables" / "results.tex").read_text()
    assert r"\toprule" in tex and "tiny" in tex
    cands = pl.read_parquet(run_dir / "results" / "candidates" / "tiny" / "bm25.parquet")
    assert cands.group_by("qid").len()["len"].max() == 5
    for rule in ("dataset", "bm25_index", "retrieve", "evaluate"):
        assert any((run_dir / "results" / "logs" / rule).rglob("*.log")), rule
        if rule != "evaluate":
            assert any((run_dir / "results" / "benchmarks" / rule).rglob("*.tsv")), rule


def test_second_run_schedules_nothing(run_dir):
    proc = snakemake(run_dir, CONFIG, "-n")
    assert scheduled_jobs(proc) == {}, proc.stdout[-2000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_adding_a_dataset_schedules_only_its_jobs(run_dir):
    cfg = copy.deepcopy(CONFIG)
    cfg["datasets"]["tiny2"] = {"source": "synthetic", "split": "test", "n_docs": 64, "n_queries": 6, "seed": 5}
    jobs = scheduled_jobs(snakemake(run_dir, cfg, "-n"))
    # the new dataset's own chain, its evaluation, and the table; nothing of the old dataset
    assert jobs == {"dataset": 1, "bm25_index": 1, "retrieve": 2, "candidates": 1, "evaluate": 1, "tables": 1, "all": 1}, jobs


def test_bad_config_fails_before_any_job(tmp_path):
    cfg = copy.deepcopy(CONFIG)
    cfg["retrievers"]["bm25"]["dept"] = 3
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    assert "config key 'retrievers.bm25.dept': unknown key" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
