import json
import logging

import polars as pl
import pytest

from attnrank.data import sources
from attnrank.errors import InputError
from attnrank.data.synthetic import make_collection


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
    train = sources.read_beir(root, "train").qrels
    test = sources.read_beir(root, "test").qrels
    assert set(train["qid"]).isdisjoint(set(test["qid"]))
    assert set(train["relevance"].unique()) == {1, 2}


def test_beir_roundtrip(tmp_path):
    root = write_beir(tmp_path / "ds", DOCS, QUERIES, [("q1", "1", 1), ("q2", "2", 2)])
    ds = sources.load({"source": "beir", "path": str(root), "split": "test"}, "toy")
    assert ds.corpus.columns == ["docid", "title", "text"]
    assert ds.queries["qid"].to_list() == ["q1", "q2"]
    assert ds.qrels.schema["relevance"] == pl.Int32
    sources.save(ds, tmp_path / "out")
    back = sources.read(tmp_path / "out")
    assert back.corpus.equals(ds.corpus) and back.qrels.equals(ds.qrels)


def test_duplicate_doc_id_is_error(tmp_path):
    root = write_beir(tmp_path / "ds", DOCS + [{"_id": "2", "title": "", "text": "again"}], QUERIES, [("q1", "1", 1)])
    with pytest.raises(InputError, match=r"duplicate document id.*'2'"):
        sources.load({"source": "beir", "path": str(root)}, "toy")


def test_empty_document_dropped_and_logged(tmp_path, caplog):
    root = write_beir(tmp_path / "ds", DOCS + [{"_id": "4", "title": "", "text": "  "}], QUERIES, [("q1", "1", 1)])
    with caplog.at_level(logging.WARNING):
        ds = sources.load({"source": "beir", "path": str(root)}, "toy")
    assert "4" not in ds.corpus["docid"].to_list()
    assert ds.notes["empty_documents_dropped"] == ["4"]
    assert "empty document" in caplog.text


def test_query_without_qrels_skipped_and_logged(tmp_path, caplog):
    root = write_beir(tmp_path / "ds", DOCS, QUERIES, [("q1", "1", 1), ("q2", "2", 0)])
    with caplog.at_level(logging.WARNING):
        ds = sources.load({"source": "beir", "path": str(root)}, "toy")
    assert ds.queries["qid"].to_list() == ["q1"]
    assert ds.notes["queries_without_qrels_skipped"] == ["q2"]
    assert "without a positive judgement" in caplog.text


def test_no_judged_query_is_error(tmp_path):
    root = write_beir(tmp_path / "ds", DOCS, QUERIES, [("q1", "1", 0)])
    with pytest.raises(InputError, match="no query with a positive judgement"):
        sources.load({"source": "beir", "path": str(root)}, "toy")


def test_missing_source_folder_and_split(tmp_path):
    with pytest.raises(InputError, match=r"datasets.toy.path: folder .* not found"):
        sources.load({"source": "beir", "path": str(tmp_path / "nope")}, "toy")
    root = write_beir(tmp_path / "ds", DOCS, QUERIES, [("q1", "1", 1)])
    with pytest.raises(InputError, match=r"split 'dev' not found \(available: \['test'\]\)"):
        sources.load({"source": "beir", "path": str(root), "split": "dev"}, "toy")


def test_irds_unknown_id_is_one_line_error():
    with pytest.raises(InputError) as e:
        sources.load({"source": "irds", "id": "no-such/dataset"}, "x")
    assert "datasets.x.id" in str(e.value) and "\n" not in str(e.value)


def test_irds_download_impossible_is_one_line_error(tmp_path, monkeypatch):
    # a real id whose files are absent: ir_datasets tries to download and fails offline (or the test
    # environment blocks it); either way the user sees one line naming the dataset.
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path))
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    with pytest.raises(InputError) as e:
        sources.load({"source": "irds", "id": "beir/scifact/test"}, "scifact", str(tmp_path))
    msg = str(e.value)
    assert msg.startswith("datasets.scifact: cannot load ir_datasets 'beir/scifact/test'") and "\n" not in msg


def test_max_queries(tmp_path):
    root = make_collection(tmp_path, n_queries=10)
    ds = sources.load({"source": "beir", "path": str(root), "split": "test", "max_queries": 2}, "s")
    assert ds.queries.height == 2
    assert set(ds.qrels["qid"]) == set(ds.queries["qid"])


