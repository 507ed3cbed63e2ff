import polars as pl
import pytest

from attnrank import io
from attnrank.data import sources
from attnrank.retrieval import candidates
from attnrank.errors import InputError


def test_rank_run_ties_broken_by_docid():
    run = pl.DataFrame({"qid": ["1", "1", "1", "2"], "docid": ["b", "a", "c", "z"], "score": [1.0, 1.0, 2.0, 0.5]})
    r = io.rank_run(run)
    assert r.filter(pl.col("qid") == "1")["docid"].to_list() == ["c", "a", "b"]
    assert r["rank"].to_list() == [1, 2, 3, 1]


def test_trec_roundtrip_and_depth(tmp_path):
    run = pl.DataFrame({"qid": ["1"] * 3, "docid": ["a", "b", "c"], "score": [0.1, 0.3, 0.2]})
    io.write_trec(run, tmp_path / "r.trec", tag="t", depth=2)
    back = io.read_trec(tmp_path / "r.trec")
    assert back["docid"].to_list() == ["b", "c"] and back["rank"].to_list() == [1, 2]
    assert (tmp_path / "r.trec").read_text().splitlines()[0] == "1 Q0 b 1 0.3 t"


def test_read_trec_malformed(tmp_path):
    (tmp_path / "bad.trec").write_text("1 Q0 a 1\n")
    with pytest.raises(InputError, match=r"bad.trec:1: expected 6 columns"):
        io.read_trec(tmp_path / "bad.trec")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def _ds():
    corpus = pl.DataFrame({"docid": ["d1", "d2", "d3"], "title": ["T", "", ""], "text": ["one two three four", "five", "six"]})
    queries = pl.DataFrame({"qid": ["q1", "q2"], "text": ["hello", "world"]})
    qrels = pl.DataFrame({"qid": ["q1", "q2"], "docid": ["d1", "d2"], "relevance": [1, 1]}, schema_overrides={"relevance": pl.Int32})
    return sources.Dataset(corpus, queries, qrels)


def test_candidates_build_truncates_and_skips(caplog):
    run = pl.DataFrame({"qid": ["q1", "q1", "q1"], "docid": ["d2", "d1", "d3"], "rank": [1, 2, 3], "score": [3.0, 2.0, 1.0]})
    cands, meta = candidates.build(_ds(), run, depth=2, max_doc_words=3, key="toy/bm25")
    assert cands["docid"].to_list() == ["d2", "d1"]
    # the body is cut (3 words, split(' ') as the references cut it), the title prepended after (issue 22)
    assert cands.filter(pl.col("docid") == "d1")["text"].item() == "T\none two three"
    assert cands.columns == ["qid", "query", "docid", "rank", "score", "text"]
    assert meta["queries_without_candidates"] == ["q2"]
    assert "without candidates" in caplog.text


def test_candidates_errors():
    run = pl.DataFrame({"qid": ["q1"], "docid": ["nope"], "rank": [1], "score": [1.0]})
    with pytest.raises(InputError, match="not in the corpus"):
        candidates.build(_ds(), run, depth=5, max_doc_words=None)
    with pytest.raises(InputError, match="candidates.depth"):
        candidates.build(_ds(), run, depth=0, max_doc_words=None)


def test_merge_with_tail_keeps_first_stage_tail():
    first = pl.DataFrame({"qid": ["q"] * 5, "docid": list("abcde"), "rank": [1, 2, 3, 4, 5], "score": [5.0, 4, 3, 2, 1]})
    rer = pl.DataFrame({"qid": ["q"] * 3, "docid": ["a", "b", "c"], "score": [0.1, 0.9, 0.5]})
    merged = io.rank_run(candidates.merge_with_tail(rer, first))
    assert merged["docid"].to_list() == ["b", "c", "a", "d", "e"]


def test_one_candidates_reader_for_engine_and_text_rerankers():
    """Both re-ranker families read candidates through candidates.per_query: rank order, equal ranks by docid
    (never by row), queries in order of first appearance."""
    from attnrank.attention.engine import iter_candidates
    from attnrank.text.rerank import iter_queries

    cands = pl.DataFrame({"qid": ["9", "9", "9", "1"], "query": ["q9"] * 3 + ["q1"], "docid": ["c", "b", "a", "x"],
                          "rank": [2, 1, 1, 1], "score": [0.0] * 4, "text": ["tc", "tb", None, "tx"]})
    assert candidates.per_query(cands) == [("9", "q9", ["a", "b", "c"], ["", "tb", "tc"]), ("1", "q1", ["x"], ["tx"])]
    engine = [(it.qid, it.query, it.docids, it.texts) for it in iter_candidates(cands)]
    text = [(q, query, [d for d, _ in docs], [t for _, t in docs]) for q, query, docs in iter_queries(cands)]
    assert engine == text == candidates.per_query(cands)
    with pytest.raises(InputError, match=r"missing column\(s\) \['text'\]"):
        candidates.per_query(cands.drop("text"))


def test_candidates_job_writes_the_lists_first_stage_run_at_its_depth(tmp_path):
    """A candidate list's first-stage row (attnrank.plan: candidates.lists) is the first stage cut at the list's depth."""
    from attnrank.data.synthetic import make_collection

    folder = make_collection(tmp_path / "c", n_docs=30, n_queries=4, seed=1)
    ds = sources.read_beir(folder, "test", "c")
    qids = ds.queries["qid"].to_list()
    docs = ds.corpus["docid"].to_list()
    run = pl.DataFrame({"qid": [q for q in qids for _ in range(8)], "docid": [d for _ in qids for d in docs[:8]],
                        "score": [float(8 - i) for _ in qids for i in range(8)]})
    io.write_trec(run, tmp_path / "run.trec", tag="bm25")
    corpus_dir = tmp_path / "data"
    corpus_dir.mkdir()
    io.write_parquet(ds.corpus, corpus_dir / "corpus.parquet")
    io.write_parquet(ds.queries, corpus_dir / "queries.parquet")
    io.write_parquet(ds.qrels, corpus_dir / "qrels.parquet")
    candidates.write_candidates(str(corpus_dir), str(tmp_path / "run.trec"), 5, 300, "c/bm25-5", str(tmp_path / "c.parquet"),
                                str(tmp_path / "c.json"), run_out=str(tmp_path / "c.trec"))
    cut = io.read_trec(tmp_path / "c.trec")
    assert cut.group_by("qid").len()["len"].to_list() == [5] * cut["qid"].n_unique()
    assert set(cut["docid"]) == set(pl.read_parquet(tmp_path / "c.parquet")["docid"]) == set(docs[:5])


def test_candidates_from_a_scanned_corpus_equal_in_memory(tmp_path):
    """Issue 25: the candidates job scans the corpus for the run's documents; same table as the whole corpus."""
    ds = _ds()
    run = pl.DataFrame({"qid": ["q1", "q1", "q2"], "docid": ["d2", "d1", "d3"], "rank": [1, 2, 1], "score": [3.0, 2.0, 1.0]})
    sources.save(ds, tmp_path / "data")
    lazy = sources.read(tmp_path / "data", lazy=True)
    assert isinstance(lazy.corpus, pl.LazyFrame)
    a, ma = candidates.build(ds, run, depth=2, max_doc_words=3)
    b, mb = candidates.build(lazy, run, depth=2, max_doc_words=3)
    assert a.equals(b) and ma == mb
    with pytest.raises(InputError, match="not in the corpus"):
        candidates.build(lazy, run.with_columns(docid=pl.lit("nope")), depth=2, max_doc_words=3)
