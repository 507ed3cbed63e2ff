"""Method parameters are declared once per kind; the config validator and the methods check them with it."""

import pytest

from attnrank import config, params
from attnrank.attention import methods
from attnrank.text import kinds
from attnrank.errors import InputError

BASE = {
    "datasets": {"d": {"source": "synthetic"}, "t": {"source": "synthetic", "split": "train", "evaluate": False}},
    "retrievers": {"bm25": {"kind": "bm25"}},
    "models": {"h": {"source": "hf", "id": "x/y"}},
    "detection": {"dataset": "t", "retriever": "bm25"},
    "tuning": {"dataset": "t", "retriever": "bm25"},
}
SPECS = {**{k: methods.PARAMS[k] for k in methods.METHODS}, **kinds.TEXT_KINDS}
TYPED = [(kind, key, p) for kind, spec in SPECS.items() for key, p in spec.params.items() if p.type != "any"]


def _cfg(kind, **p):
    base = {"k_heads": 2} if kind in ("qr-mass", "qrhead", "core") else {}
    return {**BASE, "methods": {"my-method": {"kind": kind, **base, **p}}}


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_declared_defaults_pass_their_own_checks(kind):
    for key, p in SPECS[kind].params.items():
        assert p.default is params.REQUIRED or p.ok(p.default), (kind, key)
    config.validate(_cfg(kind))


@pytest.mark.parametrize("kind, key, p", TYPED, ids=[f"{k}.{n}" for k, n, _ in TYPED])
def test_every_declared_param_refuses_a_wrong_type_naming_the_method(kind, key, p):
    with pytest.raises(InputError) as e:
        config.validate(_cfg(kind, **{key: "seven"}))
    assert str(e.value) == f"config key 'methods.my-method.{key}': expected {p.expected()}, got 'seven'"


@pytest.mark.parametrize("kind, key, p", [t for t in TYPED if t[2].lo is not None],
                         ids=[f"{k}.{n}" for k, n, p in TYPED if p.lo is not None])
def test_every_lower_bound_is_enforced(kind, key, p):
    low = p.lo if p.lo_open else (p.lo - 1 if p.type == "int" else p.lo - 0.5)
    with pytest.raises(InputError, match=rf"^config key 'methods\.my-method\.{key}': expected "):
        config.validate(_cfg(kind, **{key: low}))


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_unknown_param_names_the_method_not_the_kind(kind):
    with pytest.raises(InputError) as e:
        config.validate(_cfg(kind, windw=20))
    allowed = ", ".join(sorted(SPECS[kind].params))
    assert str(e.value) == f"config key 'methods.my-method.windw': unknown parameter for kind '{kind}' (allowed: {allowed})"


def test_text_runtime_checks_before_loading_the_model_and_names_the_method():
    import polars as pl

    from attnrank.text import rerank

    cands = pl.DataFrame({"qid": ["q"], "query": ["x"], "docid": ["d"], "rank": [1], "text": ["y"]})
    with pytest.raises(InputError) as e:
        rerank.rerank_candidates("setwise", (None, None), cands, {"c": 0}, name="sw3")
    assert str(e.value) == "methods.sw3.c: expected an integer >= 1, got 0"


def test_attention_runtime_uses_the_same_declaration():
    with pytest.raises(InputError) as e:
        methods.validate("selective", {"width": 0}, "sel")
    assert str(e.value) == "methods.sel.width: expected an integer >= 1, got 0"
    assert methods.validate("selective", {}, "sel")["width"] == methods.PARAMS["selective"].params["width"].default


def test_text_defaults_come_from_the_declaration():
    p = kinds.resolve_text("rankgpt", {"max_doc_tokens": 50}, "rg")
    assert p["max_doc_tokens"] == 50 and p["window"] == 20 and p["stride"] == 10 and p["_name"] == "rg"
