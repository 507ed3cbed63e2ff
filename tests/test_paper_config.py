"""config/paper.yaml: valid against the schema, the grid it promises, and its job counts from a dry run (no network)."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys

import pytest

from attnrank import config
from attnrank.data import bright
from helpers import REPO, scheduled_jobs

PAPER = REPO / "config" / "paper.yaml"
BEIR = {
    "beir/trec-covid", "beir/nfcorpus/test", "beir/nq", "beir/hotpotqa/test", "beir/fiqa/test", "beir/arguana",
    "beir/webis-touche2020/v2", "beir/quora/test", "beir/dbpedia-entity/test", "beir/scidocs", "beir/fever/test",
    "beir/climate-fever", "beir/scifact/test", "beir/msmarco/dev",
}
CQA_FORUMS = {
    "android", "english", "gaming", "gis", "mathematica", "physics", "programmers", "stats", "tex", "unix",
    "webmasters", "wordpress",
}


@pytest.fixture(scope="module")
def cfg():
    return config.load(str(PAPER))


def test_paper_config_is_valid_and_covers_the_grid(cfg):
    ds = cfg["datasets"]
    evaluated = {k: v for k, v in ds.items() if v["evaluate"]}
    irds = {v["id"] for v in evaluated.values() if v["source"] == "irds"}
    assert BEIR <= irds
    assert {i.removeprefix("beir/cqadupstack/") for i in irds if i.startswith("beir/cqadupstack/")} == CQA_FORUMS
    assert {"msmarco-passage/trec-dl-2019/judged", "msmarco-passage/trec-dl-2020/judged"} <= irds
    assert len(irds) == len(BEIR) + len(CQA_FORUMS) + 2  # 15 BEIR datasets (CQADupStack as 12 forums) + DL 19/20
    assert sorted(v["domain"] for v in evaluated.values() if v["source"] == "bright") == sorted(bright.DOMAINS)
    # held-out splits are never evaluated (config.validate enforces it) and come from NQ / MS MARCO train
    assert ds[cfg["detection"]["dataset"]]["id"] == "dpr-w100/natural-questions/train"
    assert not ds[cfg["tuning"]["dataset"]]["evaluate"]
    assert {m["id"] for m in cfg["models"].values()} == {
        "meta-llama/Llama-3.1-8B-Instruct", "mistralai/Mistral-7B-Instruct-v0.2", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-4B",
        "Qwen/Qwen3-8B",
    }
    kinds = sorted(m["kind"] for m in cfg["methods"].values())
    assert kinds == sorted(["icr", "icr", "qrhead", "qrhead", "qr-mass", "core", "core", "selective", "headrank", "rankgpt", "yesno",
                            "qlm", "setwise"])
    # the papers' fixed settings: candidates, truncation by words, CoRe's detection set and temperatures
    assert (cfg["candidates"]["depth"], cfg["candidates"]["max_doc_words"], cfg["prompt"]["max_doc_tokens"]) == (100, 300, None)
    det = cfg["detection"]
    assert (det["n_queries"], det["n_negatives"], det["positions"]) == (1000, 49, 5)
    assert cfg["retrievers"][det["retriever"]]["model"] == "ibm-granite/granite-embedding-30m-english"
    assert cfg["models"]["mistral-7b"]["core_temperature"] == 0.001 and cfg["models"]["llama-3.1-8b"]["core_temperature"] == 0.1
    from attnrank import protocols

    methods = protocols.expand(cfg["methods"])
    assert (methods["core"]["order"], methods["core"]["k_heads"]) == ("retrieval", 8)
    assert (methods["qrhead"]["order"], methods["qrhead"]["k_heads"]) == ("reversed", 16)


def test_paper_dry_run_job_counts(cfg, tmp_path):
    """Plan the whole paper grid (nothing runs, nothing is downloaded) and check the job table."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "IR_DATASETS_HOME": str(tmp_path / "irds"),
        # any attempt to reach the network fails at once
        "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    cmd = [
        sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
        "--configfile", str(PAPER), "--replace-workflow-config", "--cores", "2",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = scheduled_jobs(proc)
    print("\npaper grid (snakemake -n):\n" + "\n".join(f"  {rule:<18}{n:>6}" for rule, n in jobs.items()))
    print(f"  {'total':<18}{sum(jobs.values()):>6}")

    n_models, n_methods = len(cfg["models"]), len(cfg["methods"])
    retrievers = cfg["candidates"]["retrievers"]
    evaluated = [d for d, v in cfg["datasets"].items() if v["evaluate"]]
    n_attention = sum(1 for m in cfg["methods"].values() if m["kind"] in ("icr", "qrhead", "qr-mass", "core", "selective", "headrank"))
    assert (len(evaluated), n_models, n_methods, n_attention, len(retrievers)) == (40, 5, 13, 9, 1)
    # candidate lists per protocol: the shared BM25 top-100 (300 words: ICR, Selective-ICR and every shared row),
    # QRHead's BM25 top-200 (400 words), CoRe's granite-30m top-40 and top-60 (300 words) on every evaluation set,
    # plus the tuning split's list
    assert list(cfg["candidates"]["lists"]) == ["bm25-200", "granite-40", "granite-60"]
    assert jobs["candidates"] == len(evaluated) * 4 + 1
    # one attention pass per model x evaluation dataset x candidate list x prompt order: bm25 top-100 reversed (the
    # shared rows), bm25-200 reversed (QRHead), granite-40 and granite-60 in retrieval order (CoRe), plus one on
    # the tuning split per model (layer profile, HeadRank: reversed)
    assert jobs["attention_scores"] == n_models * (len(evaluated) * 4 + 1)
    # every attention method once per list it runs on (core: two lists)
    assert jobs["rerank_attention"] == n_models * len(evaluated) * (n_attention + 1)
    assert jobs["rerank_text"] == n_models * len(evaluated) * len(retrievers) * (n_methods - n_attention)
    # heads detected once per model, order and detection layout (each at the model's CoRe temperature): qrhead,
    # qrhead-shared and qr-mass in reversed order on QRHead's shuffled layout, core in retrieval and core-shared in reversed order on
    # CoRe's spread layout; layers profiled in reversed order
    assert jobs["detection_scores"] == jobs["detect_heads"] == n_models * 3
    assert jobs["detection_set"] == 2  # one per layout
    assert jobs["layer_profile"] == jobs["prepare_model"] == n_models
    assert jobs["dataset"] == len(cfg["datasets"]) and jobs["evaluate"] == len(evaluated)
    # both first stages on every evaluation set, granite on the detection split (CoRe's negatives), BM25 on tuning
    assert jobs["retrieve"] == 2 * len(evaluated) + 2
    assert jobs["latency"] == n_models  # one job per model times all its methods
    assert not (tmp_path / "results").exists() and not (tmp_path / "irds").exists()  # planning touched no data


