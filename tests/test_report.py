"""What a researcher reads: confidence intervals in results.csv, display labels, bold best re-ranker, the
candidates caption, HTML tables, the generated diagnostics table and the figures (PNG + PDF)."""

import json
import re

import numpy as np
import polars as pl
import pytest
from scipy import stats

from attnrank.evaluation import report, tables
from attnrank.errors import InputError
from attnrank.evaluation.tables import TableOrder


def per_query(runs, metric="ndcg@10"):
    rows = []
    for (dataset, retriever, model, method), vals in runs.items():
        rows += [{"qid": f"q{i:02d}", "metric": metric, "value": float(v), "dataset": dataset, "retriever": retriever,
                  "model": model, "method": method} for i, v in enumerate(vals)]
    return pl.DataFrame(rows)


RNG = np.random.default_rng(3)
BASE = RNG.uniform(0.3, 0.7, 20)
RUNS = {
    ("d1", "bm25", "-", "bm25"): BASE,                       # the first stage beats every re-ranker
    ("d1", "bm25", "m", "icr"): BASE - 0.2 + RNG.normal(0, 0.01, 20),
    ("d1", "bm25", "m", "qr"): BASE - 0.1 + RNG.normal(0, 0.01, 20),
}


def test_results_carry_std_and_student_t_interval():
    res = tables.results_frame(per_query(RUNS))
    for (d, ret, model, method), vals in RUNS.items():
        row = res.filter((pl.col("method") == method) & (pl.col("model") == model)).row(0, named=True)
        lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
        assert row["std"] == pytest.approx(np.std(vals, ddof=1))
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    one = tables.results_frame(per_query({("d", "bm25", "-", "bm25"): [0.5]}))
    assert one["ci_low"].to_list() == [None] and one["ci_high"].to_list() == [None]


def test_bold_marks_the_best_reranker_not_the_first_stage_and_labels_are_used():
    res = tables.results_frame(per_query(RUNS))
    labels = {"icr": "ICR", "qr": "QR-R", "bm25": "BM25", "m": "SmolLM2", "d1": "Cranfield"}
    tex = tables.metric_table(res, "ndcg@10", order=TableOrder(methods=("icr", "qr")), labels=labels,
                              candidates={"depth": 10, "retrievers": ["bm25"]})
    row = next(line for line in tex.splitlines() if line.startswith("Cranfield"))
    cells = row.rstrip(" \\").split(" & ")
    assert "textbf" not in cells[1] and r"\textbf" in cells[3] and "textbf" not in cells[2]  # qr, not BM25
    assert "Dataset & BM25 & ICR & QR-R" in tex and "{SmolLM2}" in tex
    assert "re-rank the top-10 of BM25" in tex
    html = report.results_html(res, "ndcg@10", order=TableOrder(methods=("icr", "qr")), labels=labels,
                               candidates={"depth": 10, "retrievers": ["bm25"]})
    body = re.search(r"<tbody>(.*)</tbody>", html).group(1)
    cells = re.findall(r"<td>(.*?)</td>", body)
    assert cells[0] == "Cranfield (20)" and "<b>" not in cells[1] and "<b>" in cells[3]
    assert "<b>" not in cells[2] and "&darr;" in cells[2]  # ICR is significantly worse than BM25
    lo, hi = res.filter(pl.col("method") == "qr").select("ci_low", "ci_high").row(0)
    assert f"[{100 * lo:.1f}, {100 * hi:.1f}]" in cells[3]
    assert "top-10 of BM25" in html and "@" not in re.sub(r"nDCG@10", "", html)


def test_diagnostics_from_sidecars(tmp_path):
    att = tmp_path / "qr.json"
    att.write_text(json.dumps({"method": "qr", "kind": "qr", "layers_needed": 9, "model_layers": 30,
                               "heads": [[3, 1], [8, 0]], "selectivity": {"share_relevant": 0.25, "share_irrelevant": 0.5}}))
    sel = tmp_path / "sel.json"
    sel.write_text(json.dumps({"method": "sel", "kind": "selective", "layers_needed": 20, "model_layers": 30, "window": [14, 19]}))
    txt = tmp_path / "rankgpt.json"
    txt.write_text(json.dumps({"method": "rankgpt", "spec": {"kind": "rankgpt"},
                               "stats": {"generations": 38, "parse_failures": 27, "parse_repairs": 5, "empty_generations": 0}}))
    ids = lambda m: {"dataset": "d", "retriever": "bm25", "model": "m", "method": m}  # noqa: E731
    diag = report.write_diagnostics({att: ids("qr"), sel: ids("sel"), txt: ids("rankgpt")}, tmp_path / "out",
                                    order=TableOrder(methods=("qr", "sel", "rankgpt")), labels={"qr": "QR-R"})
    rows = {r["method"]: r for r in diag.iter_rows(named=True)}
    assert (rows["qr"]["layers_needed"], rows["qr"]["model_layers"], rows["qr"]["heads"]) == (9, 30, 2)
    assert rows["sel"]["window"] == "14-19" and rows["sel"]["heads"] is None
    assert (rows["rankgpt"]["kind"], rows["rankgpt"]["parse_failures"], rows["rankgpt"]["parse_repairs"]) == ("rankgpt", 27, 5)
    html = (tmp_path / "out" / "diagnostics.html").read_text()
    assert "<td>QR-R</td><td>9/30</td><td>2</td><td>--</td><td>0.25 / 0.50</td><td>--</td>" in html
    assert "<td>27 / 5 of 38</td>" in html
    tex = (tmp_path / "out" / "diagnostics.tex").read_text()
    assert r"\toprule" in tex and "QR-R & 9/30 & 2" in tex
    assert pl.read_csv(tmp_path / "out" / "diagnostics.csv").height == 3
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="bad.json"):
        report.diagnostics_frame({bad: ids("x")})


