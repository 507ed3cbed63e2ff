"""Detection-set builder: layouts (QRHead shuffle, CoRe spread), hard negatives below the positive, false-negative
filter, skips."""

from __future__ import annotations

import logging

import polars as pl
import pytest

from attnrank.data.sources import read_beir
from attnrank.selection.detection import build_detection_set, layout_for, positive_labels, spread_slots
from attnrank.errors import InputError
from attnrank.data.synthetic import make_collection


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_collection(tmp_path_factory.mktemp("tiny"), n_docs=120, n_queries=12, seed=3)
    ds = read_beir(folder, "train", "tiny")
    # first stage: term overlap with the query, over the whole corpus (ties resolved by docid in the builder)
    qwords = {q: set(t.split()) for q, t in zip(ds.queries["qid"], ds.queries["text"])}
    rows = []
    for docid, title, text in ds.corpus.select("docid", "title", "text").iter_rows():
        words = (title + " " + text).split()
        for q, qw in qwords.items():
            rows.append((q, docid, float(sum(w in qw for w in words))))
    run = pl.DataFrame(rows, schema={"qid": pl.String, "docid": pl.String, "score": pl.Float64}, orient="row")
    run = run.with_columns(rank=pl.col("score").rank("ordinal", descending=True).over("qid").cast(pl.Int32))
    return ds, run


def test_positions_negatives_and_filter_on_tiny_dataset(tiny):
    ds, run = tiny
    report = {}
    det = build_detection_set(ds.queries, ds.qrels, run, ds.corpus, n_queries=4, n_negatives=6, positions=3, report=report)
    assert report["layout"] == "spread" and report["positive_slots"] == {"1": 4, "4": 4, "7": 4}  # the default
    assert set(det.columns) >= {"qid", "query", "docid", "rank", "score", "text", "sample_id", "orig_qid", "label"}
    assert report["n_queries"] == 4 and report["n_samples"] == 12
    assert det["orig_qid"].n_unique() == 4
    assert (det["qid"] == det["sample_id"]).all()
    relevant = {(q, d) for q, d, r in ds.qrels.iter_rows() if r >= 1}
    scores = {(q, d): s for q, d, s in run.select("qid", "docid", "score").iter_rows()}
    for q in det["orig_qid"].unique().to_list():
        per_q = det.filter(pl.col("orig_qid") == q)
        assert per_q["sample_id"].n_unique() == 3
        neg_orders = []
        for p in range(3):
            smp = per_q.filter(pl.col("sample_id") == f"{q}#p{p}").sort("rank")
            assert smp["rank"].to_list() == list(range(1, 8))
            assert smp["label"].to_list() == [int(i == (0, 3, 6)[p]) for i in range(7)]  # spread: first, middle, last
            neg_orders.append(smp.filter(pl.col("label") == 0)["docid"].to_list())
            pos = smp.filter(pl.col("label") == 1)["docid"][0]
        assert neg_orders[0] == neg_orders[1] == neg_orders[2]
        # positive: judged, best grade; negatives: unjudged-as-relevant, strictly below the positive, hardest first
        assert (q, pos) in relevant
        best_grade = max(r for qq, d, r in ds.qrels.iter_rows() if qq == q)
        assert dict(((d, r) for qq, d, r in ds.qrels.iter_rows() if qq == q))[pos] == best_grade
        expect = (
            run.filter((pl.col("qid") == q) & (pl.col("score") < scores[(q, pos)]))
            .filter(~pl.col("docid").is_in([d for qq, d in relevant if qq == q]))
            .sort(["score", "docid"], descending=[True, False])["docid"].head(6).to_list()
        )
        assert neg_orders[0] == expect
        assert all(scores[(q, d)] < scores[(q, pos)] for d in neg_orders[0])
        # text is the corpus text, query is the query text
        row = per_q.row(0, named=True)
        assert row["query"] == ds.queries.filter(pl.col("qid") == q)["text"][0]


