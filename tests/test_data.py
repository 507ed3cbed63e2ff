import json
import logging

import polars as pl
import pytest

from attnrank import data
from attnrank.errors import InputError
from attnrank.synthetic import make_collection


def write_beir(root, docs, queries, qrels, split="test"):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, d, r in qrels))
    return root


DOCS = [{"_id": "1", "title": "t", "text": "alpha"}, {"_id": "2", "title": "", "text": "beta"}, {"_id": "3", "title": "", "text": "gamma"}]
QUERIES = [{"_id": "q1", "text": "alpha"}, {"_id": "q2", "text": "beta"}]


def test_synthetic_is_deterministic(tmp_path):
    a = make_collection(tmp_path / "a", seed=3)
    b = make_collection(tmp_path / "b", seed=3)
    c = make_collection(tmp_path / "c", seed=4)
    for f in ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "qrels/train.tsv"]:
        assert (a / f).read_bytes() == (b / f).read_bytes()
    assert (a / "corpus.jsonl").read_bytes() != (c / "corpus.jsonl").read_bytes()


def test_synthetic_splits_disjoint_and_graded(tmp_path):
    root = make_collection(tmp_path, n_queries=10)
    train = data.read_beir(root, "train").qrels
    test = data.read_beir(root, "test").qrels
    assert set(train["qid"]).isdisjoint(set(test["qid"]))
    assert set(train["relevance"].unique()) == {1, 2}


def test_beir_roundtrip(tmp_path):
    root = write_beir(tmp_path / "ds", DOCS, QUERIES, [("q1", "1", 1), ("q2", "2", 2)])
    ds = data.load({"source": "beir", "path": str(root), "split": "test"}, "toy")
    assert ds.corpus.columns == ["docid", "title", "text"]
    assert ds.queries["qid"].to_list() == ["q1", "q2"]
    assert ds.qrels.schema["relevance"] == pl.Int32
    data.save(ds, tmp_path / "out")
    back = data.read(tmp_path / "out")
    assert back.corpus.equals(ds.corpus) and back.qrels.equals(ds.qrels)


def test_duplicate_doc_id_is_error(tmp_path):
    root = write_beir(tmp_path / "ds", DOCS + [{"_id": "2", "title": "", "text": "again"}], QUERIES, [("q1", "1", 1)])
    with pytest.raises(InputError, match=r"duplicate document id.*'2'"):
        data.load({"source": "beir", "path": str(root)}, "toy")


def test_empty_document_dropped_and_logged(tmp_path, caplog):
    root = write_beir(tmp_path / "ds", DOCS + [{"_id": "4", "title": "", "text": "  "}], QUERIES, [("q1", "1", 1)])
    with caplog.at_level(logging.WARNING):
        ds = data.load({"source": "beir", "path": str(root)}, "toy")
    assert "4" not in ds.corpus["docid"].to_list()
    assert ds.notes["empty_documents_dropped"] == ["4"]
    assert "empty document" in caplog.text


def test_query_without_qrels_skipped_and_logged(tmp_path, caplog):
    root = write_beir(tmp_path / "ds", DOCS, QUERIES, [("q1", "1", 1), ("q2", "2", 0)])
    with caplog.at_level(logging.WARNING):
        ds = data.load({"source": "beir", "path": str(root)}, "toy")
    assert ds.queries["qid"].to_list() == ["q1"]
    assert ds.notes["queries_without_qrels_skipped"] == ["q2"]
    assert "without a positive judgement" in caplog.text


def test_no_judged_query_is_error(tmp_path):
    root = write_beir(tmp_path / "ds", DOCS, QUERIES, [("q1", "1", 0)])
    with pytest.raises(InputError, match="no query with a positive judgement"):
        data.load({"source": "beir", "path": str(root)}, "toy")


def test_missing_source_folder_and_split(tmp_path):
    with pytest.raises(InputError, match=r"datasets.toy.path: folder .* not found"):
        data.load({"source": "beir", "path": str(tmp_path / "nope")}, "toy")
    root = write_beir(tmp_path / "ds", DOCS, QUERIES, [("q1", "1", 1)])
    with pytest.raises(InputError, match=r"split 'dev' not found \(available: \['test'\]\)"):
        data.load({"source": "beir", "path": str(root), "split": "dev"}, "toy")


def test_irds_unknown_id_is_one_line_error():
    with pytest.raises(InputError) as e:
        data.load({"source": "irds", "id": "no-such/dataset"}, "x")
    assert "datasets.x.id" in str(e.value) and "\n" not in str(e.value)


def test_irds_download_impossible_is_one_line_error(tmp_path, monkeypatch):
    # a real id whose files are absent: ir_datasets tries to download and fails offline (or the test
    # environment blocks it); either way the user sees one line naming the dataset.
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    with pytest.raises(InputError) as e:
        data.load({"source": "irds", "id": "beir/scifact/test"}, "scifact", str(tmp_path))
    msg = str(e.value)
    assert msg.startswith("datasets.scifact: cannot load ir_datasets 'beir/scifact/test'") and "\n" not in msg


def test_max_queries(tmp_path):
    root = make_collection(tmp_path, n_queries=10)
    ds = data.load({"source": "beir", "path": str(root), "split": "test", "max_queries": 2}, "s")
    assert ds.queries.height == 2
    assert set(ds.qrels["qid"]) == set(ds.queries["qid"])
