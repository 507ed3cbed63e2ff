"""Significance (Holm, randomization / t-test, baseline choice) and the paper tables (LaTeX structure, bold,
average row, markers, latency) on hand-built per-query frames."""

import itertools
import re
import shutil
import subprocess

import numpy as np
import polars as pl
import pytest
from scipy.stats import ttest_rel

from attnrank import config
from attnrank.evaluation import significance as sig, tables
from attnrank.errors import InputError
from attnrank.evaluation.significance import TestConfig
from attnrank.evaluation.tables import MARK_BETTER, MARK_WORSE, TableOrder


def per_query(runs: dict[tuple[str, str, str, str], list[float]], metric: str = "ndcg@10") -> pl.DataFrame:
    rows = []
    for (dataset, retriever, model, method), vals in runs.items():
        for i, v in enumerate(vals):
            rows.append({"qid": f"q{i:03d}", "metric": metric, "value": float(v), "dataset": dataset,
                         "retriever": retriever, "model": model, "method": method})
    return pl.DataFrame(rows)


def grid(n: int = 30) -> pl.DataFrame:
    """Two datasets; bm25/dense first stages; model m_1 re-ranks bm25 with a clearly better, an identical and a
    clearly worse method."""
    rng = np.random.default_rng(7)
    runs = {}
    for d in ("d_one", "d_two"):
        base = rng.uniform(0.2, 0.6, n)
        runs[(d, "bm25", "-", "bm25")] = base
        runs[(d, "dense", "-", "dense")] = np.clip(base + rng.normal(0, 0.05, n), 0, 1)
        runs[(d, "bm25", "m_1", "better")] = base + 0.3 + rng.normal(0, 0.02, n)
        runs[(d, "bm25", "m_1", "same")] = base.copy()
        runs[(d, "bm25", "m_1", "worse")] = base - 0.15 + rng.normal(0, 0.02, n)
    return per_query(runs)


# ---------------------------------------------------------------- LaTeX structure checks


def split_cells(line: str) -> list[str]:
    return re.split(r"(?<!\\)&", line)


def check_latex(tex: str) -> list[list[str]]:
    """Balanced braces, begin/end pairs, every tabular row as wide as the column spec; returns the rows' cells."""
    body = re.sub(r"\\[{}]", "", tex)
    depth = 0
    for c in body:
        depth += {"{": 1, "}": -1}.get(c, 0)
        assert depth >= 0, "unbalanced }"
    assert depth == 0, "unbalanced {"
    assert re.findall(r"\\begin\{(\w+\*?)\}", tex) == re.findall(r"\\end\{(\w+\*?)\}", tex)[::-1]
    spec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", tex).group(1)
    n_cols = len(re.findall(r"[lrc]", spec))
    inner = tex[tex.index(r"\toprule"): tex.index(r"\bottomrule")]
    rows = [ln for ln in inner.splitlines() if ln.rstrip().endswith(r"\\")]
    out = []
    for ln in rows:
        cells = split_cells(ln.rstrip()[:-2])
        width = sum(int(m.group(1)) if (m := re.match(r"\s*\\multicolumn\{(\d+)\}", c)) else 1 for c in cells)
        assert width == n_cols, (ln, width, n_cols)
        out.append([c.strip() for c in cells])
    for m in re.finditer(r"\\cmidrule\(lr\)\{(\d+)-(\d+)\}", tex):
        assert 1 <= int(m.group(1)) <= int(m.group(2)) <= n_cols
    return out


def row_of(cells: list[list[str]], name: str) -> list[str]:
    return next(r for r in cells if r[0] == name)


# ---------------------------------------------------------------- significance