# ------------------------------------------------------------------------------------------------ issue 10 point 5
def _raw_beir(root, corpus: str, queries: str, qrels: str):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(corpus)
    (root / "queries.jsonl").write_text(queries)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return root


GOOD_CORPUS = '{"_id": "d1", "text": "alpha"}\n{"_id": "d2", "text": "beta"}\n'
GOOD_QUERIES = '{"_id": "q1", "text": "alpha"}\n'
GOOD_QRELS = "q1\td1\t1\n"

# name -> (file, its text, the message after "<folder>/<file>:")
BAD_DATA = {
    "non-integer grade": ("qrels/test.tsv", "q1\td1\t1\nq1\td2\t0.5\n", "3: grade '0.5' of query 'q1' document 'd2' is not an integer"),
    "conflicting duplicate judgement": (
        "qrels/test.tsv", "q1\td1\t1\nq1\td2\t0\nq1\td1\t2\n",
        "4: query 'q1' document 'd1' judged 2 here but 1 on line 2 (conflicting duplicate)",
    ),
    "qrels id with whitespace": ("qrels/test.tsv", "q1\td 1\t1\n", "2: document id 'd 1' contains whitespace"),
    "qrels empty query id": ("qrels/test.tsv", "\td1\t1\n", "2: query id is missing or empty"),
    "qrels column count": ("qrels/test.tsv", "q1 d1 1\n", "2: expected 3 tab-separated columns 'query-id corpus-id score', got 1"),
    "document without _id": ("corpus.jsonl", GOOD_CORPUS + '{"text": "gamma"}\n', "3: '_id' is missing or empty"),
    "document with empty _id": ("corpus.jsonl", '{"_id": "", "text": "gamma"}\n' + GOOD_CORPUS, "1: '_id' is missing or empty"),
    "document id with whitespace": ("corpus.jsonl", GOOD_CORPUS + '{"_id": "d 3", "text": "gamma"}\n', "3: '_id' 'd 3' contains whitespace"),
    "document id with a tab": ("corpus.jsonl", '{"_id": "d3\\t", "text": "gamma"}\n' + GOOD_CORPUS, "1: '_id' 'd3\\t' contains whitespace"),
    "document id of another type": ("corpus.jsonl", '{"_id": 1.5, "text": "gamma"}\n', "1: '_id' must be a string or an integer, got 1.5"),
    "document without text": ("corpus.jsonl", GOOD_CORPUS + '{"_id": "d3", "title": "t"}\n', "3: missing field 'text'"),
    "query id with whitespace": ("queries.jsonl", '{"_id": "q 1", "text": "alpha"}\n', "1: '_id' 'q 1' contains whitespace"),
    "query without _id": ("queries.jsonl", '{"text": "alpha"}\n', "1: '_id' is missing or empty"),
    "JSONL syntax error": ("corpus.jsonl", GOOD_CORPUS + '{"_id": "d3", "text": "gamma"\n', "3: not valid JSON (Expecting ',' delimiter at column 30)"),
    "JSONL line not an object": ("queries.jsonl", GOOD_QUERIES + '["q2", "beta"]\n', "2: expected a JSON object, got list"),
    "JSONL text not a string": ("corpus.jsonl", '{"_id": "d3", "text": 7}\n', "1: field 'text' must be a string, got int"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_refused_with_file_and_line(tmp_path, case):
    name, text, message = BAD_DATA[case]
    files = {"corpus.jsonl": GOOD_CORPUS, "queries.jsonl": GOOD_QUERIES, "qrels/test.tsv": GOOD_QRELS, name: text}
    root = _raw_beir(tmp_path / "ds", files["corpus.jsonl"], files["queries.jsonl"], files["qrels/test.tsv"])
    with pytest.raises(InputError) as e:
        sources.load({"source": "beir", "path": str(root)}, "toy")
    assert str(e.value) == f"{root / name}:{message}"


def test_identical_duplicate_judgements_collapse_with_a_logged_count(tmp_path, caplog):
    root = _raw_beir(tmp_path / "ds", GOOD_CORPUS, GOOD_QUERIES, "q1\td1\t1\nq1\td1\t1\nq1\td2\t0\n")
    with caplog.at_level(logging.WARNING):
        ds = sources.load({"source": "beir", "path": str(root)}, "toy")
    assert ds.qrels.rows() == [("q1", "d1", 1), ("q1", "d2", 0)]
    assert ds.notes["duplicate_judgements_collapsed"] == 1
    assert "dataset 'toy': collapsing 1 identical duplicate judgement(s)" in caplog.text


def test_integral_float_grade_reads_as_that_integer(tmp_path):
    root = _raw_beir(tmp_path / "ds", GOOD_CORPUS, GOOD_QUERIES, "q1\td1\t2.0\n")
    assert sources.load({"source": "beir", "path": str(root)}, "toy").qrels["relevance"].to_list() == [2]


def _frames(docids=("d1", "d2"), qids=("q1",), qrels=(("q1", "d1", 1),)):
    return sources.Dataset(
        pl.DataFrame({"docid": list(docids), "title": [""] * len(docids), "text": ["x"] * len(docids)}, schema=sources.CORPUS_SCHEMA),
        pl.DataFrame({"qid": list(qids), "text": ["x"] * len(qids)}, schema=sources.QUERIES_SCHEMA),
        pl.DataFrame(list(qrels), schema=sources.QRELS_SCHEMA, orient="row"),
    )


@pytest.mark.parametrize("ds, message", [
    (_frames(docids=("d1", None)), "dataset 'toy': 1 document id(s) missing or empty"),
    (_frames(docids=("d1", "d 2")), "dataset 'toy': document id 'd 2' contains whitespace (1 such id(s))"),
    (_frames(qids=("q1", "")), "dataset 'toy': 1 query id(s) missing or empty"),
    (_frames(qrels=(("q1", "d1", 1), ("q1", "d1", 2))), "dataset 'toy': query 'q1' document 'd1' has conflicting judgements [1, 2] (1 pair(s) conflict)"),
])
def test_sources_without_lines_are_checked_too(ds, message):
    """ir_datasets / BRIGHT frames have no file lines: the same checks, naming the dataset."""
    with pytest.raises(InputError) as e:
        sources.clean(ds, "toy")
    assert str(e.value) == message


def test_irds_fractional_grade_is_refused():
    with pytest.raises(InputError) as e:
        sources._grade(0.5, "beir/x", "q1", "d1")
    assert str(e.value) == "ir_datasets 'beir/x': grade 0.5 of query 'q1' document 'd1' is not an integer"
    assert sources._grade(2, "beir/x", "q1", "d1") == 2


def test_bright_document_without_id_is_refused_not_renamed_none():
    from attnrank.data.bright import from_records

    ds = from_records([{"id": "q1", "query": "x", "gold_ids": ["d1"]}], [{"id": "d1", "content": "a"}, {"content": "b"}], key="bio")
    with pytest.raises(InputError) as e:
        sources.clean(ds, "bio")
    assert str(e.value) == "dataset 'bio': 1 document id(s) missing or empty"


# ------------------------------------------------------------------------------------------------ issue 25: streaming
def _in_memory_reference(spec, key, out):
    """The pre-streaming path: the whole corpus as one frame, cleaned and written by ``write_parquet``."""
    ds = sources.clean(sources.read_beir(spec["path"], spec.get("split", "test"), key), key, spec.get("max_queries"))
    assert isinstance(ds.corpus, pl.DataFrame)
    sources.save(ds, out)


def _with_empty_doc(tmp_path):
    root = make_collection(tmp_path / "src", n_docs=57, n_queries=8, seed=5)
    with open(root / "corpus.jsonl", "a") as f:  # an empty document: dropped in both paths
        f.write(json.dumps({"_id": "zz-empty", "title": " ", "text": ""}) + "\n")
    return root


def test_streamed_beir_is_byte_identical_to_in_memory(tmp_path, monkeypatch):
    root = _with_empty_doc(tmp_path)
    spec = {"source": "beir", "path": str(root), "split": "test"}
    _in_memory_reference(spec, "s", tmp_path / "ref")
    monkeypatch.setattr(sources, "CHUNK_ROWS", 10)  # six row groups in the spool
    notes = sources.prepare(spec, "s", tmp_path / "out")
    for f in ("corpus.parquet", "queries.parquet", "qrels.parquet", "meta.json"):
        assert (tmp_path / "out" / f).read_bytes() == (tmp_path / "ref" / f).read_bytes(), f
    assert notes["n_docs"] == 57 and notes["empty_documents_dropped"] == ["zz-empty"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["corpus.parquet", "meta.json", "qrels.parquet", "queries.parquet"]


def test_spool_writes_row_groups_of_chunk_size(tmp_path):
    import pyarrow.parquet as pq

    spool = sources.CorpusSpool(tmp_path / "c.parquet", chunk_rows=4)
    for i in range(10):
        spool.add(f"d{i}", "", f"text {i}")
    lf = spool.frame()
    assert isinstance(lf, pl.LazyFrame) and lf.collect()["docid"].to_list() == [f"d{i}" for i in range(10)]
    assert [pq.ParquetFile(tmp_path / "c.parquet").metadata.row_group(g).num_rows for g in range(3)] == [4, 4, 2]


class FakeIrds:
    """An ir_datasets-shaped source: ``docs_iter``/``queries_iter``/``qrels_iter`` yield namedtuples (as
    ir_datasets' GenericDoc / GenericQuery / TrecQrel do), built from a BEIR folder."""

    def __init__(self, root):
        from collections import namedtuple

        self.Doc = namedtuple("GenericDoc", ["doc_id", "text", "title"])
        self.Query = namedtuple("GenericQuery", ["query_id", "text"])
        self.Qrel = namedtuple("TrecQrel", ["query_id", "doc_id", "relevance", "iteration"])
        self.root = root
        self.docs_consumed = 0

    def docs_iter(self):
        with open(self.root / "corpus.jsonl") as f:
            for line in f:
                d = json.loads(line)
                self.docs_consumed += 1
                yield self.Doc(d["_id"], d["text"], d.get("title", ""))

    def queries_iter(self):
        with open(self.root / "queries.jsonl") as f:
            for line in f:
                q = json.loads(line)
                yield self.Query(q["_id"], q["text"])

    def qrels_iter(self):
        for line in (self.root / "qrels" / "test.tsv").read_text().splitlines()[1:]:
            q, d, r = line.split("\t")
            yield self.Qrel(q, d, int(r), "0")


def test_irds_shaped_source_streams_to_the_same_files(tmp_path, monkeypatch):
    root = _with_empty_doc(tmp_path)
    fake = FakeIrds(root)
    import ir_datasets

    monkeypatch.setattr(ir_datasets, "load", lambda i: fake if i == "fake/ds" else (_ for _ in ()).throw(KeyError(i)))
    monkeypatch.setattr(sources, "CHUNK_ROWS", 10)
    # the pre-streaming reference: Python lists of every document, one DataFrame, write_parquet
    ref_docs = [(d.doc_id, d.title or "", d.text) for d in FakeIrds(root).docs_iter()]
    ref = sources.from_irds(fake, "fake/ds", "f")  # no spool: read back into memory
    assert isinstance(ref.corpus, pl.DataFrame)
    assert ref.corpus.equals(pl.DataFrame(ref_docs, schema=sources.CORPUS_SCHEMA, orient="row"))
    sources.save(sources.clean(ref, "f"), tmp_path / "ref")
    notes = sources.prepare({"source": "irds", "id": "fake/ds"}, "f", tmp_path / "out")
    for f in ("corpus.parquet", "queries.parquet", "qrels.parquet"):
        assert (tmp_path / "out" / f).read_bytes() == (tmp_path / "ref" / f).read_bytes(), f
    assert notes["source"] == "irds:fake/ds" and notes["n_docs"] == 57
    # the BEIR folder it came from gives the same corpus
    beir = sources.load({"source": "beir", "path": str(root)}, "b")
    assert pl.read_parquet(tmp_path / "out" / "corpus.parquet").equals(beir.corpus)


def test_spooled_corpus_errors_still_name_the_line(tmp_path, monkeypatch):
    root = make_collection(tmp_path / "src", n_docs=30, n_queries=4, seed=5)
    with open(root / "corpus.jsonl", "a") as f:
        f.write('{"_id": "d 9", "text": "x"}\n')
    monkeypatch.setattr(sources, "CHUNK_ROWS", 7)
    with pytest.raises(InputError, match=r"corpus.jsonl:31: '_id' 'd 9' contains whitespace"):
        sources.prepare({"source": "beir", "path": str(root)}, "b", tmp_path / "out")
    assert not list((tmp_path / "out").glob(".spool*"))


def test_spooled_duplicate_doc_ids_are_an_error(tmp_path, monkeypatch):
    root = make_collection(tmp_path / "src", n_docs=30, n_queries=4, seed=5)
    first = (root / "corpus.jsonl").read_text().splitlines()[0]
    with open(root / "corpus.jsonl", "a") as f:
        f.write(first + "\n")
    monkeypatch.setattr(sources, "CHUNK_ROWS", 7)
    with pytest.raises(InputError, match="duplicate document id"):
        sources.prepare({"source": "beir", "path": str(root)}, "b", tmp_path / "out")
