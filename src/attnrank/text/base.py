"""Shared types of the text re-rankers (RankGPT, yes/no, QLM, setwise, pointwise attention): a document, a
ranking, the cost counters, parameter resolution and ranking helpers. No torch.

Every text re-ranker has one shape::

    rerank_<name>(model, tokenizer, query, docs: list[(docid, text)], params: dict, stats: Stats)
        -> list[(docid, score)]      # a full permutation of ``docs``; score descending, ties by docid ascending
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .kinds import resolve_text

Doc = tuple[str, str]
Ranked = list[tuple[str, float]]


# ---------------------------------------------------------------------------------------------------- stats
@dataclass
class Stats:
    """Cost and failure counters of a re-ranking run (summed over queries).

    ``forward_passes`` counts per sequence, independent of batching: one per scored sequence (likelihood) and one
    per generated token (generation: the prefill yields the first token, every later token one decoding step).
    ``model_calls`` counts batched calls of the model; ``prompt_tokens`` the tokens fed as input (after any
    shared-prefix cache). ``parse_failures``: answers with no usable id/label; ``parse_repairs``: answers that
    needed ids dropped or filled; ``empty_generations``: answers that decode to nothing.
    """

    n_queries: int = 0
    forward_passes: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    generations: int = 0
    parse_failures: int = 0
    parse_repairs: int = 0
    empty_generations: int = 0
    seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Totals plus per-query means (``*_per_query``)."""
        n = max(self.n_queries, 1)
        d = {k: getattr(self, k) for k in (
            "n_queries", "forward_passes", "model_calls", "prompt_tokens", "generated_tokens", "generations",
            "parse_failures", "parse_repairs", "empty_generations",
        )}
        d["seconds_total"] = float(sum(self.seconds))
        d["seconds_per_query"] = float(sum(self.seconds)) / n
        for k in ("forward_passes", "model_calls", "prompt_tokens", "generated_tokens"):
            d[f"{k}_per_query"] = getattr(self, k) / n
        return d


def resolve_params(kind: str, params: dict | None) -> dict:
    """A text method's parameters checked against its one declaration (``attnrank.text.kinds.TEXT_KINDS``), defaults
    filled; errors name ``methods.<name>.<key>`` (the name from ``params['_name']`` or ``name``, else the kind)."""
    return resolve_text(kind, params)


def rank_by_order(docs: list[Doc], order: list[int]) -> Ranked:
    """A ranking from an order of indices into ``docs``: score = n - position (so scores are unique)."""
    n = len(order)
    return [(docs[j][0], float(n - p)) for p, j in enumerate(order)]


def sort_ranked(ranked: Ranked) -> Ranked:
    """Score descending, ties by docid ascending."""
    return sorted(ranked, key=lambda t: (-t[1], t[0]))


def order_by_scores(items: list[int], scores) -> list[int]:
    """``items`` re-ordered by score, highest first; ties keep their order in ``items`` (stable)."""
    vals = [float(v) for v in scores]
    return [items[p] for p in sorted(range(len(items)), key=lambda p: -vals[p])]
