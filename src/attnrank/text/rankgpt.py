"""Listwise generation re-ranking (RankGPT, Sun et al. EMNLP'23); the shape every text re-ranker has is in
``attnrank.text.base``, the runner over a candidates table in ``attnrank.text.rerank``.

Prompts are built from separately tokenised pieces (as the attention prompt in ``attnrank.attention.prompts`` does) inside
the tokenizer's chat template (one user message; Qwen3 with thinking disabled); a tokenizer without a template
gets a plain prompt. Documents are truncated exactly as the attention prompt truncates them
(``PromptBuilder``: ``" " + text`` tokenised, first ``max_doc_tokens`` tokens kept).

Listwise ``rankgpt`` re-orders each window by ``scoring``: ``generation`` (below), ``likelihood`` (label logits of
the setwise question over the window) or ``attention`` (``attnscoring``); ``pointwise`` is attention per passage.

RankGPT: a window of ``window`` passages labelled ``[1]..[m]`` slides from the bottom of the list to the top by
``stride``; each window is re-ordered by the model's greedy answer ``[2] > [1] > ...``. Answers are parsed by
``parse_permutation``: ids out of range and repeated ids are dropped, missing ids are appended in input order; an
answer with no usable id (garbage, empty) keeps the window's order and counts as a parse failure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable

from .attnscoring import scorer_from_params
from ..errors import InputError
from .lm import Frame, greedy_generate, pad_id, position_logits
from .setwise import setwise_labels, setwise_prompt
from .base import Doc, Ranked, Stats, order_by_scores, rank_by_order, resolve_params, sort_ranked

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- parser
@dataclass
class ParsedPermutation:
    """A parsed answer: ``order`` is a full permutation of 0..n-1 (0-based), plus what had to be repaired."""

    order: list[int]
    n_valid: int
    n_duplicate: int
    n_out_of_range: int
    n_missing: int

    @property
    def failed(self) -> bool:
        """No usable id at all (garbage or empty answer; ``order`` is then the input order)."""
        return self.n_valid == 0 and len(self.order) > 0

    @property
    def repaired(self) -> bool:
        return bool(self.n_duplicate or self.n_out_of_range or self.n_missing) and not self.failed


_BRACKETED = re.compile(r"\[\s*(-?\d+)\s*\]")
_NUMBER = re.compile(r"-?\d+")


def parse_permutation(text: str, n: int) -> ParsedPermutation:
    """Parse ``[2] > [1] > [3]`` (or ``2 > 1 > 3``) into a 0-based full permutation of ``n`` items.

    Bracketed ids are used when the answer has any, else every integer. Out-of-range ids and repeats (after the
    first) are dropped; ids never mentioned are appended in input order.
    """
    text = text or ""
    found = _BRACKETED.findall(text) or _NUMBER.findall(text)
    seen: set[int] = set()
    order: list[int] = []
    dup = oor = 0
    for s in found:
        i = int(s) - 1
        if not 0 <= i < n:
            oor += 1
        elif i in seen:
            dup += 1
        else:
            seen.add(i)
            order.append(i)
    valid = len(order)
    missing = [i for i in range(n) if i not in seen]
    return ParsedPermutation(order + missing, valid, dup, oor, len(missing))


# ---------------------------------------------------------------------------------------------------- RankGPT
def sliding_windows(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """RankGPT's windows ``[start, end)`` from the bottom of the list to the top; the last one starts at 0.

    Unlike the reference loop, a list whose length is not ``window`` plus a multiple of ``stride`` still gets its
    top covered (the last window is clamped to start at 0).
    """
    if n <= 0:
        return []
    if n <= window:
        return [(0, n)]
    out, end = [], n
    while True:
        start = max(end - window, 0)
        out.append((start, end))
        if start == 0:
            return out
        end -= stride


def sliding_window_order(n: int, window: int, stride: int, rank_window: Callable[[list[int]], list[int]]) -> list[int]:
    """Apply ``rank_window`` (item indices -> the same indices re-ordered) over RankGPT's sliding windows."""
    order = list(range(n))
    for start, end in sliding_windows(n, window, stride):
        new = rank_window(order[start:end])
        if sorted(new) != sorted(order[start:end]):
            raise ValueError("rank_window must return a permutation of its input")
        order[start:end] = new
    return order