SHIPPED = [REPO / "config.yaml", *sorted(p for p in (REPO / "config").glob("*.yaml") if p.name != "paper.yaml")]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_dry_runs(path, tmp_path):
    """Every shipped config plans without network; its job counts are printed (paper.yaml: the test above)."""
    import yaml

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "IR_DATASETS_HOME": str(tmp_path / "irds"),
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    raw = yaml.safe_load(path.read_text())
    # local dataset folders are relative to the repository root (where users run snakemake): resolve them there;
    # a collection that is not beside this checkout (../shared/data/cisi) skips its config
    for spec in (raw.get("datasets") or {}).values():
        if spec.get("path") and not Path(spec["path"]).is_absolute():
            spec["path"] = str((REPO / spec["path"]).resolve())
            if not Path(spec["path"]).is_dir():
                pytest.skip(f"{path.name}: {spec['path']} is not beside this checkout")
    resolved = tmp_path / path.name
    resolved.write_text(yaml.safe_dump(raw, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
           "--configfile", str(resolved), "--replace-workflow-config", "--cores", "2"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = scheduled_jobs(proc)
    # every output, log and benchmark of the study lies in its own folder, results/<config file stem>
    planned = [f.strip() for line in (proc.stdout + proc.stderr).splitlines()
               if line.strip().startswith(("output:", "log:", "benchmark:")) for f in line.split(":", 1)[1].split(",")]
    cache = yaml.safe_load(path.read_text()).get("cache_dir", ".cache")
    outside = [f for f in planned if not f.startswith(f"results/{path.stem}/") and not f.startswith(cache)]
    assert planned and not outside, outside[:5]
    print(f"\n{path.name} (snakemake -n): " + ", ".join(f"{r} {n}" for r, n in jobs.items()))
    cfg = config.load(str(resolved))
    assert jobs.get("tables") == 1
    if cfg["models"] and any(m["kind"] in ("icr", "qrhead", "qr-mass", "core", "selective") for m in cfg["methods"].values()):
        assert jobs.get("attention_scores", 0) >= 1 and jobs.get("rerank_attention", 0) >= 1
    raw = yaml.safe_load(path.read_text())
    if path.name == "config.yaml":  # the README's study grid is a real study: models, methods, detection, tuning
        assert raw["models"] and len(raw["methods"]) >= 10 and "detection" in raw and "tuning" in raw


# ---------------------------------------------------------------------------------------------------- BRIGHT
EXAMPLES = [
    {"id": "q1", "query": "why do cells divide", "gold_ids": ["d1", "d2"], "gold_ids_long": ["L1"], "excluded_ids": ["N/A"]},
    {"id": "q2", "query": "two sum in linear time", "gold_ids": ["d3"], "gold_ids_long": ["L2"], "excluded_ids": ["d4", "d5"]},
]
DOCUMENTS = [{"id": f"d{i}", "content": f"document {i} text"} for i in range(1, 7)]
LONG_DOCUMENTS = [{"id": "L1", "content": "long one"}, {"id": "L2", "content": "long two"}]


def _local_bright(root):
    """A local copy of the HF dataset layout (README configs + parquet per config and domain)."""
    import polars as pl

    for name, rows in (("examples", EXAMPLES), ("documents", DOCUMENTS), ("long_documents", LONG_DOCUMENTS)):
        (root / name).mkdir(parents=True)
        pl.DataFrame(rows).write_parquet(root / name / "biology.parquet")
    configs = "".join(
        f"- config_name: {n}\n  data_files:\n  - split: biology\n    path: {n}/biology.parquet\n"
        for n in ("examples", "documents", "long_documents")
    )
    (root / "README.md").write_text(f"---\nconfigs:\n{configs}---\n")
    return root


def test_bright_records_become_a_dataset_with_excluded_ids():
    ds = bright.from_records(EXAMPLES, DOCUMENTS)
    assert ds.queries.to_dicts() == [{"qid": "q1", "text": "why do cells divide"}, {"qid": "q2", "text": "two sum in linear time"}]
    assert sorted(ds.qrels.iter_rows()) == [("q1", "d1", 1), ("q1", "d2", 1), ("q2", "d3", 1)]
    assert ds.corpus.height == 6 and set(ds.corpus["title"]) == {""}
    assert ds.notes["excluded"] == {"q2": ["d4", "d5"]}  # the "N/A" placeholder is not an id
    long = bright.from_records(EXAMPLES, LONG_DOCUMENTS, long_documents=True)
    assert sorted(long.qrels.iter_rows()) == [("q1", "L1", 1), ("q2", "L2", 1)]


def test_bright_loads_through_datasets_and_excluded_pairs_leave_runs(tmp_path, monkeypatch):
    import datasets
    import polars as pl

    from attnrank.data import sources

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    src = _local_bright(tmp_path / "BRIGHT")
    ds = sources.load({"source": "bright", "domain": "biology", "path": str(src)}, "bright-biology")
    assert ds.queries.height == 2 and ds.corpus.height == 6 and ds.qrels.height == 3
    sources.save(ds, tmp_path / "out")
    excluded = bright.read_excluded(tmp_path / "out" / "meta.json")
    assert sorted(excluded.iter_rows()) == [("q2", "d4"), ("q2", "d5")]
    run = pl.DataFrame({"qid": ["q2", "q2", "q2", "q1"], "docid": ["d4", "d3", "d5", "d4"], "score": [4.0, 3.0, 2.0, 1.0]})
    kept = bright.drop_excluded(run, excluded)
    assert kept.rows() == [("q2", "d3", 3.0), ("q1", "d4", 1.0)]  # d4 stays for q1: exclusions are per query


def test_bright_offline_is_a_one_line_error_naming_the_dataset(tmp_path):
    from attnrank.errors import InputError

    for path in (None, str(tmp_path / "missing")):  # the hub (offline in tests, see conftest) or a missing copy
        with pytest.raises(InputError) as err:
            bright.read_bright("biology", "bright-biology", path=path)
        assert str(err.value).startswith("datasets.bright-biology: cannot load BRIGHT 'biology'") and "\n" not in str(err.value)
    with pytest.raises(InputError, match="unknown BRIGHT domain 'biolgy'"):
        bright.read_bright("biolgy", "b")
    with pytest.raises(InputError, match="datasets.b"):
        config.validate({"datasets": {"b": {"source": "bright"}}, "retrievers": {"bm25": {"kind": "bm25"}}})
