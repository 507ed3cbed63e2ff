"""End to end: the whole DAG on a tiny synthetic collection through snakemake, then incremental behaviour."""

import base64
import copy
import json
import re

import numpy as np
import polars as pl
import pytest

from helpers import scheduled_jobs, snakemake

pytestmark = pytest.mark.slow

CONFIG = {
    "cache_dir": ".cache",
    "datasets": {
        "tiny": {"source": "synthetic", "split": "test", "n_docs": 96, "n_queries": 12},
        "tiny-train": {"source": "synthetic", "split": "train", "n_docs": 96, "n_queries": 12, "evaluate": False},
    },
    "retrievers": {
        "bm25": {"kind": "bm25", "depth": 50},
        "dense": {"kind": "dense", "depth": 50, "model": "sentence-transformers/all-MiniLM-L6-v2", "batch_size": 32},
    },
    "candidates": {"depth": 5, "max_doc_words": 40, "retrievers": ["bm25"]},
    "models": {"tiny-llama": {"source": "tiny", "arch": "llama"}},
    "prompt": {"max_doc_tokens": 40},
    "engine": {"shard_size": 2},
    "detection": {"dataset": "tiny-train", "retriever": "bm25", "n_queries": 6, "n_negatives": 4, "positions": 2},
    "tuning": {"dataset": "tiny-train", "retriever": "bm25"},
    "methods": {
        "icr": {"kind": "icr"},
        "qr": {"kind": "qr-mass", "k_heads": 3, "calibration": "na"},
        "qrhead": {"kind": "qrhead", "k_heads": 2},
        "yesno": {"kind": "yesno"},
    },
}


def with_changes(fn):
    cfg = copy.deepcopy(CONFIG)
    fn(cfg)
    return cfg


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    wd = tmp_path_factory.mktemp("wf")
    snakemake(wd, CONFIG)
    return wd


def test_pipeline_writes_tables(run_dir):
    csv = pl.read_csv(run_dir / "results" / "tables" / "results.csv")
    got = {(r["model"], r["method"], r["metric"]) for r in csv.iter_rows(named=True)}
    for model, method in [("-", "bm25"), ("-", "dense"), ("tiny-llama", "icr"), ("tiny-llama", "qr"), ("tiny-llama", "qrhead"), ("tiny-llama", "yesno")]:
        assert (model, method, "ndcg@10") in got, (model, method)
    ndcg = dict(csv.filter((pl.col("metric") == "ndcg@10") & (pl.col("model") == "-")).select("method", "value").iter_rows())
    assert ndcg["bm25"] > 0.3 and ndcg["dense"] > 0.3  # far above random on the synthetic topics
    assert (run_dir / "results" / "tables" / "results.tex").read_text().count(r"\toprule") >= 1
    cands = pl.read_parquet(run_dir / "results" / "candidates" / "tiny" / "bm25.parquet")
    assert cands.group_by("qid").len()["len"].max() == 5
    # heads used are written beside the run, and re-ranked runs keep the first-stage tail below the top-k
    used = json.loads((run_dir / "results/rerank/tiny-llama/tiny/bm25/retrieval/qr.json").read_text())
    assert len(used["heads"]) == 3
    sel = used["selectivity"]  # HeadRank's middle-zone figure, written for every attention method
    assert sel["n_queries"] == 6 and sel["relevant_middle"] + sel["irrelevant_middle"] > 0
    from attnrank import io

    rer = io.read_trec(run_dir / "results/rerank/tiny-llama/tiny/bm25/retrieval/icr.trec")
    first = io.read_trec(run_dir / "results/runs/tiny/bm25.trec")
    count = lambda run: dict(run.group_by("qid").len().iter_rows())  # noqa: E731
    assert count(rer) == count(first)
    top = rer.filter(pl.col("rank") <= 5).join(first.filter(pl.col("rank") <= 5), on=["qid", "docid"], how="anti")
    assert top.height == 0  # the re-ranked top-5 is a permutation of the first-stage top-5
    for rule in ("dataset", "bm25_index", "retrieve", "evaluate", "attention_scores", "rerank"):
        assert any((run_dir / "results" / "logs" / rule).rglob("*.log")), rule
    grid = pl.read_csv(run_dir / "results" / "tables" / "grid.csv")
    cells = {r["method"]: (r["framework"], r["mechanism"]) for r in grid.iter_rows(named=True)}
    assert cells == {m: ("full list", "attention") for m in ("icr", "qr", "qrhead")} | {"yesno": ("pointwise", "generation")}
    assert r"\multicolumn{2}{c}{Attention}" in (run_dir / "results" / "tables" / "grid.tex").read_text()