def rankgpt_prompt(frame: Frame, query: str, texts: list[str]) -> list[int]:
    """RankGPT's listwise prompt (one user message) for the window's passages, as token ids."""
    m = len(texts)
    q = query.strip()
    body = frame.enc(
        f"I will provide you with {m} passages, each indicated by a numerical identifier []. "
        f"Rank the passages based on their relevance to the search query: {q}."
    )
    for i, t in enumerate(texts, 1):
        body += frame.enc("\n\n" + f"[{i}]") + frame.doc(t)
    body += frame.enc(
        f"\n\nSearch Query: {q}.\nRank the {m} passages above based on their relevance to the search query. "
        "All the passages should be included and listed using identifiers, in descending order of relevance. "
        "The output format should be [] > [], e.g., [2] > [1]. Only respond with the ranking results, "
        "do not say any word or explain."
    )
    return frame.wrap(body, answer_prefix="Ranking:")


def rerank_rankgpt(model, tokenizer, query: str, docs: list[Doc], params: dict, stats: Stats) -> Ranked:
    """Sliding-window listwise re-ranking; each window is re-ordered by ``scoring``: ``generation`` (RankGPT's greedy
    permutation), ``likelihood`` (the logits of the passage labels after "which passage is the most relevant",
    as the Selective-ICR llm-rankers fork) or ``attention`` (``attnscoring``: the window as its own ICR prompt)."""
    p = resolve_params("rankgpt", params)
    window, stride = p["window"], p["stride"]
    if len(docs) <= 1:
        return sort_ranked(rank_by_order(docs, list(range(len(docs)))))
    if p["scoring"] == "attention":
        scorer = scorer_from_params(model, tokenizer, p, p["_name"])

        def by_attention(idx: list[int]) -> list[int]:
            return order_by_scores(idx, scorer.score(query, [docs[j] for j in idx], stats))

        return sort_ranked(rank_by_order(docs, sliding_window_order(len(docs), window, stride, by_attention)))
    frame = Frame(tokenizer, p)
    if p["scoring"] == "likelihood":
        return sort_ranked(rank_by_order(docs, sliding_window_order(
            len(docs), window, stride, _likelihood_window(model, tokenizer, frame, query, docs, p, stats))))

    def rank_window(idx: list[int]) -> list[int]:
        m = len(idx)
        if p["max_new_tokens"] is not None:
            budget = p["max_new_tokens"]
        else:  # room for "[1] > [2] > ... [m]" plus a little
            budget = sum(len(frame.enc(f"[{i}] > ")) for i in range(1, m + 1)) + 8
        answer = greedy_generate(model, tokenizer, rankgpt_prompt(frame, query, [docs[j][1] for j in idx]), budget, stats)
        parsed = parse_permutation(answer, m)
        if parsed.failed:
            stats.parse_failures += 1
            log.debug("rankgpt: unparseable answer %r", answer[:200])
        elif parsed.repaired:
            stats.parse_repairs += 1
        return [idx[k] for k in parsed.order]

    order = sliding_window_order(len(docs), window, stride, rank_window)
    return sort_ranked(rank_by_order(docs, order))


def _likelihood_window(model, tokenizer, frame: Frame, query: str, docs: list[Doc], p: dict, stats: Stats):
    """Listwise likelihood (Selective-ICR's llm-rankers fork, ``ListwiseLlmRanker.compare`` with ``scoring=
    likelihood``): the setwise question over the window, one forward, passages ordered by the logit of their label
    as the first answer token (ties keep the window's order)."""
    def rank_window(idx: list[int]) -> list[int]:
        labels = setwise_labels(frame, p["labels"], len(idx))
        label_ids = [frame.answer_token(l, "rankgpt") for l in labels]
        if len(set(label_ids)) != len(label_ids):
            raise InputError("methods.rankgpt.labels: the labels do not map to distinct first tokens; use another labels setting")
        ids = setwise_prompt(frame, query, [docs[j][1] for j in idx], labels)
        got: list[float] = []

        def keep(lg, _) -> float:
            got.extend(lg[0, label_ids].tolist())
            return 0.0

        position_logits(model, [ids], [[len(ids) - 1]], keep, stats, 1, False, 1, pad_id(tokenizer))
        return order_by_scores(idx, got)

    return rank_window
