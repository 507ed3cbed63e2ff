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
        config.load(str(p))


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        config.load(str(tmp_path / "nope.yaml"))