def embedded(report_html: str, filename: str) -> str:
    """The text of a file embedded (base64 data URI) in a Snakemake report."""
    m = re.search(rf"filename={re.escape(filename)};base64,([A-Za-z0-9+/=]+)", report_html)
    assert m, f"{filename} is not embedded in the report"
    return base64.b64decode(m.group(1)).decode()


def test_report_html(run_dir):
    snakemake(run_dir, CONFIG, "--report", "report.html")
    html = (run_dir / "report.html").read_text(errors="replace")
    for name in ("qrhead.png", "core.png", "results.csv", "position_bias.png", "main.tex", "effectiveness.png", "grid.tex"):
        assert name in html, name
    # the tables are in the report as HTML tables, not only as downloads
    results = embedded(html, "results.html")
    assert results.count("<table>") == 3 and "nDCG@10" in results and "<td>tiny (6)</td>" in results
    for method in ("bm25", "dense", "icr", "qr", "yesno"):
        assert f"<th>{method}</th>" in results, method
    diagnostics = embedded(html, "diagnostics.html")
    assert "<td>qr</td>" in diagnostics and "<td>yesno</td>" in diagnostics
    assert r"\begin{table" in embedded(html, "main.tex")


def test_a_label_reruns_no_computation(run_dir):
    jobs = scheduled_jobs(snakemake(run_dir, with_changes(lambda c: c["methods"]["qr"].update(label="QR-R")), "-n"))
    # study_config: the record of the config the study ran with changes with any config edit (a 1-second job)
    assert jobs == {"study_config": 1, "tables": 1, "report_tables": 1, "head_plots": 1, "position_bias_plot": 1, "all": 1}, jobs


def test_second_run_schedules_nothing(run_dir):
    proc = snakemake(run_dir, CONFIG, "-n")
    assert scheduled_jobs(proc) == {}, proc.stdout[-2000:]


def test_adding_a_dataset_schedules_only_its_jobs(run_dir):
    cfg = with_changes(lambda c: c["datasets"].update(tiny2={"source": "synthetic", "n_docs": 64, "n_queries": 6, "seed": 5}))
    jobs = scheduled_jobs(snakemake(run_dir, cfg, "-n"))
    # the new dataset's chain (2 first stages, 1 attention pass, 3 re-rankings), its evaluation and the table
    assert jobs.pop("study_config", 0) == 1, jobs  # the study's config record: a config edit reruns it
    assert jobs == {
        "dataset": 1, "bm25_index": 1, "retrieve": 2, "candidates": 1, "attention_scores": 1,
        "rerank_attention": 3, "rerank_text": 1, "evaluate": 1, "tables": 1, "position_bias_plot": 1, "report_tables": 1, "all": 1,
    }, jobs


def test_adding_an_attention_method_needs_no_new_attention_pass(run_dir):
    def add(c):
        c["methods"]["core"] = {"kind": "core", "k_heads": 2}
        c["methods"]["icr-pruned"] = {"kind": "icr", "max_layer": 0}

    jobs = scheduled_jobs(snakemake(run_dir, with_changes(add), "-n"))
    # no attention pass over the evaluation set; CoRe detects on its own layout (spread: the grid's QRHead heads are
    # on QRHead's shuffled one), so one detection set, pass and head table for it; the heat maps outline the new heads
    assert jobs.pop("study_config", 0) == 1, jobs  # the study's config record: a config edit reruns it
    assert jobs == {"rerank_attention": 2, "evaluate": 1, "tables": 1, "position_bias_plot": 1, "report_tables": 1,
                    "detection_set": 1, "detection_scores": 1, "detect_heads": 1, "head_plots": 2, "all": 1}, jobs


def test_changing_one_methods_params_reruns_only_that_method(run_dir):
    jobs = scheduled_jobs(snakemake(run_dir, with_changes(lambda c: c["methods"]["qr"].update(k_heads=2)), "-n"))
    assert jobs.pop("study_config", 0) == 1, jobs  # the study's config record: a config edit reruns it
    assert jobs == {"rerank_attention": 1, "evaluate": 1, "tables": 1, "position_bias_plot": 1, "report_tables": 1, "head_plots": 1, "all": 1}, jobs