def test_same_seed_same_set_other_seed_other_queries(tiny):
    ds, run = tiny
    a = build_detection_set(ds.queries, ds.qrels, run, ds.corpus, n_queries=3, n_negatives=4, positions=2, seed=1)
    b = build_detection_set(ds.queries, ds.qrels, run, ds.corpus, n_queries=3, n_negatives=4, positions=2, seed=1)
    assert a.equals(b)
    others = [
        set(build_detection_set(ds.queries, ds.qrels, run, ds.corpus, n_queries=3, n_negatives=4, positions=2, seed=s)["orig_qid"])
        for s in range(2, 6)
    ]
    assert any(o != set(a["orig_qid"]) for o in others)


def frames(run_rows, qrels_rows, docs=("pos", "d1", "d2", "d3", "d4", "d5", "j1")):
    queries = pl.DataFrame({"qid": ["q1", "q2"], "text": ["find it", "other"]})
    qrels = pl.DataFrame(qrels_rows, schema={"qid": pl.String, "docid": pl.String, "relevance": pl.Int32}, orient="row")
    run = pl.DataFrame(run_rows, schema={"qid": pl.String, "docid": pl.String, "score": pl.Float64}, orient="row")
    run = run.with_columns(rank=pl.col("score").rank("ordinal", descending=True).over("qid").cast(pl.Int32))
    corpus = pl.DataFrame({"docid": list(docs), "title": [""] * len(docs), "text": [f"text of {d}" for d in docs]})
    return queries, qrels, run, corpus


def test_false_negatives_and_judged_documents_are_dropped():
    run_rows = [("q1", "d1", 9.0), ("q1", "d5", 8.0), ("q1", "pos", 8.0), ("q1", "d2", 7.0), ("q1", "j1", 6.5),
                ("q1", "d3", 6.0), ("q1", "d4", 5.0)]
    queries, qrels, run, corpus = frames(run_rows, [("q1", "pos", 1), ("q1", "j1", 1), ("q1", "d4", 0)])
    det = build_detection_set(queries, qrels, run, corpus, n_queries=5, n_negatives=3, positions=2)
    s0 = det.filter(pl.col("sample_id") == "q1#p0").sort("rank")
    # d1 (above) and d5 (tied with the positive) are possible false negatives; j1 is judged relevant;
    # d4 is judged non-relevant (0), so it is a valid negative
    assert s0["docid"].to_list() == ["pos", "d2", "d3", "d4"]
    s1 = det.filter(pl.col("sample_id") == "q1#p1").sort("rank")
    assert s1["docid"].to_list() == ["d2", "d3", "d4", "pos"]  # spread over 4 slots, P = 2: first and last
    assert s1["text"].to_list()[3] == "text of pos"
    assert positive_labels(det) == {"q1#p0": "pos", "q1#p1": "pos"}


def test_graded_qrels_min_relevance():
    """NQ-style grades: with min_relevance=2 the positive is the grade-2 document, and grade-1 documents (contain
    the answer) are never negatives even though they are not positives."""
    run_rows = [("q1", "d1", 9.0), ("q1", "pos", 8.0), ("q1", "j1", 7.0), ("q1", "d2", 6.0), ("q1", "d3", 5.0)]
    queries, qrels, run, corpus = frames(run_rows, [("q1", "pos", 2), ("q1", "d1", 1), ("q1", "j1", 1), ("q1", "d3", -1)])
    det = build_detection_set(queries, qrels, run, corpus, n_negatives=2, positions=1, min_relevance=2)
    assert det.sort("rank")["docid"].to_list() == ["pos", "d2", "d3"]
    # with min_relevance=1 the best-scored grade-2 document is still preferred over grade-1 ones
    det1 = build_detection_set(queries, qrels, run, corpus, n_negatives=2, positions=1, min_relevance=1)
    assert det1.filter(pl.col("label") == 1)["docid"].to_list() == ["pos"]


