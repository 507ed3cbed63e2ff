"""Attention as the relevance mechanism inside the text re-rankers' frameworks (Selective-ICR's llm-rankers fork,
``--scoring attention``): a scorer that maps an attention method spec to scores for a list of passages.

``AttentionScorer(model, tokenizer, spec, prompt, artifacts)`` runs the attention engine
(``attnrank.attention.engine.Scorer``: exact, calibrated by prefix reuse, truncated at the layers the method needs, batched on
GPU) on a *set of passages as its own prompt* (the ICR prompt of ``attnrank.attention.prompts``, the configured truncation and
prompt order) and aggregates the per-layer/head scores with the attention method of ``spec`` (any kind of
``attnrank.attention.methods``: ``icr``, ``qrhead``/``qr-mass``/``core`` head sets, ``selective`` layer windows, ``headrank``, cuts by
``max_layer``/``prune``), through ``methods.aggregate`` — the same function the attention re-rankers use.

The frameworks call it with:
- listwise (``rankgpt`` with ``scoring: attention``): each sliding window's passages (current window order);
  the window is re-ordered by score (ties keep the window's order);
- setwise (``setwise`` with ``scorer: attention``): a heap node and its children; the highest score wins (ties go
  to the passage earliest in first-stage order);
- pointwise (``pointwise`` with ``scoring: attention``): every passage alone in its own prompt (batched).

Config keys these kinds accept: ``attention`` (the method spec, e.g. ``{kind: icr}``), ``prompt`` (the prompt
section; the workflow fills it from the config's ``prompt``). The method's own ``max_doc_tokens`` /
``max_doc_words`` override the prompt's truncation, so every cell of the grid cuts documents the same way.
Artifacts (head table, layer window, HeadRank weights) are loaded by the workflow and passed as ``_artifacts``.
These keys are declared with the kinds' other parameters in ``attnrank.text.kinds.TEXT_KINDS``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..attention import artifacts, methods
from ..attention.engine import QueryInput, Scorer
from ..errors import InputError
from .kinds import attention_spec, text_attention_spec
from .base import Doc, resolve_params, sort_ranked


def text_params(name: str, spec: dict, prompt: dict, inputs: dict | None = None) -> dict:
    """Re-ranker params of a text method config entry (``methods.<name>``): the entry without ``kind``; the prompt's
    ``max_doc_tokens`` unless the entry sets its own; for attention scoring also the prompt config and the loaded
    artifacts (``inputs``: heads / profile / weights files, as ``artifacts.load_artifacts`` takes them)."""
    params = {k: v for k, v in spec.items() if k != "kind"}
    if "max_doc_tokens" not in params:
        params["max_doc_tokens"] = prompt.get("max_doc_tokens")
    att = text_attention_spec(spec["kind"], spec, name)
    if att is not None:
        params.setdefault("prompt", dict(prompt))
        params["_artifacts"] = artifacts.load_artifacts(att, dict(inputs or {}), name)
    return params


class AttentionScorer:
    """Scores sets of passages by one attention method (see the module docstring).

    Args:
        spec: attention method spec ``{kind: ..., params}``.
        prompt: prompt config (``PromptConfig`` keys); ``max_doc_tokens`` / ``max_doc_words`` override it.
        artifacts: what the method aggregates with (``artifacts.load_artifacts``): heads, window, weights.
        name: for error messages (``methods.<name>...``).
        batch_size: prompts per engine forward (engine default: 1 on CPU, 8 on GPU).
    """

    def __init__(self, model, tokenizer, spec: dict, prompt: dict | None = None, artifacts: dict | None = None,
                 name: str = "attention", max_doc_tokens: int | None = None, max_doc_words: int | None = None,
                 batch_size: int | None = None):
        self.kind = spec["kind"]
        self.name = name
        self.n_layers = int(model.config.num_hidden_layers)
        self.params = methods.validate(self.kind, {k: v for k, v in spec.items() if k != "kind"}, name, self.n_layers)
        self.artifacts = artifacts or {}
        for art in methods.needs(self.kind):
            if self.artifacts.get(art) is None:
                raise InputError(f"methods.{name}.{art}: attention kind '{self.kind}' needs the '{art}' artifact, none given")
        cfg = dict(prompt or {})
        if max_doc_tokens is not None:
            cfg["max_doc_tokens"] = max_doc_tokens
        if max_doc_words is not None:
            cfg["max_doc_words"] = max_doc_words
        self.layers = methods.required_layers(self.kind, dict(self.params), self.artifacts, self.n_layers)
        # masked calibration over a head subset or layer window needs the per-head token scores (ICR's own
        # masked calibration is the engine's masked_prefix row)
        tokens = self.kind != "icr" and self.params.get("calibration") == "masked"
        self.engine = Scorer(model, tokenizer, cfg, layers=self.layers, batch_size=batch_size, token_scores=tokens)

    def score_sets(self, query: str, sets: Sequence[Sequence[Doc]], stats=None) -> list[np.ndarray]:
        """Scores [len(set)] of each set of (docid, text), every set in its own prompt (in the given order)."""
        # the query text keys a shuffled prompt order (the framework functions do not see the query id)
        items = [QueryInput(query, query, [d for d, _ in s], [t for _, t in s]) for s in sets]
        out = []
        for qs in self.engine.score(items):
            out.append(methods.aggregate(qs, self.kind, self.params, self.artifacts, self.name, self.n_layers))
            if stats is not None:
                stats.prompt_tokens += int(qs.n_tokens.sum())
        if stats is not None:
            # one forward over each prompt's documents; per batch: the prefix, then both suffixes on its KV cache
            stats.forward_passes += len(items)
            stats.model_calls += 2 * math.ceil(len(items) / self.engine.batch_size) if items else 0
        return out

    def score(self, query: str, docs: Sequence[Doc], stats=None) -> np.ndarray:
        """Scores of one set of passages in one prompt."""
        return self.score_sets(query, [docs], stats)[0]


def scorer_from_params(model, tokenizer, params: dict, what: str, batch_size: int | None = None) -> AttentionScorer:
    """The scorer of a text method's resolved params (``attention``, ``prompt``, ``_artifacts``, truncation)."""
    spec = attention_spec(params, what)
    return AttentionScorer(model, tokenizer, spec, params.get("prompt"), params.get("_artifacts"),
                           name=f"{what}.attention", max_doc_tokens=params.get("max_doc_tokens"),
                           max_doc_words=params.get("max_doc_words"), batch_size=batch_size)


# ---------------------------------------------------------------------------------------------------- pointwise


def rerank_pointwise(model, tokenizer, query: str, docs: list[Doc], params: dict, stats):
    """Pointwise attention: every passage alone in its own ICR prompt, scored by the attention method (batched).

    ``scoring`` must be ``attention`` (pointwise generation / likelihood are the ``yesno`` / ``qlm`` kinds).
    """
    p = resolve_params("pointwise", params)
    if not docs:
        return []
    scorer = scorer_from_params(model, tokenizer, p, p["_name"], batch_size=p["batch_size"])
    scores = scorer.score_sets(query, [[d] for d in docs], stats)
    return sort_ranked([(d, float(s[0])) for (d, _), s in zip(docs, scores)])
