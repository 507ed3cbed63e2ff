"""The workflow plan (attnrank.plan), the results/ layout (attnrank.paths) and the renamed config keys: testable
without Snakemake."""

import re
from pathlib import Path

import pytest

from attnrank import config, paths, plan
from attnrank.attention import prompts
from attnrank.errors import InputError

REPO = Path(__file__).resolve().parents[1]
BASE = {"datasets": {"d": {"source": "synthetic"}}, "retrievers": {"bm25": {"kind": "bm25"}}}
TINY = {"tiny": {"source": "tiny"}}


@pytest.mark.parametrize("old, new", sorted(config.RENAMED_KEYS.items()))
def test_renamed_config_keys_are_one_line_errors_naming_the_new_key(old, new):
    section, key = old.split(".")
    with pytest.raises(InputError) as e:
        config.validate({**BASE, section: {key: 100}})
    assert str(e.value) == f"config key '{old}' was renamed: use '{new}'"
    # the new key is accepted where the old one was
    config.validate({**BASE, section: {new.split(".")[1]: 100}})


@pytest.mark.parametrize("kind", ["rankgpt", "yesno", "qlm", "setwise", "pointwise"])
@pytest.mark.parametrize("old, new", sorted(prompts.RENAMED.items()))
def test_renamed_method_truncation_keys_are_rejected(kind, old, new):
    cfg = {**BASE, "models": TINY, "methods": {"m": {"kind": kind, old: 50}}}
    with pytest.raises(InputError) as e:
        config.validate(cfg)
    assert str(e.value) == f"config key 'methods.m.{old}': was renamed: use '{new}'"
    config.validate({**BASE, "models": TINY, "methods": {"m": {"kind": kind, new: 50}}})


@pytest.mark.parametrize("old, new", sorted(prompts.RENAMED.items()))
def test_renamed_prompt_keys_are_rejected_by_the_prompt_config(old, new):
    with pytest.raises(InputError, match=f"^prompt.{old}: was renamed: use '{new}'$"):
        prompts.PromptConfig.from_dict({old: 5})


def test_no_old_spelling_left_in_configs_code_and_docs():
    """One spelling per concept: the old names appear only where they are rejected (and in this test)."""
    allowed = {"src/attnrank/config.py", "src/attnrank/attention/prompts.py", "tests/test_plan.py", "tests/test_generation.py"}
    old = re.compile(r"\b(doc_max_tokens|doc_max_words|engine_depth|required_depth|head_ranking|headrank_train)\b")
    bad = []
    for p in [*REPO.glob("*.yaml"), *REPO.glob("config/*.yaml"), *REPO.glob("src/**/*.py"), *REPO.glob("src/**/*.yaml"),
              *REPO.glob("workflow/**/*"), *REPO.glob("tests/*.py"), *REPO.glob("docs/*.md"), REPO / "README.md"]:
        rel = str(p.relative_to(REPO))
        if p.is_file() and rel not in allowed and old.search(p.read_text(errors="ignore")):
            bad.append(rel)
    assert not bad, f"old spellings in {bad}"


def test_rules_take_every_results_path_from_attnrank_paths():
    """No rule file spells a results/ path or derives a sidecar by string replacement."""
    for f in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = f.read_text()
        assert not re.search(r'f"\{R\}/|"results/|\.replace\("\.(trec|parquet)"', text), f"{f.name} builds a path by hand"
        assert "import" not in text or f.name == "common.smk", f"{f.name} imports"
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    imports = [i for i, line in enumerate(common.splitlines()) if re.match(r"(import|from) ", line)]
    assert imports == list(range(imports[0], imports[0] + len(imports))), "common.smk imports mid-file"


def test_sidecar_sits_beside_its_output():
    run = paths.rerank_run("m", "d", "bm25", "icr", "reversed")
    assert run == "results/rerank/m/d/bm25/reversed/icr.trec"
    assert paths.sidecar(run) == "results/rerank/m/d/bm25/reversed/icr.json"
    assert paths.sidecar(paths.candidates("d", "r")) == "results/candidates/d/r.json"
    assert paths.sidecar(paths.heads_table("m", "retrieval", 0.1, "spread")) == "results/heads/m/retrieval/spread/t0.1/heads.json"
    assert (paths.heads_table("{model}", "{order}", "{temperature}", "{layout}")
            == "results/heads/{model}/{order}/{layout}/t{temperature}/heads.parquet")
    with pytest.raises(ValueError):
        paths.sidecar("results/models/m")


