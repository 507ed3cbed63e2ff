"""Attention as the scorer inside the text frameworks (listwise windows, setwise heapsort, pointwise) and the
framework x mechanism grid table. Tiny random Llama; each window / set is checked against the engine run on it alone."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import polars as pl
import pytest

from attnrank.attention import methods
from attnrank.evaluation import grid
from attnrank.text import attnscoring, kinds
from attnrank.text import setwise as S
from attnrank.attention.engine import QueryInput, Scorer
from attnrank.errors import InputError
from attnrank.text.rankgpt import sliding_windows
from attnrank.text.rerank import get_reranker
from attnrank.text.base import Stats

QUERY = "which planet has the largest moon orbit"
PROMPT = {"max_doc_tokens": 12, "order": "reversed"}
# head table for a QR head set in layers 0-1 of the 3-layer tiny model (the scorer then runs 2 layers only)
HEADS = pl.DataFrame({"layer": [1, 0, 2, 0], "head": [2, 1, 0, 3], "qrhead_rank": [1, 2, 3, 4]})
SPECS = {
    "icr": ({"kind": "icr"}, {}),
    "icr-cut": ({"kind": "icr", "max_layer": 0, "calibration": "na"}, {}),
    "qr": ({"kind": "qrhead", "k_heads": 2}, {"heads": HEADS}),
}


def _docs(n):
    words = "planet star orbit telescope galaxy comet moon solar eclipse nebula largest".split()
    return [(f"d{i:02d}", " ".join(words[(3 * i + j) % len(words)] for j in range(4 + i % 3))) for i in range(n)]


def _alone(model, tok, spec, artifacts, docs):
    """What the engine gives for ``docs`` as one prompt on its own (full depth), aggregated by the method."""
    qs = Scorer(model, tok, PROMPT, token_scores=True).score([QueryInput(QUERY, QUERY, [d for d, _ in docs], [t for _, t in docs])])[0]
    params = {k: v for k, v in spec.items() if k != "kind"}
    return methods.aggregate(qs, spec["kind"], params, artifacts, n_layers=model.config.num_hidden_layers)


def _params(spec, artifacts, **kw):
    return {"attention": spec, "prompt": PROMPT, "_artifacts": artifacts, "max_doc_tokens": PROMPT["max_doc_tokens"], **kw}


@pytest.fixture
def record(monkeypatch):
    """Every set of passages the attention scorer sees, with the scores it returned."""
    calls = []
    orig = attnscoring.AttentionScorer.score_sets

    def spy(self, query, sets, stats=None):
        out = orig(self, query, sets, stats)
        calls.extend((list(s), np.asarray(v)) for s, v in zip(sets, out))
        return out

    monkeypatch.setattr(attnscoring.AttentionScorer, "score_sets", spy)
    return calls


@pytest.mark.parametrize("which", sorted(SPECS))
def test_listwise_window_scores_equal_the_engine_on_the_window_alone(tiny_llama, record, which):
    model, tok = tiny_llama
    spec, artifacts = SPECS[which]
    docs = _docs(9)
    ranked = get_reranker("rankgpt")(model, tok, QUERY, docs, _params(spec, artifacts, scoring="attention", window=4, stride=2), Stats())
    # the windows RankGPT visits, bottom to top, each scored once
    assert [len(s) for s, _ in record] == [e - s for s, e in sliding_windows(9, 4, 2)]
    order = list(range(9))
    pos = {d: j for j, (d, _) in enumerate(docs)}
    for (start, end), (seen, scores) in zip(sliding_windows(9, 4, 2), record):
        assert [pos[d] for d, _ in seen] == order[start:end]  # the window in its current order
        np.testing.assert_allclose(scores, _alone(model, tok, spec, artifacts, seen), rtol=1e-5, atol=1e-7)
        window = order[start:end]
        order[start:end] = [window[p] for p in sorted(range(len(window)), key=lambda p: -scores[p])]
    assert [d for d, _ in ranked] == [docs[j][0] for j in order]


def test_one_window_over_all_candidates_is_the_attention_method(tiny_llama):
    """Depth <= window: listwise attention is the attention method on the whole candidate list (ties aside)."""
    model, tok = tiny_llama
    docs = _docs(6)
    ranked = get_reranker("rankgpt")(model, tok, QUERY, docs, _params({"kind": "icr"}, {}, scoring="attention", window=20), Stats())
    scores = _alone(model, tok, {"kind": "icr"}, {}, docs)
    assert [d for d, _ in ranked] == [docs[j][0] for j in np.argsort(-scores, kind="stable")]


@pytest.mark.parametrize("which", ["icr", "qr"])
def test_setwise_attention_picks_the_argmax(tiny_llama, record, monkeypatch, which):
    model, tok = tiny_llama
    spec, artifacts = SPECS[which]
    picks = []
    orig = S.heapsort_top

    def spy(n, c, top_k, best_of):
        def watched(items):
            w = best_of(items)
            picks.append((list(items), w))
            return w

        return orig(n, c, top_k, watched)

    monkeypatch.setattr(S, "heapsort_top", spy)
    docs = _docs(8)
    get_reranker("setwise")(model, tok, QUERY, docs, _params(spec, artifacts, scorer="attention", c=2, top_k=3), Stats())
    assert picks and len(picks) == len(record)
    for (items, w), (seen, scores) in zip(picks, record):
        assert [d for d, _ in seen] == [docs[j][0] for j in items]
        alone = _alone(model, tok, spec, artifacts, seen)
        np.testing.assert_allclose(scores, alone, rtol=1e-5, atol=1e-7)
        best = max(alone)
        assert w == min((p for p in range(len(items)) if alone[p] == best), key=lambda p: items[p])


def test_setwise_attention_ties_go_to_the_first_stage_order(tiny_llama, monkeypatch):
    model, tok = tiny_llama
    monkeypatch.setattr(attnscoring.AttentionScorer, "score_sets", lambda self, q, sets, stats=None: [np.zeros(len(s)) for s in sets])
    docs = _docs(7)
    ranked = get_reranker("setwise")(model, tok, QUERY, docs, _params({"kind": "icr"}, {}, scorer="attention", top_k=None), Stats())
    assert [d for d, _ in ranked] == [d for d, _ in docs]


def test_pointwise_attention_scores_every_passage_alone(tiny_llama, record):
    model, tok = tiny_llama
    docs = _docs(5)
    ranked = get_reranker("pointwise")(model, tok, QUERY, docs, _params({"kind": "icr"}, {}, batch_size=2), Stats())
    assert sorted(len(s) for s, _ in record) == [1] * 5
    want = {d: float(_alone(model, tok, {"kind": "icr"}, {}, [(d, t)])[0]) for d, t in docs}
    got = dict(ranked)
    for d in want:
        assert got[d] == pytest.approx(want[d], rel=1e-5, abs=1e-7)


def test_listwise_likelihood_orders_a_window_by_label_logits(tiny_llama):
    import torch

    from attnrank.text.lm import Frame
    from attnrank.text.base import resolve_params

    model, tok = tiny_llama
    docs = _docs(5)
    p = resolve_params("rankgpt", {"scoring": "likelihood", "max_doc_tokens": 12})
    ranked = get_reranker("rankgpt")(model, tok, QUERY, docs, p, Stats())
    frame = Frame(tok, p)
    labels = S.setwise_labels(frame, "auto", 5)
    ids = S.setwise_prompt(frame, QUERY, [t for _, t in docs], labels)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
    lab = logits[[frame.answer_token(l, "t") for l in labels]].tolist()
    assert [d for d, _ in ranked] == [docs[j][0] for j in sorted(range(5), key=lambda j: -lab[j])]


CELLS = [
    ("yesno", {}), ("qlm", {}), ("pointwise", {"attention": {"kind": "icr"}}),
    ("rankgpt", {"window": 3, "stride": 2, "max_new_tokens": 6}), ("rankgpt", {"scoring": "likelihood", "window": 3, "stride": 2}),
    ("rankgpt", {"scoring": "attention", "window": 3, "stride": 2, "attention": {"kind": "qrhead", "k_heads": 2}}),
    ("setwise", {"scorer": "generation", "c": 2}), ("setwise", {"scorer": "likelihood", "c": 2}),
    ("setwise", {"scorer": "attention", "c": 2, "attention": {"kind": "icr", "max_layer": 1}}),
]


@pytest.mark.parametrize("kind,spec", CELLS, ids=[f"{k}-{grid.cell(k, s)[0]}-{grid.cell(k, s)[1]}" for k, s in CELLS])
@pytest.mark.parametrize("n", [0, 1, 2, 6])
def test_every_cell_returns_a_permutation_of_the_candidates(tiny_llama, kind, spec, n):
    model, tok = tiny_llama
    params = attnscoring.text_params(kind, {"kind": kind, **spec}, PROMPT)
    if "attention" in spec and spec["attention"]["kind"] == "qrhead":
        params["_artifacts"] = {"heads": HEADS}
    docs = _docs(n)
    ranked = get_reranker(kind)(model, tok, QUERY, docs, params, Stats())
    assert sorted(d for d, _ in ranked) == sorted(d for d, _ in docs)
    assert all(np.isfinite(s) for _, s in ranked)


def test_text_params_and_bad_specs_are_one_line_errors(tmp_path):
    p = attnscoring.text_params("lw", {"kind": "rankgpt", "scoring": "attention", "attention": {"kind": "qrhead", "k_heads": 2}},
                                {"max_doc_tokens": 50, "order": "reversed"}, {"heads": str(_write_heads(tmp_path))})
    assert p["max_doc_tokens"] == 50 and p["prompt"]["order"] == "reversed" and p["_artifacts"]["heads"].height == 4
    assert attnscoring.text_params("g", {"kind": "rankgpt"}, {"max_doc_tokens": 50}) == {"max_doc_tokens": 50}
    with pytest.raises(InputError, match=r"methods\.lw\.attention: scoring by attention needs"):
        kinds.text_attention_spec("rankgpt", {"scoring": "attention"}, "lw")
    with pytest.raises(InputError, match=r"methods\.lw\.attention\.kind: unknown attention kind 'icrr'"):
        kinds.text_attention_spec("rankgpt", {"scoring": "attention", "attention": {"kind": "icrr"}}, "lw")
    with pytest.raises(InputError, match=r"methods\.sw\.attention\.k_head: unknown parameter"):
        attnscoring.text_attention_spec("setwise", {"scorer": "attention", "attention": {"kind": "qrhead", "k_head": 2}}, "sw")
    assert attnscoring.text_attention_spec("setwise", {"scorer": "generation", "attention": {"kind": "icr"}}, "sw") is None


def test_missing_artifact_and_bad_scoring_are_input_errors(tiny_llama):
    model, tok = tiny_llama
    with pytest.raises(InputError, match="needs the 'heads' artifact"):
        get_reranker("rankgpt")(model, tok, QUERY, _docs(3), _params({"kind": "qrhead", "k_heads": 2}, None, scoring="attention"), Stats())
    with pytest.raises(InputError, match="methods.rankgpt.scoring"):
        get_reranker("rankgpt")(model, tok, QUERY, _docs(3), {"scoring": "attn"}, Stats())
    with pytest.raises(InputError, match="methods.pointwise.scoring"):
        get_reranker("pointwise")(model, tok, QUERY, _docs(3), {"scoring": "likelihood"}, Stats())


def _write_heads(tmp_path):
    path = tmp_path / "heads.parquet"
    HEADS.write_parquet(path)
    return path


def test_latency_times_attention_scored_frameworks(tiny_llama):
    from attnrank.evaluation.latency import benchmark_rerank, summarize

    model, tok = tiny_llama
    rows = [(q, f"query {q}", d, r + 1, t) for q in ("q1", "q2") for r, (d, t) in enumerate(_docs(4))]
    cands = pl.DataFrame(rows, schema=["qid", "query", "docid", "rank", "text"], orient="row")
    for kind, spec in [("rankgpt", {"scoring": "attention", "window": 3, "stride": 2}), ("setwise", {"scorer": "attention", "c": 2}),
                       ("pointwise", {})]:
        params = attnscoring.text_params(kind, {"kind": kind, **spec, "attention": {"kind": "icr"}}, PROMPT)
        out = benchmark_rerank(kind, model, tok, cands, params, n=2, warmup=0)
        assert len(out) == 2 and all(r["forward_passes"] >= 1 and r["model_calls"] >= 2 for r in out)
        assert summarize(out, "tiny", kind)["seconds_per_query"] > 0


def test_grid_cells_from_config_entries():
    assert grid.cell("yesno", {}) == ("pointwise", "generation")
    assert grid.cell("qlm", {}) == ("pointwise", "likelihood")
    assert grid.cell("pointwise", {}) == ("pointwise", "attention")
    assert grid.cell("rankgpt", {}) == ("listwise", "generation")
    assert grid.cell("rankgpt", {"scoring": "attention"}) == ("listwise", "attention")
    assert grid.cell("setwise", {}) == ("setwise", "likelihood")
    assert grid.cell("setwise", {"scorer": "attention"}) == ("setwise", "attention")
    assert grid.cell("qrhead", {"k_heads": 4}) == ("full list", "attention")
    with pytest.raises(InputError, match=r"methods\.x\.scoring"):
        grid.cell("rankgpt", {"scoring": "vibes"}, "x")
    with pytest.raises(InputError, match=r"methods\.y\.kind"):
        grid.cell("bogus", {}, "y")


def test_grid_table_csv_and_latex(tmp_path):
    methods_ = {"yn": {"kind": "yesno"}, "q": {"kind": "qlm"}, "lw": {"kind": "rankgpt"}, "lw-att": {"kind": "rankgpt", "scoring": "attention"},
                "sw-att": {"kind": "setwise", "scorer": "attention"}, "sw-att2": {"kind": "setwise", "scorer": "attention", "c": 2},
                "icr": {"kind": "icr"}}
    vals = {"yn": 0.2, "q": 0.31, "lw": 0.3, "lw-att": 0.25, "sw-att": 0.28, "sw-att2": 0.9, "icr": 0.22}
    res = pl.DataFrame([{"dataset": "cisi", "retriever": "bm25", "model": "m", "method": k, "metric": "ndcg@10", "value": v,
                         "n_queries": 38} for k, v in vals.items()]
                       + [{"dataset": "cisi", "retriever": "bm25", "model": "-", "method": "bm25", "metric": "ndcg@10",
                           "value": 0.35, "n_queries": 38}])
    lat = tmp_path / "lat.csv"
    pl.DataFrame({"model": ["m"], "method": ["icr"], "seconds_per_query": [0.5]}).write_csv(lat)
    sidecars = {}
    for k in vals:
        path = tmp_path / f"{k}.json"
        path.write_text(json.dumps({"method": k, "stats": {"seconds_per_query": 2.0}} if k != "icr" else {"method": k}))
        sidecars[str(path)] = {"dataset": "cisi", "retriever": "bm25", "model": "m", "method": k}
    frame = grid.write_grid(res, grid.cells(methods_), "ndcg@10", tmp_path, latency_paths=[lat], sidecars=sidecars,
                            methods_order=list(methods_))
    assert set(frame["method"]) == set(vals)  # first stages have no cell; every method is in the CSV
    icr = frame.filter(pl.col("method") == "icr").row(0, named=True)
    assert (icr["framework"], icr["seconds_per_query"], icr["seconds_source"]) == ("full list", 0.5, "latency")
    assert frame.filter(pl.col("method") == "yn")["seconds_source"][0] == "rerank job"
    assert pl.read_csv(tmp_path / "grid.csv").height == len(vals)
    tex = (tmp_path / "grid.tex").read_text()
    rows = {line.split(" & ")[0]: line for line in tex.splitlines() if " & " in line and not line.startswith(" &")}
    assert rows["Pointwise"] == r"Pointwise & 20.0 & 2.00 & \textbf{31.0} & 2.00 & -- & -- \\"
    assert rows["Listwise"].startswith("Listwise & 30.0 & 2.00 & -- & -- & 25.0 & 2.00")
    assert rows["Setwise"] == r"Setwise & -- & -- & -- & -- & 28.0 & 2.00 \\"  # sw-att (first in config), not sw-att2
    assert rows["Full list"] == r"Full list & -- & -- & -- & -- & 22.0 & 0.50 \\"
    assert "sw-att2" not in tex and "sw-att (setwise, attention)" in tex