def test_figures_are_written_as_png_and_pdf(tmp_path):
    res = tables.results_frame(per_query(RUNS))
    report.plot_effectiveness(res, tmp_path / "eff.png", labels={"d1": "Cranfield"})
    for name in ("eff.png", "eff.pdf"):
        assert (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "eff.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "eff.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(InputError, match="map@5"):
        report.plot_effectiveness(res, tmp_path / "x.png", "map@5")


def test_latency_html_counts_as_integers():
    lat = pl.DataFrame({"model": ["m", "m"], "method": ["icr", "rankgpt"], "device": ["cpu"] * 2, "n_queries": [3, 3],
                        "seconds_per_query": [0.5, 12.0], "forward_passes_per_query": [1.0, 91.33],
                        "generated_tokens_per_query": [0.0, 91.33], "peak_mem_bytes": [2**30, 2**31], "ndcg@10": [0.3, 0.4]})
    html = report.latency_html(lat, labels={"icr": "ICR"})
    assert "<td>m</td><td>ICR</td><td>500.0</td><td>1</td><td>0</td><td>1.00</td><td>30.0</td>" in html
    assert "<td>91.3</td><td>91.3</td>" in html and "on cpu, 3 sampled queries" in html


def test_run_labels_of_several_prompt_orders_keep_the_order_and_sort_with_their_method():
    labels = {"icr": "ICR"}
    assert tables.display_name(labels, "icr@reversed") == "ICR@reversed"
    assert tables.display_name(labels, "qr@reversed") == "qr@reversed" and tables.display_name(None, "icr") == "icr"
    order = ("icr", "qr")
    assert TableOrder.sort(["qr", "icr@shuffle", "zz", "icr@reversed"], order) == ["icr@reversed", "icr@shuffle", "qr", "zz"]


def test_grid_html_one_table_per_model_dataset_first_stage_with_labels():
    frame = pl.DataFrame({
        "dataset": ["d1"] * 3 + ["d2"], "retriever": ["bm25"] * 4, "model": ["m"] * 4,
        "framework": ["full list", "pointwise", "listwise", "full list"],
        "mechanism": ["attention", "generation", "generation", "attention"], "method": ["icr", "yesno", "rankgpt", "icr"],
        "metric": ["ndcg@10"] * 4, "value": [0.40, 0.30, 0.45, 0.2], "n_queries": [10, 10, 10, 5],
        "seconds_per_query": [0.12, None, 3.5, 0.1], "seconds_source": ["rerank job", None, "latency", "rerank job"],
    })
    page = report.grid_html(frame, order=TableOrder(datasets=("d2", "d1")), labels={"icr": "ICR", "d1": "Cranfield"})
    assert page.count("<table>") == 2 and page.index("on d2 (5 queries)") < page.index("on Cranfield (10 queries)")
    first = page[page.index("Cranfield (10 queries)"):]
    rows = dict(re.findall(r"<tr><td>(\w[\w ]*)</td>(.*?)</tr>", first)[:3])
    assert set(rows) == {"Pointwise", "Listwise", "Full list"}
    assert "<b>45.0</b>" in rows["Listwise"] and "3.50 s/q, rankgpt" in rows["Listwise"]
    assert "&ndash;" in rows["Full list"] and "40.0" in rows["Full list"] and "0.12 s/q, ICR" in rows["Full list"]
    assert "&ndash;, yesno" in rows["Pointwise"]  # no timing
    assert "No configured method" in report.grid_html(frame.clear())


def test_position_bias_plot_one_bar_per_prompt_order_png_and_pdf(tmp_path):
    from attnrank.attention import position

    rows = [{"dataset": "d", "retriever": "bm25", "model": "m", "method": f"{m}@{o}", "metric": position.METRIC,
             "value": v, "ci_low": v - 0.1, "ci_high": v + 0.1, "n_queries": 5}
            for (m, o), v in {("icr", "retrieval"): 0.4, ("icr", "reversed"): -0.2, ("qr", "retrieval"): 0.1}.items()]
    res = pl.DataFrame(rows + [{**rows[0], "method": "bm25", "metric": "ndcg@10"}])
    position.plot(res, tmp_path / "pb.png", labels={"icr": "ICR"})
    assert (tmp_path / "pb.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "pb.pdf").read_bytes()[:4] == b"%PDF"
    position.plot(res.filter(pl.col("metric") == "ndcg@10"), tmp_path / "none.png")  # no attention runs: a note
    assert (tmp_path / "none.pdf").stat().st_size > 0


def test_position_bias_is_not_tabulated_as_effectiveness():
    pq = per_query(RUNS)
    pb = pq.filter(pl.col("method") != "bm25").with_columns(metric=pl.lit("position_bias"))
    res = tables.results_frame(pl.concat([pq, pb]))
    assert "position_bias" in set(res["metric"])
    page = report.results_html(res, "ndcg@10", ["ndcg@10", "position_bias"])
    assert page.count("<table>") == 1 and "position_bias" not in page