def test_demo_config_yaml_and_paper_resolve_to_three_results_folders():
    """Each study writes into its own folder (results_dir unset: results/<config file stem>)."""
    dirs = {name: config.load(str(REPO / name), check_files=False)["results_dir"]
            for name in ("config/demo.yaml", "config.yaml", "config/paper.yaml")}
    assert dirs == {"config/demo.yaml": "results/demo", "config.yaml": "results/config", "config/paper.yaml": "results/paper"}
    # no --configfile: the Snakefile reads config.yaml, the same folder as `--configfile config.yaml`
    assert config.validate(BASE)["results_dir"] == config.default_results_dir(["config.yaml"]) == "results/config"
    # several config files (a config and its overlay) name a folder of their own
    assert config.default_results_dir(["/a/grid-cisi.yaml", "overlays/grid-cisi-100.yaml"]) == "results/grid-cisi+grid-cisi-100"


@pytest.mark.parametrize("value, expected", [("out/study-1/", "out/study-1"), ("./runs/x", "runs/x"), ("/scratch/me/s", "/scratch/me/s")])
def test_explicit_results_dir_is_normalised(value, expected):
    assert config.validate({**BASE, "results_dir": value}, configfiles=["config/demo.yaml"])["results_dir"] == expected


@pytest.mark.parametrize("value", ["", ".", "..", "../elsewhere", "results/{model}"])
def test_bad_results_dir_is_a_one_line_error(value):
    with pytest.raises(InputError, match="^config key 'results_dir': "):
        config.validate({**BASE, "results_dir": value})


def test_plan_or_exit_puts_every_path_under_the_results_folder(monkeypatch):
    monkeypatch.setattr(paths, "ROOT", paths.ROOT)  # restored after the test
    cfg = {**BASE, "models": TINY, "methods": {"icr": {"kind": "icr"}}}
    p = plan.plan_or_exit(cfg, scripts=REPO / "workflow" / "scripts", configfiles=[Path("/x/config/my-study.yaml")])
    outs = p.all_outputs() + list(p.dataset_runs("d")) + [paths.log("tables", "tables"), paths.benchmark("tables", "tables")]
    assert all(o.startswith("results/my-study/") for o in outs), [o for o in outs if not o.startswith("results/my-study/")]
    assert paths.study_config() in outs  # the study's own config (embedded in the report)


def test_plan_of_the_demo_config():
    cfg = config.validate(config.read_yaml(REPO / "config" / "demo.yaml"), check_files=False)
    p = plan.Plan(cfg, REPO / "workflow" / "scripts", validated=True)
    assert set(p.attention_methods) | set(p.text_methods) == set(cfg["methods"])
    runs = p.dataset_runs(p.eval_datasets()[0])
    assert all(path.endswith(".trec") for path in runs)
    assert p.run_sidecars() == {paths.sidecar(t): ids for t, ids in runs.items() if ids["model"] != "-"}
    for m in p.attention_methods:
        spec = cfg["methods"][m]
        files = p.artifact_files("tiny", m) if "tiny" in cfg["models"] else {}
        assert set(files) <= {"heads", "profile", "weights"}
        assert p.method_orders(m) and spec["kind"]
    assert p.script_code("retrieve") == p.script_code("retrieve") and len(p.script_code("retrieve")) >= 16


def test_ranx_is_compiled_only_for_a_metric_numpy_does_not_compute():
    from attnrank import config, paths
    from attnrank.plan import Plan

    base = {"datasets": {"d": {"source": "synthetic"}}, "retrievers": {"bm25": {"kind": "bm25"}}}
    fast = Plan(config.validate(base))
    assert fast.ranx_ready("metrics") == [] and fast.ranx_ready("main") == []
    slow = Plan(config.validate({**base, "evaluation": {"metrics": ["ndcg@10", "bpref"]}}))
    assert slow.ranx_ready("metrics") == [paths.ranx_ready(slow.cfg["cache_dir"])]
    assert slow.ranx_ready("main") == []  # the main metric (ndcg@10) is NumPy's