def test_adding_a_model_schedules_only_its_jobs(run_dir):
    cfg = with_changes(lambda c: c["models"].update({"tiny-qwen": {"source": "tiny", "arch": "qwen3"}}))
    jobs = scheduled_jobs(snakemake(run_dir, cfg, "-n"))
    assert jobs.pop("study_config", 0) == 1, jobs  # the study's config record: a config edit reruns it
    assert jobs == {
        "prepare_model": 1, "attention_scores": 1, "detection_scores": 1, "detect_heads": 1, "head_plots": 1,
        "rerank_attention": 3, "rerank_text": 1, "evaluate": 1, "tables": 1, "position_bias_plot": 1, "report_tables": 1, "all": 1,
    }, jobs


def test_killed_run_resumes_from_completed_shards_with_a_plain_rerun(run_dir, tmp_path):
    """SIGKILL the whole snakemake run (main process and jobs) after the attention pass's first shard: it leaves
    its lock and incomplete markers. A plain rerun (default profile, no --unlock, no --rerun-incomplete) removes
    the stale lock, redoes the incomplete job, keeps the finished shard and equals an uninterrupted run. Then a
    corrupt input fails its job with the traceback in the job's own log."""
    import base64
    import os

    from attnrank.attention import scorecache

    cfg = with_changes(lambda c: c.update(methods={"icr": {"kind": "icr"}}))
    wd = tmp_path / "killed"
    wd.mkdir()
    target = ["results/scores/tiny-llama/tiny/bm25/retrieval/manifest.json"]
    kill = {"ATTNRANK_TEST_KILL_AFTER_SHARDS": "1", "ATTNRANK_TEST_KILL_WHAT": "run"}
    proc = snakemake(wd, cfg, *target, check=False, env=kill, new_session=True)
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-2000:])
    cache = wd / "results/scores/tiny-llama/tiny/bm25/retrieval"
    assert sorted(p.name for p in cache.glob("shard-*.npz")) == ["shard-00000.npz"]
    assert not (cache / "manifest.json").exists()
    assert sorted(p.name for p in (wd / ".snakemake/locks").iterdir()) == ["0.input.lock", "0.output.lock"]
    # a job killed after writing its output but before snakemake recorded it: snakemake's incomplete marker
    done = "results/data/tiny/meta.json"
    (wd / ".snakemake/incomplete" / base64.urlsafe_b64encode(done.encode()).decode()).write_text('{"external_jobid": null}')
    before = os.stat(wd / done).st_mtime_ns

    proc = snakemake(wd, cfg, *target)
    assert "removed 2 stale lock file(s) left by a killed snakemake run" in proc.stderr
    assert os.stat(wd / done).st_mtime_ns != before  # the incomplete job was redone, not an IncompleteFilesException
    assert not list((wd / ".snakemake/locks").glob("*"))  # snakemake removed its own lock at the end
    log = (wd / "results/logs/attention_scores/tiny-llama/tiny/bm25/retrieval.log").read_text()
    assert "1 of 3 shards kept" in log
    resumed = scorecache.load_scores(cache)
    full = scorecache.load_scores(run_dir / "results/scores/tiny-llama/tiny/bm25/retrieval")
    assert [s.qid for s in resumed] == [s.qid for s in full]
    for a, b in zip(resumed, full):
        np.testing.assert_allclose(a.raw, b.raw, rtol=0, atol=1e-6)
        np.testing.assert_allclose(a.masked_prefix, b.masked_prefix, rtol=0, atol=1e-6)
    assert_logs_end_with_summary(wd, ["dataset", "bm25_index", "retrieve", "candidates", "prepare_model", "attention_scores"])

    (wd / "results/runs/tiny/bm25.trec").write_text("q1 Q0 d1\n")  # corrupt: 3 columns
    proc = snakemake(wd, cfg, "results/candidates/tiny/bm25.parquet", check=False)
    assert proc.returncode != 0
    log = (wd / "results/logs/candidates/tiny/bm25.log").read_text()
    assert "Traceback (most recent call last)" in log and "read_trec" in log
    assert "InputError: results/runs/tiny/bm25.trec:1: expected 6 columns" in log


def test_bad_config_fails_before_any_job(tmp_path):
    cfg = with_changes(lambda c: c["retrievers"]["bm25"].update(dept=3))
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0
    assert "config key 'retrievers.bm25.dept': unknown key" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
    cfg = with_changes(lambda c: c["methods"].update(bad={"kind": "nope"}))
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    assert "config key 'methods.bad.kind': unknown kind 'nope'" in proc.stdout + proc.stderr
    cfg = with_changes(lambda c: c["methods"].update(old={"kind": "qr", "k_heads": 4}))
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    assert "config key 'methods.old.kind': kind 'qr' was renamed: use 'qr-mass'" in proc.stdout + proc.stderr