def test_skips_are_logged(caplog):
    run_rows = [("q1", "pos", 9.0), ("q1", "d2", 7.0), ("q2", "gone", 9.0), ("q2", "d1", 1.0)]
    queries, qrels, run, corpus = frames(run_rows, [("q1", "pos", 1), ("q2", "gone", 1)])
    report = {}
    with caplog.at_level(logging.WARNING), pytest.raises(InputError, match="no query gives a sample"):
        build_detection_set(queries, qrels, run, corpus, n_negatives=2, positions=1, report=report)
    assert "positive not in corpus" in caplog.text and "too few negatives" in caplog.text
    caplog.clear()
    # q2's positive missing from the corpus is skipped, q1 (1 negative asked) is built
    with caplog.at_level(logging.WARNING):
        det = build_detection_set(queries, qrels, run, corpus, n_negatives=1, positions=1, report=report)
    assert det["orig_qid"].unique().to_list() == ["q1"]
    assert report["skipped"]["positive_not_in_corpus"] == ["q2"]
    assert "built 1 of 1000 requested" in caplog.text
    # a positive the first stage did not retrieve cannot filter false negatives: skipped
    queries, qrels, run, corpus = frames([("q1", "d1", 3.0), ("q1", "d2", 2.0)], [("q1", "pos", 1)])
    with caplog.at_level(logging.WARNING), pytest.raises(InputError):
        build_detection_set(queries, qrels, run, corpus, n_negatives=1, positions=1)
    assert "positive not in run" in caplog.text


def test_bad_arguments():
    queries, qrels, run, corpus = frames([("q1", "pos", 1.0)], [("q1", "pos", 1)])
    with pytest.raises(InputError, match="detection.n_negatives"):
        build_detection_set(queries, qrels, run, corpus, n_negatives=0)
    with pytest.raises(InputError, match="detection.positions"):
        build_detection_set(queries, qrels, run, corpus, n_negatives=2, positions=4)
    with pytest.raises(InputError, match=r"first_stage_run lacks column\(s\) \['score'\]"):
        build_detection_set(queries, qrels, run.drop("score"), corpus)


def test_detection_samples_feed_head_scoring(tiny):
    """The frame's qid/rank/label columns line up with what score_heads needs: a planted head is found."""
    import numpy as np

    from attnrank.selection.heads import score_heads
    from attnrank.attention.scores import QueryScores

    ds, run = tiny
    det = build_detection_set(ds.queries, ds.qrels, run, ds.corpus, n_queries=3, n_negatives=4, positions=5)
    rng = np.random.default_rng(0)
    samples = []
    for (sid,), g in det.sort("rank").group_by(["qid"], maintain_order=True):
        k = g.height
        raw = rng.random((3, 4, k)) * 0.05
        raw[2, 1, g["label"].to_numpy() == 1] += 0.2  # head (2, 1) finds the positive wherever it is
        raw[0, 0] += 0.5  # head (0, 0) attends to everything (high QR, no contrast)
        samples.append(QueryScores(sid, g["docid"].to_list(), raw.astype(np.float32), np.zeros_like(raw, np.float32),
                                   np.zeros((3, k), np.float32), np.arange(k, dtype=np.int32), np.ones(k, np.int32),
                                   masked_head=raw.astype(np.float32)))
    heads = score_heads(samples, positive_labels(det), temperature=0.05)
    assert len(samples) == 15
    best = heads.sort("core_rank").row(0, named=True)
    assert (best["layer"], best["head"]) == (2, 1)
    assert heads.sort("qr_mass_rank").row(0, named=True)["layer"] == 0