def test_candidate_lists_per_protocol_each_with_its_first_stage_depth_and_cut():
    """candidates.lists: a method runs on the lists its `candidates` names (default: the shared list of each
    re-ranked first stage); one attention pass per model x candidate list x order; a list has its own first-stage
    row (the baseline of the runs on it); a protocol preset is compared with the list it re-ranks."""
    cfg = {**BASE, "retrievers": {"bm25": {"kind": "bm25", "depth": 200}},
           "candidates": {"depth": 100, "lists": {"bm25-200": {"retriever": "bm25", "depth": 200, "max_doc_words": 400}}},
           "models": TINY, "methods": {"icr": {"kind": "icr"}, "qrhead": {"kind": "qrhead", "protocol": "qrhead", "candidates": "bm25-200"},
                                       "both": {"kind": "icr", "candidates": ["bm25", "bm25-200"]}},
           "detection": {"dataset": "t", "retriever": "bm25"}}
    cfg["datasets"] = {**cfg["datasets"], "t": {"source": "synthetic", "evaluate": False}}
    p = plan.Plan(cfg)
    assert p.candidate_lists() == {"bm25": {"retriever": "bm25", "depth": 100, "max_doc_words": 300},
                                   "bm25-200": {"retriever": "bm25", "depth": 200, "max_doc_words": 400}}
    assert p.list_retriever("bm25-200") == "bm25"
    assert (p.method_lists("icr"), p.method_lists("qrhead"), p.method_lists("both")) == (["bm25"], ["bm25-200"], ["bm25", "bm25-200"])
    runs = p.dataset_runs("d")
    assert runs[paths.candidates_run("d", "bm25-200")] == {"dataset": "d", "retriever": "bm25-200", "model": "-", "method": "bm25-200"}
    assert paths.rerank_run("tiny", "d", "bm25-200", "qrhead", "reversed") in runs
    assert paths.rerank_run("tiny", "d", "bm25", "qrhead", "reversed") not in runs
    o = p.method_orders("both")[0]
    assert {paths.rerank_run("tiny", "d", c, "both", o) for c in ("bm25", "bm25-200")} <= set(runs)
    assert paths.candidates("d", "bm25-200") in p.all_outputs()
    grid = p.protocol_grid("qrhead", clist="bm25-200")
    assert (grid["candidates"]["depth"], grid["candidates"]["max_doc_words"], grid["retrievers"]["bm25-200"]["kind"]) == (200, 400, "bm25")
    from attnrank import protocols
    devs = protocols.deviations("qrhead", grid, "bm25-200")
    assert not [d for d in devs if d.split(":")[0] in ("first_stage", "depth", "max_doc_words")], devs
    from attnrank.evaluation.tables import lists_text
    assert lists_text(p.candidates_caption()) == "Further candidate lists: bm25-200 = top-200 of bm25, 400 words. "


def test_candidate_list_config_errors_name_the_key():
    base = {**BASE, "models": TINY, "methods": {"icr": {"kind": "icr"}}}
    with pytest.raises(InputError, match=r"candidates.lists.x.retriever"):
        config.validate({**base, "candidates": {"lists": {"x": {"retriever": "dense", "depth": 10}}}})
    with pytest.raises(InputError, match=r"candidates.lists.bm25'"):
        config.validate({**base, "candidates": {"lists": {"bm25": {"retriever": "bm25", "depth": 10}}}})
    with pytest.raises(InputError, match=r"methods.icr.candidates"):
        config.validate({**base, "methods": {"icr": {"kind": "icr", "candidates": ["nope"]}}})
    with pytest.raises(InputError, match=r"candidates.lists.x.depth"):
        config.validate({**base, "retrievers": {"bm25": {"kind": "bm25", "depth": 50}},
                         "candidates": {"lists": {"x": {"retriever": "bm25", "depth": 60}}}})
