"""Protocol presets: what each paper fixes, as a named preset a method selects with ``protocol: <name>``.

A preset has two parts:

- ``method``: settings of the method itself (prompt order, number of heads, CoRe temperature, calibration, pruning).
  ``expand`` merges them under the method's own config entry (the entry wins), so ``{kind: core, protocol: core}``
  re-ranks with CoRe's 8 heads in retrieval order.
- ``grid``: settings of the candidate list, prompt and detection set (first stage, depth, truncation, detection
  queries and negatives). These are shared by every method of a run and cannot differ per method; ``deviations``
  lists where the configured grid differs from the preset, and the workflow records that list beside each run.

Sources (read from the papers and their code; docs/protocols.md puts them beside our settings):
ICR — OSU-NLP-Group/In-Context-Reranking (``--reverse_doc_order``, 300-word documents, BM25 top-100);
QRHead — princeton-pli/QRHead (src/qrretriever/attn_retriever.py; README: BM25 top-200, 128 NQ detection samples);
CoRe — linhhtran/CoRe-Reranking (experiments/src/core_detector.py, head_data/<model>/core_temp<t>_*.json);
Selective-ICR — ielab/Selective-ICR (``--aggregation_start_layer`` / ``--max_layer``, BM25 top-100).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import InputError


@dataclass(frozen=True)
class Protocol:
    name: str
    paper: str
    source: str
    method: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    prompt: dict = field(default_factory=dict)  # family -> PromptConfig keys ("*": every family), see prompt_config
    late: str = "per-dataset"  # late instruction: "per-dataset" (QA on QA_DATASETS, else IE) | "IE"


# --- the prompts, as each reference writes them by hand (no chat template) ----------------------------------
# Late instructions (ICR src/in_context_reranker.py:79-86, Selective-ICR icr/src/in_context_reranker.py:88-94, QRHead
# src/qrretriever/attn_retriever.py:125, CoRe experiments/src/reranker_calib.py:56).
LATE_QA = "Please answer the following question based on the information in the paragraphs above."
LATE_IE = "Please find information that are relevant to the following query in the paragraphs above."
# BEIR datasets on which ICR and Selective-ICR use the QA instruction (ICR experiments.py:73-76, Selective-ICR
# icr/experiments.py:131-134), by their BEIR names; every other dataset gets the IE instruction.
QA_DATASETS = ("trec-covid", "fiqa", "webis-touche2020", "dbpedia-entity", "nq")
INSTRUCTION = " Here are some paragraphs:"  # every reference, with its leading space

_LLAMA = {"role_prefix": "<|start_header_id|>user<|end_header_id|>",
          "role_suffix": "<|eot_id|><|start_header_id|>assistant<|end_header_id|>"}
_MISTRAL = {"role_prefix": "[INST]", "role_suffix": "[/INST]"}
_QWEN_SELECTIVE = {"role_prefix": "<|im_start|>user\n", "role_suffix": "<|im_end|>\n<|im_start|>assistant\n"}
_ICR_BLOCKS = {"instruction": INSTRUCTION, "marker": "[{i}]", "doc_span": "block", "query_span": "suffix"}

# ICR: in_context_reranker.py:108-116 (separator), :136-143 (wrapper; other families raise), :486 (`[i] doc`
# block = the document span), :505-527 (query span: the late instruction to the end of the prompt).
_ICR = {
    "llama": {**_ICR_BLOCKS, **_LLAMA, "separator": " \n\n"},
    "mistral": {**_ICR_BLOCKS, **_MISTRAL, "separator": "\n\n"},
}
# Selective-ICR's ICR fork: icr/src/in_context_reranker.py:141-149 (separator ' \n\n' for Llama and Qwen),
# :179-187 (wrapper, Qwen: <|im_start|>user\n ... <|im_end|>\n<|im_start|>assistant\n, no think block),
# :784-817 (for a model that is neither Llama nor Mistral the query span is the query text ' {q}' only).
_SELECTIVE = {**_ICR, "qwen": {**_ICR_BLOCKS, **_QWEN_SELECTIVE, "separator": " \n\n", "query_span": "query"}}
# QRHead: attn_retriever.py:107-122 (wrapper and separator; Llama-3.x and Qwen2.5 only), :134 (`[i] doc` block),
# :177 (query span: late instruction, 'Query:', query and the wrapper's suffix).
_QRHEAD = {
    "llama": {**_ICR_BLOCKS, **_LLAMA, "separator": " \n\n"},
    "qwen": {**_ICR_BLOCKS, "role_prefix": "<|im_start|>user", "role_suffix": "<|im_end|>\n<|im_start|>assistant",
             "separator": "\n\n"},
    "mistral": _ICR["mistral"],  # not in QRHead's code (attn_retriever.py:114 raises): ICR's, which it builds on
}
# CoRe: reranker_calib.py:41-56 and core_detector.py:38-53 (wrapper; separator '\n\n' for every model),
# :240-262 / :127-152 ('[document i]' then ' ' + body: the document span starts after the marker; the query span
# runs from the late instruction to index len(tokens(... + query)) - off_set, inclusive (:110): for Llama
# (off_set 0) that is the first token of the suffix, for Mistral (off_set 1) the query's last token).
_CORE_BLOCKS = {"instruction": INSTRUCTION, "marker": "[document {i}]", "doc_span": "body", "query_span": "late",
                "separator": "\n\n"}
_CORE = {
    "llama": {**_CORE_BLOCKS, **_LLAMA, "query_tail_tokens": 1},
    "mistral": {**_CORE_BLOCKS, **_MISTRAL, "query_tail_tokens": 0},
    "qwen": {**_CORE_BLOCKS, **_QWEN_SELECTIVE, "query_tail_tokens": 1},  # not in CoRe's code: off_set 0 as Llama
}

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "icr", "Chen et al., ICLR 2025 (In-Context Re-ranking)", "OSU-NLP-Group/In-Context-Reranking",
            method={"order": "reversed", "calibration": "masked"},
            grid={"first_stage": "bm25", "depth": 100, "max_doc_words": 300, "max_doc_tokens": None,
                  "drop_self_matches": True, "doc_title": True},
            prompt={**_ICR, "qwen": _SELECTIVE["qwen"]},  # ICR has no Qwen prompt: Selective-ICR's fork of ICR
        ),
        Protocol(
            "qrhead", "Zhang et al., EMNLP 2025 (QRHead)", "princeton-pli/QRHead",
            method={"order": "reversed", "k_heads": 16, "calibration": "masked"},
            grid={"first_stage": "bm25", "depth": 200, "max_doc_words": 400, "max_doc_tokens": None,
                  "doc_title": True, "detection_queries": 128, "max_queries": 512, "detection_layout": "shuffle"},
            prompt=_QRHEAD, late="IE",
        ),
        Protocol(
            "core", "Tran et al., arXiv 2510.02219 (CoRe heads)", "linhhtran/CoRe-Reranking",
            method={"order": "retrieval", "k_heads": 8, "calibration": "masked"},
            grid={"first_stage": "dense:ibm-granite/granite-embedding-30m-english", "depth": 40, "max_doc_words": 300,
                  "max_doc_tokens": None, "doc_title": False, "detection_queries": 1000, "detection_negatives": 49,
                  "detection_positions": 5, "detection_negatives_mode": "sample", "detection_layout": "spread",
                  "detection_first_stage": "dense:ibm-granite/granite-embedding-30m-english (top-100)"},
            prompt=_CORE, late="IE",
        ),
        Protocol(
            "selective-icr", "Chen et al., arXiv 2602.22591 (Selective-ICR)", "ielab/Selective-ICR",
            method={"order": "reversed", "calibration": "masked"},
            grid={"first_stage": "bm25", "depth": 100, "max_doc_words": 300, "max_doc_tokens": None, "doc_title": True},
            prompt=_SELECTIVE,
        ),
        Protocol(
            "shared", "this benchmark's cross-method protocol", "docs/protocols.md",
            method={"order": "reversed", "calibration": "masked"},
            grid={"first_stage": "bm25", "depth": 100, "max_doc_words": 300, "max_doc_tokens": None,
                  "drop_self_matches": True, "doc_title": True},
            prompt={**_ICR, "qwen": _SELECTIVE["qwen"]},  # ICR's prompt (Selective-ICR's fork on Qwen)
        ),
    )
}

# Model versions the references ran (ICR run_icr_beir.sh, CoRe experiments/reranking.py:10-13, Selective-ICR
# icr/run_batch_icr.sh:23-27); a configured model of the same family with another version is a deviation.
MODEL_VERSIONS = {
    "llama": ("meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B-Instruct"),
    "mistral": ("mistralai/Mistral-7B-Instruct-v0.2",),
}


def model_family(model_id: str | None) -> str | None:
    """``llama`` | ``mistral`` | ``qwen`` from a model id or path (as the references test the name), else None."""
    name = (model_id or "").lower()
    for fam in ("llama", "mistral", "qwen"):
        if fam in name:
            return fam
    return None


def reference_dataset(key: str, spec: dict | None = None) -> str:
    """The BEIR name the references test (``beir/webis-touche2020/v2`` -> ``webis-touche2020``), else the key."""
    did = (spec or {}).get("id") or ""
    parts = did.split("/")
    return parts[1] if parts[0] == "beir" and len(parts) > 1 else key


def late_instruction(protocol: str, dataset: str) -> str:
    """The late instruction of ``protocol`` on a dataset (its BEIR name, ``reference_dataset``)."""
    p = _get(protocol)
    return LATE_QA if p.late == "per-dataset" and dataset in QA_DATASETS else LATE_IE


def prompt_config(protocol: str, model_id: str | None, dataset: str) -> dict:
    """The PromptConfig keys ``protocol`` fixes for a model (by family) on a dataset (its BEIR name); ``{}`` for
    a family the preset does not cover (the run then keeps the chat template; ``deviations`` says so)."""
    p = _get(protocol)
    fam = model_family(model_id)
    if fam not in p.prompt:
        return {}
    return {**p.prompt[fam], "late_instruction": late_instruction(protocol, dataset)}


def _get(protocol: str) -> Protocol:
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r} (known: {sorted(PROTOCOLS)})")
    return PROTOCOLS[protocol]


def expand(methods: dict[str, dict]) -> dict[str, dict]:
    """Config ``methods`` with each entry's ``protocol`` preset merged under it (the entry's own keys win)."""
    out = {}
    for name, spec in methods.items():
        p = spec.get("protocol")
        if p is None:
            out[name] = dict(spec)
            continue
        if p not in PROTOCOLS:
            raise InputError(f"config key 'methods.{name}.protocol': unknown protocol {p!r} (known: {sorted(PROTOCOLS)})")
        out[name] = {**_method_keys(PROTOCOLS[p], spec.get("kind")), **spec}
    return out


def _first_stage(cfg: dict, retriever: str):
    r = cfg.get("retrievers", {}).get(retriever, {})
    return r.get("kind") if r.get("kind") == "bm25" else f"dense:{r.get('model')}"


NOT_COMPARABLE = object()  # a reader's answer for a key the configured grid does not record


# The grid keys a preset may fix -> how to read the configured value from the rerank job's grid (``deviations``).
# A key a preset fixes that has no reader here, or whose reader answers NOT_COMPARABLE, is reported "not
# comparable", never silently equal. Part of the issue-22 layout keys (detection layout, candidate lists) extend it.
GRID_READERS = {
    "first_stage": lambda cfg, r: _first_stage(cfg, r),
    "depth": lambda cfg, r: cfg.get("candidates", {}).get("depth"),
    "max_doc_words": lambda cfg, r: cfg.get("candidates", {}).get("max_doc_words"),
    "max_doc_tokens": lambda cfg, r: cfg.get("prompt", {}).get("max_doc_tokens"),
    "drop_self_matches": lambda cfg, r: cfg.get("candidates", {}).get("drop_self_matches", True),
    "doc_title": lambda cfg, r: True,  # candidates.text is always title + body (data.sources.doc_text)
    "detection_queries": lambda cfg, r: cfg.get("detection", {}).get("n_queries", NOT_COMPARABLE),
    "detection_negatives": lambda cfg, r: cfg.get("detection", {}).get("n_negatives", NOT_COMPARABLE),
    "detection_positions": lambda cfg, r: cfg.get("detection", {}).get("positions", NOT_COMPARABLE),
    "detection_negatives_mode": lambda cfg, r: cfg.get("detection", {}).get("negatives", "hardest"),
    "detection_first_stage": lambda cfg, r: (
        f"{_first_stage(cfg, cfg['detection']['retriever'])} (top-{cfg['retrievers'][cfg['detection']['retriever']].get('depth')})"
        if cfg.get("detection", {}).get("retriever") in cfg.get("retrievers", {}) else NOT_COMPARABLE),
    "max_queries": lambda cfg, r: cfg.get("dataset", {}).get("max_queries"),
    # 'auto' (the default) detects each head kind on its own paper's layout (selection.detection): QRHead's
    # shuffle for qrhead / qr-mass, CoRe's spread for core; deviations() takes it as equal to the preset's
    "detection_layout": lambda cfg, r: cfg.get("detection", {}).get("layout", "auto"),
}

# Prompt keys compared with the prompt the attention pass used (its score-cache manifest)
PROMPT_KEYS = ("role_prefix", "role_suffix", "instruction", "separator", "marker", "doc_span", "query_span",
               "query_tail_tokens", "late_instruction")


def deviations(protocol: str, cfg: dict, retriever: str, prompt: dict | None = None, model_id: str | None = None,
               dataset: str | None = None, method: dict | None = None) -> list[str]:
    """Where a run differs from what ``protocol`` fixes: every grid key of the preset (``GRID_READERS``), the prompt
    the attention pass used (``prompt``: its PromptConfig dict) against ``prompt_config`` for the model and dataset
    (BEIR name), the model version, and the method settings (``method``: the expanded method entry, whose own keys
    win over the preset). A key that cannot be compared is listed as ``not comparable: <key> ...``."""
    p = _get(protocol)
    out = []
    for key, want in p.grid.items():
        reader = GRID_READERS.get(key)
        have = reader(cfg, retriever) if reader else NOT_COMPARABLE
        if have is NOT_COMPARABLE:
            out.append(f"not comparable: {key} (paper {want!r}; the grid does not record it)")
        elif key == "detection_layout" and have == "auto":
            continue
        elif have != want:
            out.append(f"{key}: paper {want!r}, here {have!r}")
    fam = model_family(model_id)
    if model_id is None:
        out.append("not comparable: model (no hub model id: its version and prompt family are unknown)")
    elif fam not in p.prompt:
        out.append(f"not comparable: prompt ({p.source} has no prompt for the model family of {model_id!r})")
    if fam in MODEL_VERSIONS and model_id is not None and model_id not in MODEL_VERSIONS[fam]:
        out.append(f"model: paper {MODEL_VERSIONS[fam][0]!r}, here {model_id!r}")
    if prompt is None:
        out.append("not comparable: prompt (the attention pass's prompt is not known)")
    elif fam not in p.prompt:
        pass  # said above
    elif dataset is not None:
        from .attention.prompts import PromptConfig

        used = PromptConfig.from_dict(prompt).to_dict()
        for key, want in prompt_config(protocol, model_id, dataset).items():
            if used.get(key) != want:
                out.append(f"prompt.{key}: paper {want!r}, here {used.get(key)!r}")
    else:
        out.append("not comparable: prompt (no dataset given for the late instruction)")
    for key, want in _method_keys(p, (method or {}).get("kind")).items():
        if method is not None and method.get(key) != want:
            out.append(f"{key}: paper {want!r}, here {method.get(key)!r}")
    return out


def _method_keys(p: Protocol, kind: str | None) -> dict:
    """The method settings ``p`` fixes that apply to a method of ``kind`` (as ``expand`` fills them)."""
    keep = dict(p.method)
    if kind not in ("qrhead", "qr-mass", "core"):
        keep.pop("k_heads", None)
    if kind not in ("icr", "qrhead", "qr-mass", "core", "selective"):
        keep.pop("calibration", None)  # HeadRank and the text re-rankers have no calibration setting
    return keep