DONE_LINE = r" INFO attnrank: done: .+ in \d+\.\d s$"


def assert_logs_end_with_summary(wd, rules):
    """Every rule log is non-empty and ends with 'done: <summary> in <s> s'; each of ``rules`` wrote one."""
    import re

    logs = sorted((wd / "results" / "logs").rglob("*.log"))
    for log in logs:
        lines = log.read_text().splitlines()
        assert lines and re.search(DONE_LINE, lines[-1]), f"{log}: {lines[-1:] or 'empty'}"
    seen = {p.relative_to(wd / "results" / "logs").parts[0] for p in logs}
    assert set(rules) <= seen, set(rules) - seen


def test_every_rule_log_ends_with_a_summary(run_dir):
    import re

    assert_logs_end_with_summary(run_dir, [
        "dataset", "bm25_index", "retrieve", "candidates", "prepare_model", "attention_scores", "detection_set",
        "detection_scores", "detect_heads", "rerank", "evaluate", "tables", "position_bias_plot",
    ])
    log = (run_dir / "results/logs/attention_scores/tiny-llama/tiny/bm25/retrieval.log").read_text()
    assert re.search(r"INFO attnrank.attention.scorecache: attention tiny-llama: 6 q in \d+\.\d s \(", log)  # progress as log lines


def test_every_output_respects_the_umask(run_dir):
    """Outputs get the mode a plain open gives (0o666 & ~umask), never mkstemp's 0600: with the usual umask 022
    every file and folder the pipeline wrote is readable by group and others."""
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    if mask & 0o044:
        pytest.skip(f"umask {mask:03o} hides files from the group anyway")
    paths = [p for p in (run_dir / "results").rglob("*") if not p.is_symlink()]
    assert len(paths) > 50
    private = [str(p.relative_to(run_dir)) for p in paths
               if stat.S_IMODE(p.stat().st_mode) & (0o055 if p.is_dir() else 0o044) != (0o055 if p.is_dir() else 0o044)]
    assert not private, private[:10]
def test_bad_config_is_one_line_before_any_job(tmp_path):
    """A bad method parameter stops the dry run at parse time: one line naming methods.<name>.<key>, no traceback."""
    cfg = with_changes(lambda c: c["methods"].update(rg20={"kind": "rankgpt", "windw": 20}))
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode == 1
    errors = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip() and not l.startswith("Using workflow specific profile")]
    assert errors == [
        "Error: config key 'methods.rg20.windw': unknown parameter for kind 'rankgpt' (allowed: attention, labels, "
        "max_doc_tokens, max_doc_words, max_new_tokens, prompt, scoring, stride, use_chat_template, window)"
    ]
    assert not (tmp_path / "results").exists()