def test_holm_hand_example():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, max(0.04*1, 0.06)=0.06
    assert np.allclose(sig.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    assert sig.holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1
    assert sig.holm([]) == []


def test_randomization_test_exact_and_monte_carlo():
    # d = (1, 2, 3): of the 8 sign patterns only +++ and --- reach |sum| = 6
    assert sig.randomization_test(np.zeros(3), np.array([1.0, 2.0, 3.0]), n_permutations=8) == 0.25
    assert sig.randomization_test(np.ones(5), np.ones(5)) == 1.0
    rng = np.random.default_rng(1)
    a, b = rng.random(16), rng.random(16) + 0.1
    exact = sig.randomization_test(a, b, n_permutations=2**16)
    mc = sig.randomization_test(a, b, n_permutations=20000, seed=3)
    assert 0 < exact < 1 and abs(mc - exact) < 0.015
    assert mc == sig.randomization_test(a, b, n_permutations=20000, seed=3)  # seeded: same p-value
    # batched tests share sign patterns and give each column's own p-value
    diffs = np.stack([b - a, a - b + 0.05, rng.random(16) - 0.5], axis=1)
    batched = sig.randomization_tests(diffs, n_permutations=5000, seed=3)
    assert batched.tolist() == [sig.randomization_test(np.zeros(16), diffs[:, j], 5000, 3) for j in range(3)]


def test_t_test_matches_scipy_and_identical_runs_give_one():
    rng = np.random.default_rng(2)
    a, b = rng.random(20), rng.random(20)
    assert sig.t_test(a, b) == pytest.approx(ttest_rel(b, a).pvalue)
    assert sig.t_test(a, a.copy()) == 1.0


def test_resolve_baseline():
    runs = {("d", "bm25", "-", "bm25"), ("d", "dense", "-", "dense"), ("d", "bm25", "m", "icr"), ("d", "bm25", "m", "qr"),
            ("d", "dense", "m", "qr"), ("d", "bm25", "n", "qr")}
    r = sig.resolve_baseline
    assert r(("d", "dense", "m", "qr"), runs, "first_stage") == ("d", "dense", "-", "dense")
    assert r(("d", "bm25", "-", "bm25"), runs, "first_stage") is None  # a baseline is not tested against itself
    assert r(("d", "dense", "m", "qr"), runs, "bm25") == ("d", "bm25", "-", "bm25")
    assert r(("d", "dense", "-", "dense"), runs, "bm25") == ("d", "bm25", "-", "bm25")
    assert r(("d", "bm25", "m", "qr"), runs, "icr") == ("d", "bm25", "m", "icr")
    assert r(("d", "bm25", "n", "qr"), runs, "icr") is None  # model n has no icr run, and no retriever is called icr


@pytest.mark.parametrize("test", ["fisher", "student"])
def test_clearly_better_marked_identical_not(test):
    cfg = TestConfig(test=test)
    res = tables.results_frame(grid(), "first_stage", cfg)
    flag = {(r["dataset"], r["method"]): r["significant"] for r in res.iter_rows(named=True)}
    for d in ("d_one", "d_two"):
        assert flag[(d, "better")] is True and flag[(d, "worse")] is True
        assert flag[(d, "same")] is False
        assert flag[(d, "bm25")] is None and flag[(d, "dense")] is None  # first stages are the baselines
    same = res.filter(pl.col("method") == "same")
    assert same["p_value"].to_list() == [1.0, 1.0] and same["delta"].to_list() == [0.0, 0.0]
    tex = tables.metric_table(res, "ndcg@10", cfg=cfg)
    cells = check_latex(tex)
    header = next(r for r in cells if r[0] == "Dataset")
    row = dict(zip(header, row_of(cells, r"d\_one")))
    assert row["better"].endswith(rf"\rlap{{{MARK_BETTER}}}") and row["worse"].endswith(rf"\rlap{{{MARK_WORSE}}}")
    assert "$" not in row["same"] and "$" not in row["bm25"]
    assert "Holm" in tex and r"$^{\dagger}$" in tex  # the caption explains the marker


def test_holm_family_is_per_dataset():
    res = tables.results_frame(grid(), "first_stage", TestConfig(test="student"))
    for d in ("d_one", "d_two"):
        part = res.filter((pl.col("dataset") == d) & pl.col("p_value").is_not_null())
        assert part.height == 3
        assert np.allclose(part["p_holm"].to_list(), sig.holm(part["p_value"].to_list()))


def test_baseline_by_name_compares_dense_with_bm25():
    res = tables.results_frame(grid(), "bm25", TestConfig(test="student"))
    dense = res.filter(pl.col("method") == "dense").row(0, named=True)
    assert (dense["baseline_retriever"], dense["baseline_method"]) == ("bm25", "bm25")
    bm25 = res.filter(pl.col("method") == "bm25").row(0, named=True)
    assert dense["delta"] == pytest.approx(dense["value"] - bm25["value"])


# ---------------------------------------------------------------- paper table


def test_bold_best_per_row_and_average_row():
    res = tables.results_frame(grid(), "first_stage", TestConfig(test="student"))
    tex = tables.metric_table(res, "ndcg@10", order=TableOrder(methods=("same", "better", "worse")))
    cells = check_latex(tex)
    header = next(r for r in cells if r[0] == "Dataset")
    assert header == ["Dataset", "bm25", "dense", "same", "better", "worse"]  # configured method order
    means = {(r["dataset"], r["method"]): r["value"] for r in res.iter_rows(named=True)}
    for d in (r"d\_one", r"d\_two", "Average (BEIR)"):
        row = dict(zip(header, row_of(cells, d)))
        assert row["better"].startswith(r"\textbf{")
        assert sum(c.startswith(r"\textbf{") for c in row.values()) == 1
    avg = dict(zip(header, row_of(cells, "Average (BEIR)")))
    for m in ("bm25", "dense", "same", "better", "worse"):
        want = 100 * (means[("d_one", m)] + means[("d_two", m)]) / 2
        assert re.sub(r"\\textbf\{|\}", "", avg[m]) == f"{want:.1f}"
    assert r"\multicolumn{2}{c}{First stage}" in tex and r"\multicolumn{3}{c}{m\_1}" in tex
    assert r"\cmidrule(lr){2-3} \cmidrule(lr){4-6}" in tex


def test_ties_as_printed_are_all_bold_and_missing_cells_dash():
    pq = per_query({("d", "bm25", "-", "bm25"): [0.5, 0.5], ("d", "bm25", "m", "a"): [0.70001, 0.7],
                    ("d", "bm25", "m", "b"): [0.7, 0.7], ("e", "bm25", "-", "bm25"): [0.1, 0.2]})
    res = tables.results_frame(pq, "first_stage", TestConfig())  # 2 queries: exact p >= 0.5, no markers
    cells = check_latex(tables.metric_table(res, "ndcg@10"))
    assert row_of(cells, "d") == ["d", "50.0", r"\textbf{70.0}", r"\textbf{70.0}"]
    assert row_of(cells, "e") == ["e", r"\textbf{15.0}", "--", "--"]
    assert row_of(cells, "Average (BEIR)") == ["Average (BEIR)", r"\textbf{32.5}", "--", "--"]  # a and b lack dataset e


def test_escaping_of_special_characters():
    pq = per_query({("a_b&c%", "bm25", "-", "bm25"): [0.4, 0.5], ("a_b&c%", "bm25", "m#1", "x_y"): [0.6, 0.7]})
    tex = tables.metric_table(tables.results_frame(pq), "ndcg@10")
    cells = check_latex(tex)
    assert row_of(cells, r"a\_b\&c\%")
    assert r"m\#1" in tex and r"x\_y" in tex
    assert tables.latex_escape(r"a\b{c}~^$") == r"a\textbackslash{}b\{c\}\textasciitilde{}\textasciicircum{}\$"


def test_several_first_stages_reranked_get_one_group_each():
    pq = per_query({("d", "bm25", "-", "bm25"): [0.4], ("d", "dense", "-", "dense"): [0.3],
                    ("d", "bm25", "m", "icr"): [0.5], ("d", "dense", "m", "icr"): [0.6]})
    tex = tables.metric_table(tables.results_frame(pq), "ndcg@10", order=TableOrder(retrievers=("dense", "bm25")))
    check_latex(tex)
    assert r"\multicolumn{1}{c}{m (dense)} & \multicolumn{1}{c}{m (bm25)}" in tex
    assert "Dataset & dense & bm25 & icr & icr" in tex


def test_wide_table_uses_table_star_and_shrinks_only_when_too_wide():
    runs = {("d", "bm25", "-", "bm25"): [0.1]} | {("d", "bm25", "m", f"x{i:02d}"): [0.2] for i in range(15)}
    tex = tables.metric_table(tables.results_frame(per_query(runs)), "ndcg@10")
    check_latex(tex)
    assert tex.startswith(r"\begin{table*}")
    assert r"\ifdim\wd0>\linewidth\resizebox{\linewidth}{!}{\usebox0}\else\usebox0\fi" in tex
    narrow = tables.metric_table(tables.results_frame(per_query(dict(list(runs.items())[:3]))), "ndcg@10")
    assert narrow.startswith(r"\begin{table}")


def test_write_tables_outputs_and_determinism(tmp_path):
    pq = grid()
    paths = []
    for d, part in pq.group_by("dataset", maintain_order=True):
        paths.append(tmp_path / f"{d[0]}.parquet")
        part.write_parquet(paths[-1])
    pq2 = pq.with_columns(metric=pl.lit("recall@100"))
    paths.append(tmp_path / "r.parquet")
    pq2.write_parquet(paths[-1])
    outs = []
    for name in ("a", "b"):
        tables.write_tables(paths, tmp_path / name, "ndcg@10", metrics=["recall@100", "ndcg@10"],
                            significance={"test": "fisher", "n_permutations": 2000, "seed": 1})
        outs.append({f: (tmp_path / name / f).read_bytes() for f in ("results.csv", "results.tex", "main.tex", "latency.tex")})
    assert outs[0] == outs[1]
    csv = pl.read_csv(tmp_path / "a" / "results.csv")
    assert {"n_queries", "p_value", "p_holm", "significant", "baseline_method", "delta"} <= set(csv.columns)
    assert csv.height == 2 * 5 * 2 and set(csv["n_queries"]) == {30}
    main = (tmp_path / "a" / "main.tex").read_text()
    assert r"\label{tab:main}" in main and "nDCG@10" in main
    all_tex = (tmp_path / "a" / "results.tex").read_text()
    assert all_tex.count(r"\toprule") == 2 and all_tex.index("nDCG@10") < all_tex.index("Recall@100")
    assert (tmp_path / "a" / "latency.tex").read_text().startswith("%")
    with pytest.raises(InputError, match="main_metric"):
        tables.write_tables(paths, tmp_path / "c", "map@5")


def test_legacy_summary_values(tmp_path):
    rows = []
    for method, vals in (("bm25", [0.2, 0.4]), ("icr", [0.5, 0.7])):
        for q, v in zip(["1", "2"], vals):
            rows.append({"qid": q, "metric": "ndcg@10", "value": v, "dataset": "d_1", "retriever": "bm25",
                         "model": "-" if method == "bm25" else "m", "method": method})
    p = tmp_path / "e.parquet"
    pl.DataFrame(rows).write_parquet(p)
    res = tables.write_tables([p], tmp_path / "tables", "ndcg@10")
    means = dict(zip(res["method"], res["value"]))
    assert abs(means["bm25"] - 0.3) < 1e-12 and abs(means["icr"] - 0.6) < 1e-12
    assert res["n_queries"].to_list() == [2, 2]
    tex = (tmp_path / "tables" / "results.tex").read_text()
    assert r"\textbf{60.0}" in tex and "30.0" in tex and r"d\_1" in tex


# ---------------------------------------------------------------- latency table


LATENCY = pl.DataFrame({
    "model": ["m_1", "m_1", "m_1", "big"],
    "method": ["icr", "rankgpt", "icr-half", "icr"],
    "device": ["H100"] * 4,
    "n_queries": [50] * 4,
    "seconds_per_query": [0.0123, 1.5, 0.0071, 0.2],
    "forward_passes_per_query": [1.05, 12.0, 1.05, 1.05],
    "generated_tokens_per_query": [0.0, 310.5, 0.0, None],
    "peak_mem_bytes": [2 * 2**30, 3 * 2**30, 3 * 2**29, 20 * 2**30],
})


def test_latency_table_on_toy_frame():
    eff = tables.results_frame(per_query({("d", "bm25", "-", "bm25"): [0.3], ("d", "bm25", "m_1", "icr"): [0.5],
                                          ("d", "bm25", "m_1", "rankgpt"): [0.6], ("d", "bm25", "m_1", "icr-half"): [0.4]}))
    tex = tables.latency_table(LATENCY, eff, "ndcg@10", order=TableOrder(models=("m_1", "big"), methods=("icr", "icr-half")))
    cells = check_latex(tex)
    assert cells[0] == ["Model", "Method", "ms/q", "Passes", "Tokens", "Mem (GiB)", "nDCG@10"]
    assert cells[1] == [r"m\_1", "icr", "12.3", "1.1", "0", "2.00", "50.0"]  # passes / tokens never bold
    assert cells[2] == ["", "icr-half", r"\textbf{7.1}", "1.1", "0", r"\textbf{1.50}", "40.0"]
    assert cells[3] == ["", "rankgpt", "1,500.0", "12", "310.5", "3.00", r"\textbf{60.0}"]  # counts as integers
    assert cells[4] == ["big", "icr", "200.0", "1.1", "--", "20.00", "--"]  # one row: nothing to bold
    assert "on H100 (50 sampled queries)" in tex and tex.startswith(r"\begin{table*}")


def test_latency_bad_input_and_file_route(tmp_path):
    with pytest.raises(InputError, match="seconds_per_query"):
        tables.latency_table(LATENCY.drop("seconds_per_query"))
    with pytest.raises(InputError, match="several rows"):
        tables.latency_table(pl.concat([LATENCY, LATENCY]))
    minimal = LATENCY.select("model", "method", "seconds_per_query")
    cells = check_latex(tables.latency_table(minimal))
    assert cells[0] == ["Model", "Method", "ms/q"]
    paths = []
    for i, part in enumerate(LATENCY.partition_by("model")):
        paths.append(tmp_path / f"l{i}.csv")
        part.write_csv(paths[-1])
    ev = tmp_path / "e.parquet"
    grid().write_parquet(ev)
    tables.write_tables([ev], tmp_path / "t", "ndcg@10", latency_paths=paths)
    check_latex((tmp_path / "t" / "latency.tex").read_text())


def test_config_defaults_build_a_test_config():
    cfg = config.validate({"datasets": {"d": {"source": "synthetic"}}, "retrievers": {"bm25": {"kind": "bm25"}}})
    ev = cfg["evaluation"]
    assert ev["baseline"] == "first_stage"
    assert TestConfig.from_config(ev["significance"]) == TestConfig("fisher", 0.05, 10000, 0)
    with pytest.raises(InputError, match="significance.test"):
        TestConfig(test="wilcoxon")


# ---------------------------------------------------------------- compile (only where pdflatex exists)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_tables_compile_with_pdflatex(tmp_path):
    res = tables.results_frame(grid(), "first_stage", TestConfig(test="student"))
    body = "\n".join([tables.metric_table(res, "ndcg@10"), tables.latency_table(LATENCY, res)])
    doc = "\n".join([r"\documentclass{article}", r"\usepackage{booktabs}", r"\usepackage{graphicx}",
                     r"\begin{document}", body, r"\end{document}"])
    (tmp_path / "t.tex").write_text(doc)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "t.pdf").stat().st_size > 0
    assert "Overfull" not in proc.stdout