def test_sampled_negatives_come_from_the_filtered_pool(tiny):
    """negatives='sample' (CoRe): n_negatives drawn from the candidates below the positive, same filter, seeded."""
    ds, run = tiny
    hard = build_detection_set(ds.queries, ds.qrels, run, ds.corpus, n_queries=3, n_negatives=4, positions=1)
    samp = build_detection_set(ds.queries, ds.qrels, run, ds.corpus, n_queries=3, n_negatives=4, positions=1, negatives="sample")
    again = build_detection_set(ds.queries, ds.qrels, run, ds.corpus, n_queries=3, n_negatives=4, positions=1, negatives="sample")
    assert samp.equals(again)
    assert set(samp["orig_qid"]) == set(hard["orig_qid"])
    scores = dict(zip(zip(run["qid"], run["docid"]), run["score"]))
    differs = False
    for q, g in samp.group_by("orig_qid"):
        pos = g.filter(pl.col("label") == 1)
        neg = g.filter(pl.col("label") == 0)
        assert neg.height == 4
        assert all(scores[(q[0], d)] < scores[(q[0], pos["docid"][0])] for d in neg["docid"])  # below the positive
        assert neg["score"].to_list() == sorted(neg["score"].to_list(), reverse=True)  # first-stage order kept
        differs |= set(neg["docid"]) != set(hard.filter((pl.col("orig_qid") == q[0]) & (pl.col("label") == 0))["docid"])
    assert differs  # not simply the hardest
    with pytest.raises(InputError, match="detection.negatives"):
        build_detection_set(ds.queries, ds.qrels, run, ds.corpus, negatives="random")


def _wide(n_docs: int = 60, n_queries: int = 6):
    """Queries with one judged positive scored above ``n_docs - 1`` unjudged negatives (a strict score order)."""
    docs = [f"d{i:03d}" for i in range(n_docs * n_queries)]
    corpus = pl.DataFrame({"docid": docs, "title": [""] * len(docs), "text": [f"text {d}" for d in docs]})
    queries = pl.DataFrame({"qid": [f"q{j}" for j in range(n_queries)], "text": [f"query {j}" for j in range(n_queries)]})
    qrels = pl.DataFrame({"qid": [f"q{j}" for j in range(n_queries)], "docid": [docs[j * n_docs] for j in range(n_queries)],
                          "relevance": [1] * n_queries})
    run = pl.DataFrame({"qid": [f"q{j}" for j in range(n_queries) for _ in range(n_docs)],
                        "docid": [docs[j * n_docs + i] for j in range(n_queries) for i in range(n_docs)],
                        "score": [float(n_docs - i) for _ in range(n_queries) for i in range(n_docs)]})
    return queries, qrels, run, corpus


def _positive_slots(det: pl.DataFrame) -> dict[str, int]:
    return dict(det.filter(pl.col("label") == 1).select("sample_id", "rank").iter_rows())


def test_core_layout_puts_the_positive_at_five_spread_positions():
    """CoRe (arXiv 2510.02219; linhhtran/CoRe-Reranking @4d62a24 experiments/head_detection.py:38-58 reads the
    prebuilt nq_core.json, whose positions the code does not fix): 49 negatives, the positive at 5 positions spread
    over the 50 slots, first and last included (our choice, docs/methods.md); the negatives keep first-stage order."""
    assert spread_slots(50, 5) == [0, 12, 25, 37, 49]
    assert spread_slots(10, 2) == [0, 9] and spread_slots(7, 1) == [0]
    queries, qrels, run, corpus = _wide()
    det = build_detection_set(queries, qrels, run, corpus, n_queries=2, n_negatives=49, positions=5, layout="spread")
    slots = _positive_slots(det)
    assert len(slots) == 10
    for q in det["orig_qid"].unique():
        assert [slots[f"{q}#p{k}"] for k in range(5)] == [1, 13, 26, 38, 50]
        for k in range(5):
            smp = det.filter(pl.col("sample_id") == f"{q}#p{k}").sort("rank")
            neg = smp.filter(pl.col("label") == 0)["score"].to_list()
            assert len(neg) == 49 and neg == sorted(neg, reverse=True)