def test_broken_default_config_yaml_names_file_and_line(tmp_path):
    """Snakemake's own message for a broken config file names neither file nor line; the default config.yaml is
    read by attnrank first, so its error does."""
    import subprocess
    import sys

    from helpers import REPO

    (tmp_path / "config.yaml").write_text("datasets:\n  d: {source: synthetic\nretrievers: {bm25: {kind: bm25}}\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
                           "--cores", "1"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert ("Error: config.yaml:3:11: not valid YAML (while parsing a flow mapping started on line 2; expected ',' "
            "or '}', but got ':')") in proc.stderr.splitlines()


def test_first_stage_only_run(run_dir, tmp_path):
    """methods: {} is a first-stage-only grid: no model, attention or latency job, tables with first-stage rows."""
    import shutil

    wd = tmp_path / "wd"
    shutil.copytree(run_dir, wd, symlinks=True)
    cfg = with_changes(lambda c: c.update(methods={}, latency={"dataset": "tiny", "retriever": "bm25", "n_queries": 2}))
    jobs = scheduled_jobs(snakemake(wd, cfg, "-n"))
    assert set(jobs) <= {"evaluate", "tables", "report_tables", "study_config", "all"}
    snakemake(wd, cfg)
    res = pl.read_csv(wd / "results/tables/results.csv")
    assert set(res["method"]) == {"bm25", "dense"} and set(res["model"]) == {"-"}
    assert res.height == 2 * len(CONFIG.get("evaluation", {}).get("metrics", ["ndcg@10", "recall@100", "mrr@10"]))


def test_prompt_orders_are_a_grid_axis(run_dir):
    """Two orders: one attention pass per order, heads detected per order, runs labelled method@order, and the
    position bias of every attention run in the evaluation."""
    cfg = with_changes(lambda c: c["prompt"].update(orders=["retrieval", "reversed"]))
    jobs = scheduled_jobs(snakemake(run_dir, cfg, "-n"))
    # new: the tiny pass in reversed order (no method here needs the tuning split), detection + heads for it, and
    # the 3 attention methods in reversed order
    assert jobs["attention_scores"] == 1 and jobs["detection_scores"] == 1 and jobs["detect_heads"] == 1, jobs
    assert jobs["rerank_attention"] == 3, jobs  # the retrieval runs exist already (same files)
    ev = pl.read_parquet(run_dir / "results/eval/tiny.parquet")
    bias = ev.filter(pl.col("metric") == "position_bias")
    assert set(bias["method"]) == {"icr", "qr", "qrhead"}
    assert bias["value"].is_between(-1, 1).all() and bias.height > 0
    prov = json.loads((run_dir / "results/heads/tiny-llama/retrieval/shuffle/t0.1/heads.json").read_text())
    assert prov["order"] == "retrieval" and prov["n_samples"] == 12 and prov["detection"]["dataset"] == "tiny-train"
    assert prov["detection"]["layout"] == "shuffle"  # qr-mass and qrhead detect on QRHead's shuffled layout


GRID_METHODS = {
    "lw-qr": {"kind": "rankgpt", "scoring": "attention", "window": 3, "stride": 2, "attention": {"kind": "qrhead", "k_heads": 2}},
    "sw-icr": {"kind": "setwise", "scorer": "attention", "c": 2, "attention": {"kind": "icr", "max_layer": 1}},
    "pw-icr": {"kind": "pointwise", "attention": {"kind": "icr"}},
}


def test_bad_nested_attention_spec_fails_before_any_job(tmp_path):
    cfg = with_changes(lambda c: c["methods"].update(lw={"kind": "rankgpt", "scoring": "attention", "attention": {"kind": "qrhead", "k_head": 2}}))
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "methods.lw.attention.k_head" in out and "unknown parameter" in out
    cfg = with_changes(lambda c: (c["methods"].update(lw=GRID_METHODS["lw-qr"]), c["methods"].pop("qr"), c["methods"].pop("qrhead"), c.pop("detection")))
    proc = snakemake(tmp_path, cfg, "-n", check=False)
    assert proc.returncode != 0 and "methods.lw': kind 'qrhead' needs the 'detection' section" in proc.stdout + proc.stderr


def test_text_frameworks_scored_by_attention_run_with_their_artifacts(run_dir):
    """Last in this module (it changes run_dir): only their re-ranking jobs run; the head set comes from the head table."""
    cfg = with_changes(lambda c: c["methods"].update(GRID_METHODS))
    jobs = scheduled_jobs(snakemake(run_dir, cfg, "-n"))
    # position_bias_plot and report_tables read the evaluation's output, which gains the new runs
    assert jobs.pop("study_config", 0) == 1, jobs  # the study's config record: a config edit reruns it
    assert jobs == {"rerank_text": 3, "evaluate": 1, "tables": 1, "position_bias_plot": 1, "report_tables": 1, "all": 1}, jobs
    snakemake(run_dir, cfg)
    grid = pl.read_csv(run_dir / "results" / "tables" / "grid.csv")
    rows = {r["method"]: r for r in grid.iter_rows(named=True)}
    assert (rows["lw-qr"]["framework"], rows["lw-qr"]["mechanism"]) == ("listwise", "attention")
    assert (rows["sw-icr"]["framework"], rows["pw-icr"]["framework"]) == ("setwise", "pointwise")
    assert all(rows[m]["seconds_source"] == "rerank job" and rows[m]["seconds_per_query"] > 0 for m in GRID_METHODS)
    used = json.loads((run_dir / "results/rerank/tiny-llama/tiny/bm25/lw-qr.json").read_text())
    assert used["stats"]["forward_passes"] > 0
    # a different head table would change the ranking input: the rule depends on it
    proc = snakemake(run_dir, cfg, "-n", "--forcerun", "detect_heads")
    assert scheduled_jobs(proc).get("rerank_text") == 1, proc.stdout[-2000:]