def test_averages_per_family_with_cqadupstack_as_one_row():
    """CQADupStack's forums collapse into one row (their mean) that counts once in the BEIR average; TREC DL and
    BRIGHT get their own averages; nothing is averaged across families."""
    vals = {"scifact": 0.6, "cqadupstack-android": 0.2, "cqadupstack-gis": 0.4, "cqadupstack-tex": 0.3,
            "trec-dl-2019": 0.7, "trec-dl-2020": 0.5, "bright-biology": 0.1, "bright-pony": 0.3}
    pq = per_query({(d, "bm25", "-", "bm25"): [v, v] for d, v in vals.items()})
    res = tables.results_frame(pq)
    cells = check_latex(tables.metric_table(res, "ndcg@10"))
    names = [r[0] for r in cells]
    assert "CQADupStack" in names and not any(n.startswith("cqadupstack") for n in names)
    assert row_of(cells, "CQADupStack")[1] == r"\textbf{30.0}"  # (20 + 40 + 30) / 3
    assert row_of(cells, "Average (BEIR)")[1] == r"\textbf{45.0}"  # (60 + 30) / 2, not (60 + 20 + 40 + 30) / 4
    assert row_of(cells, "Average (TREC DL)")[1] == r"\textbf{60.0}"
    assert row_of(cells, "Average (BRIGHT)")[1] == r"\textbf{20.0}"
    assert "Average" not in names  # never one mean across families
    assert [tables.dataset_family(d) for d in ("nq", "trec-dl-2019", "bright-aops", "cqadupstack-tex")] == [
        "BEIR", "TREC DL", "BRIGHT", "BEIR"]
    # a family with one row has no average; a forum missing for a run leaves the CQADupStack cell empty
    one = tables.results_frame(per_query({("scifact", "bm25", "-", "bm25"): [0.5, 0.5],
                                          ("trec-dl-2019", "bm25", "-", "bm25"): [0.4, 0.4]}))
    assert not any(r[0].startswith("Average") for r in check_latex(tables.metric_table(one, "ndcg@10")))


def test_resolve_baseline_follows_the_prompt_order():
    """With several prompt orders runs are labelled method@order; a baseline method without an order is the
    baseline in the run's own order, method@order names one run."""
    runs = {("d", "bm25", "-", "bm25"), ("d", "bm25", "m", "icr@retrieval"), ("d", "bm25", "m", "icr@reversed"),
            ("d", "bm25", "m", "qrhead@retrieval"), ("d", "bm25", "m", "qrhead@reversed"), ("d", "bm25", "m", "yesno")}
    r = sig.resolve_baseline
    assert r(("d", "bm25", "m", "qrhead@reversed"), runs, "icr") == ("d", "bm25", "m", "icr@reversed")
    assert r(("d", "bm25", "m", "qrhead@retrieval"), runs, "icr") == ("d", "bm25", "m", "icr@retrieval")
    assert r(("d", "bm25", "m", "qrhead@reversed"), runs, "icr@retrieval") == ("d", "bm25", "m", "icr@retrieval")
    assert r(("d", "bm25", "m", "icr@reversed"), runs, "icr") is None
    assert r(("d", "bm25", "m", "yesno"), runs, "icr") is None  # a text run has no order: no icr run without one