def test_qrhead_layout_shuffles_every_sample_with_the_seed():
    """QRHead (princeton-pli/QRHead @7a668e7 exp_scripts/detection/detect_qrhead_beir.py:52 random.seed(42), :60
    random.shuffle(docs) per instance): each sample is the positive and its negatives in a seeded random order, so
    the positive sits at a random slot that is the same for the same seed and differs across samples."""
    queries, qrels, run, corpus = _wide()
    kw = dict(n_queries=6, n_negatives=19, positions=2, layout="shuffle")
    a = build_detection_set(queries, qrels, run, corpus, seed=42, **kw)
    assert a.equals(build_detection_set(queries, qrels, run, corpus, seed=42, **kw))  # deterministic per seed
    slots = _positive_slots(a)
    assert len(slots) == 12 and len(set(slots.values())) > 3  # differs across samples (12 draws of 20 slots)
    assert set(slots.values()) != {1, 2}  # not the first P slots
    b = build_detection_set(queries, qrels, run, corpus, seed=43, **kw)
    assert _positive_slots(b) != slots  # another seed, other slots
    for sid, g in a.group_by("sample_id"):
        g = g.sort("rank")
        assert g["rank"].to_list() == list(range(1, 21)) and g["label"].sum() == 1
        # the negatives are shuffled too (not the first-stage order with the positive inserted)
    orders = {sid: tuple(g.sort("rank")["docid"]) for (sid,), g in a.group_by(["sample_id"])}
    assert orders["q0#p0"] != orders["q0#p1"] and sorted(orders["q0#p0"]) == sorted(orders["q0#p1"])
    neg = a.filter((pl.col("sample_id") == "q0#p0") & (pl.col("label") == 0)).sort("rank")["score"].to_list()
    assert neg != sorted(neg, reverse=True)


def test_first_layout_and_layout_choice():
    """``first`` (the layout before issue 22): the positive at each of the first P slots; ``auto`` gives each kind
    its paper's layout; an unknown layout is a one-line error."""
    queries, qrels, run, corpus = _wide()
    det = build_detection_set(queries, qrels, run, corpus, n_queries=1, n_negatives=9, positions=3, layout="first")
    assert sorted(_positive_slots(det).values()) == [1, 2, 3]
    assert (layout_for("qrhead"), layout_for("qr-mass"), layout_for("core")) == ("shuffle", "shuffle", "spread")
    assert layout_for("core", "first") == "first"
    with pytest.raises(InputError, match="detection.layout"):
        build_detection_set(queries, qrels, run, corpus, n_negatives=9, layout="middle")


# ------------------------------------------------------------------------------------------------ issue 25: reading
def test_corpus_read_only_for_needed_documents(tiny, tmp_path):
    """A frame, a lazy scan and a Parquet path give the same set; only documents of visited queries' candidates
    and positives are read (filtered scans), and many skips only add a scan."""
    from attnrank.selection import detection

    ds, run = tiny
    path = tmp_path / "corpus.parquet"
    extra = pl.DataFrame({"docid": [f"zz{i}" for i in range(50)], "title": [""] * 50, "text": ["never read"] * 50})
    pl.concat([ds.corpus, extra]).write_parquet(path)  # documents no run lists
    shallow = run.filter(pl.col("rank") <= 12)
    ref = build_detection_set(ds.queries, ds.qrels, shallow, ds.corpus, n_queries=3, n_negatives=4, positions=2, seed=1)
    for corpus in (path, str(path), pl.scan_parquet(path)):
        assert build_detection_set(ds.queries, ds.qrels, shallow, corpus, n_queries=3, n_negatives=4, positions=2, seed=1).equals(ref)
    texts = detection.CorpusTexts(path)
    qids = sorted(set(shallow["qid"]))[:2]
    cands = {q: [(d, 0.0) for d in shallow.filter(pl.col("qid") == q)["docid"]] for q in qids}
    texts.prepare(qids, {}, cands)
    assert texts.scans == 1 and set(texts.text) == {d for q in qids for d, _ in cands[q]} and "zz1" not in texts
    # n_queries=1 reads read_ahead(1) = 17 queries ahead: the first query of the same seeded order
    many = build_detection_set(ds.queries, ds.qrels, shallow, path, n_queries=1, n_negatives=4, positions=2, seed=1)
    assert many.equals(ref.filter(pl.col("orig_qid") == ref["orig_qid"][0]))
