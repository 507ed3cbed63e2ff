"""Published numbers beside ours (attnrank.evaluation.published): the shipped CoRe file, explicit mapping, the
difference, and the rendered tables."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from attnrank import config
from attnrank.errors import InputError
from attnrank.evaluation import published

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "data" / "published" / "core-beir.csv"


def _results(rows):
    cols = ["dataset", "retriever", "model", "method", "metric", "value", "n_queries", "ci_low", "ci_high"]
    return pl.DataFrame([dict(zip(cols, r)) for r in rows])


RESULTS = _results([
    ("mini", "bm25", "-", "bm25", "ndcg@10", 0.50, 4, 0.3, 0.7),
    ("mini", "bm25", "smollm2", "core@retrieval", "ndcg@10", 0.60, 4, 0.4, 0.8),
    ("mini", "bm25", "smollm2", "core@reversed", "ndcg@10", 0.55, 4, 0.4, 0.7),
    ("mini", "bm25", "smollm2", "icr@retrieval", "ndcg@10", 0.40, 4, 0.2, 0.6),  # not mapped: not compared
    ("mini", "bm25", "smollm2", "core@retrieval", "mrr@10", 0.70, 4, 0.5, 0.9),  # the paper has no MRR
])
SPEC = {"table": 3, "dataset": {"mini": "trec-covid"}, "model": {"smollm2": "Llama-3.1-8B-Instruct"},
        "method": {"core@retrieval": "CoRe-R"}, "first_stage": {"bm25": "granite-embedding-30m-english"},
        "candidates": 40, "note": "Stand-in run, not a reproduction."}


def test_shipped_core_file_is_the_papers_tables_in_the_long_format():
    pub = published.read_published(CORE)
    assert pub.height == 288 and set(pub["table"]) == {"1", "3"} and set(pub["candidates"]) == {40, 60}
    assert pub["value"].is_between(0, 1).all()  # printed x100, read in [0, 1] like our results
    cell = pub.filter((pl.col("table") == "3") & (pl.col("dataset") == "trec-covid") & (pl.col("method") == "CoRe-R"))
    assert cell["value"].to_list() == [pytest.approx(0.757)] and cell["model"][0] == "Llama-3.1-8B-Instruct"
    assert (REPO / "data" / "published" / "README.md").read_text().count("arXiv 2510.02219") == 1


def test_only_mapped_cells_are_compared_with_the_difference():
    frame = published.compare(RESULTS, published.read_published(CORE), SPEC, our_depth=20)
    got = {(r["model"], r["method"]): r for r in frame.iter_rows(named=True)}
    assert set(got) == {("-", "bm25"), ("smollm2", "core@retrieval")}  # core@reversed: the key names one order
    core = got[("smollm2", "core@retrieval")]
    assert core["published"] == pytest.approx(0.757) and core["difference"] == pytest.approx(0.60 - 0.757)
    assert (core["published_candidates"], core["our_candidates"], core["table"]) == (40, 20, "3")
    assert got[("-", "bm25")]["published_method"] == "first_stage"
    assert got[("-", "bm25")]["published"] == pytest.approx(0.631)
    # a method name (not a run label) maps every prompt order of it
    both = published.compare(RESULTS, published.read_published(CORE), {**SPEC, "method": {"core": "CoRe-R"}}, 20)
    assert set(both["method"]) == {"bm25", "core@retrieval", "core@reversed"}
    # without an explicit published depth our depth must be the paper's: top-20 is in no published table
    assert published.compare(RESULTS, published.read_published(CORE), {**SPEC, "candidates": None}, 20).height == 0


def test_a_mapping_to_a_missing_cell_name_is_an_error():
    with pytest.raises(InputError, match=r"published\.model\.smollm2.*Llama-3\.1-8B"):
        published.compare(RESULTS, published.read_published(CORE), {**SPEC, "model": {"smollm2": "Llama-3.1-8B"}}, 20)
    with pytest.raises(InputError, match="published.table"):
        published.compare(RESULTS, published.read_published(CORE), {**SPEC, "table": 7}, 20)


def test_rendered_tables_show_both_numbers_and_the_note():
    frame = published.compare(RESULTS, published.read_published(CORE), SPEC, our_depth=20)
    tex = published.to_latex(frame, SPEC)
    html = published.to_html(frame, SPEC)
    for text in (tex, html):
        assert "75.7" in text and "60.0" in text and "-15.7" in text and "Stand-in run, not a reproduction." in text
        assert "Table 3" in text and "20 / 40" in text
    assert r"\toprule" in tex and "<table>" in html


def test_config_published_section_is_checked(tmp_path):
    base = {"datasets": {"d": {"source": "synthetic"}}, "retrievers": {"bm25": {"kind": "bm25"}},
            "published": {"file": str(CORE), "dataset": {"d": "trec-covid"}, "first_stage": {"bm25": "granite-embedding-30m-english"}}}
    cfg = config.validate(base, check_files=True)
    assert cfg["published"]["file"] == str(CORE)
    with pytest.raises(InputError, match=r"published\.dataset\.x"):
        config.validate({**base, "published": {**base["published"], "dataset": {"x": "trec-covid"}}}, check_files=False)
    with pytest.raises(InputError, match="published.file"):
        config.validate({**base, "published": {**base["published"], "file": str(tmp_path / "no.csv")}})
