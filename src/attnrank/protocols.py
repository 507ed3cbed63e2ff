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


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "icr", "Chen et al., ICLR 2025 (In-Context Re-ranking)", "OSU-NLP-Group/In-Context-Reranking",
            method={"order": "reversed", "calibration": "masked"},
            grid={"first_stage": "bm25", "depth": 100, "max_doc_words": 300, "max_doc_tokens": None,
                  "drop_self_matches": True},
        ),
        Protocol(
            "qrhead", "Zhang et al., EMNLP 2025 (QRHead)", "princeton-pli/QRHead",
            method={"order": "reversed", "k_heads": 16, "calibration": "masked"},
            grid={"first_stage": "bm25", "depth": 200, "max_doc_words": 400, "max_doc_tokens": None,
                  "detection_queries": 128, "max_queries": 512, "detection_layout": "shuffle"},
        ),
        Protocol(
            "core", "Tran et al., arXiv 2510.02219 (CoRe heads)", "linhhtran/CoRe-Reranking",
            method={"order": "retrieval", "k_heads": 8, "calibration": "masked"},
            grid={"first_stage": "dense:ibm-granite/granite-embedding-30m-english", "depth": 40, "max_doc_words": 300,
                  "max_doc_tokens": None, "detection_queries": 1000, "detection_negatives": 49, "detection_positions": 5,
                  "detection_layout": "spread", "detection_first_stage": "dense:ibm-granite/granite-embedding-30m-english (top-100)"},
        ),
        Protocol(
            "selective-icr", "Chen et al., arXiv 2602.22591 (Selective-ICR)", "ielab/Selective-ICR",
            method={"order": "reversed", "calibration": "masked"},
            grid={"first_stage": "bm25", "depth": 100, "max_doc_words": 300, "max_doc_tokens": None},
        ),
        Protocol(
            "shared", "this benchmark's cross-method protocol", "docs/protocols.md",
            method={"order": "reversed", "calibration": "masked"},
            grid={"first_stage": "bm25", "depth": 100, "max_doc_words": 300, "max_doc_tokens": None,
                  "drop_self_matches": True},
        ),
    )
}


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
        kind = spec.get("kind")
        keep = dict(PROTOCOLS[p].method)
        if kind not in ("qrhead", "qr-mass", "core"):
            keep.pop("k_heads", None)
        if kind not in ("icr", "qrhead", "qr-mass", "core", "selective"):
            keep.pop("calibration", None)  # HeadRank and the text re-rankers have no calibration setting
        out[name] = {**keep, **spec}
    return out


def deviations(protocol: str, cfg: dict, retriever: str) -> list[str]:
    """Where the configured grid (candidates, prompt, detection) differs from the preset's grid settings."""
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r} (known: {sorted(PROTOCOLS)})")
    g = PROTOCOLS[protocol].grid
    r = cfg["retrievers"].get(retriever, {})
    have = {
        "first_stage": r.get("kind") if r.get("kind") == "bm25" else f"dense:{r.get('model')}",
        "depth": cfg["candidates"]["depth"],
        "max_doc_words": cfg["candidates"].get("max_doc_words"),
        "max_doc_tokens": cfg.get("prompt", {}).get("max_doc_tokens"),
        "drop_self_matches": cfg["candidates"].get("drop_self_matches", True),
    }
    det = cfg.get("detection", {})
    have.update(detection_queries=det.get("n_queries"), detection_negatives=det.get("n_negatives"),
                detection_positions=det.get("positions"))
    if det.get("layout", "auto") != "auto":  # auto: each head kind detects on its paper's layout
        have["detection_layout"] = det["layout"]
    out = []
    for key, want in g.items():
        if key in have and have[key] != want:
            out.append(f"{key}: paper {want!r}, here {have[key]!r}")
    return out
