"""Setwise re-ranking (Zhuang et al. SIGIR'24): heapsort over a c-ary heap, each sift step one "which passage is
most relevant" question about a node and its (up to) ``c`` children.

The question is answered by ``scorer``:
- ``likelihood``: one forward; the label whose first answer token has the highest logit wins;
- ``generation``: greedy decoding of a few tokens, the first valid label in the answer wins; an answer without
  one keeps the parent (no swap) and counts as a parse failure (an empty answer also as an empty generation);
- ``attention``: the set as its own ICR prompt (``attnscoring``, the method spec under ``attention``); the passage
  with the highest attention score wins (as ``ICRSetwiseRanker`` of the Selective-ICR llm-rankers fork).

The top ``top_k`` documents are extracted best first; the others follow in first-stage order (scores n - position).
Ties (likelihood) and unanswered questions (generation) go to the passage earliest in first-stage order, so a
model that never answers leaves the first-stage ranking unchanged.
"""

from __future__ import annotations

import re
from typing import Callable

from .attnscoring import scorer_from_params
from ..errors import InputError
from .lm import Frame, greedy_generate, pad_id, position_logits
from .base import Doc, Ranked, Stats, rank_by_order, resolve_params, sort_ranked

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def heapsort_top(n: int, c: int, top_k: int | None, best_of: Callable[[list[int]], int]) -> list[int]:
    """Order of ``range(n)``: the ``top_k`` best (max c-ary heap, ``best_of``) first, then the rest in input order.

    ``best_of(items)`` gets the item indices of a node followed by its children and returns the position (in that
    list) of the best one.
    """
    k = n if top_k is None else min(top_k, n)
    a = list(range(n))

    def sift(i: int, size: int) -> None:
        while True:
            kids = [j for j in range(c * i + 1, c * i + c + 1) if j < size]
            if not kids:
                return
            group = [i] + kids
            w = best_of([a[g] for g in group])
            if not 0 <= w < len(group):
                raise ValueError(f"best_of returned {w} for {len(group)} items")
            if w == 0:
                return
            j = group[w]
            a[i], a[j] = a[j], a[i]
            i = j

    for i in range((n - 2) // c, -1, -1):
        sift(i, n)
    top: list[int] = []
    size = n
    while len(top) < k:
        top.append(a[0])
        size -= 1
        a[0] = a[size]
        if len(top) < k and size > 1:
            sift(0, size)
    chosen = set(top)
    return top + [j for j in range(n) if j not in chosen]


def setwise_labels(frame: Frame, kind: str, count: int) -> list[str]:
    """Passage labels (letters A.. or numbers 1..); ``auto`` falls back to numbers when the tokenizer cannot
    tell the letters apart as single answer tokens."""

    def ok(labels: list[str]) -> bool:
        ids = [frame.enc(l if frame.chat else " " + l)[:1] for l in labels]
        unk = frame.tok.unk_token_id
        flat = [i[0] for i in ids if i]
        return len(flat) == len(labels) and len(set(flat)) == len(flat) and unk not in flat

    letters, numbers = list(_LETTERS[:count]), [str(i) for i in range(1, count + 1)]
    if kind == "letters" or (kind == "auto" and count <= len(_LETTERS) and ok(letters)):
        if count > len(_LETTERS):
            raise InputError(f"methods.setwise.c: {count - 1} children need more than 26 letter labels")
        return letters
    if kind in ("numbers", "auto"):
        return numbers
    raise InputError(f"methods.setwise.labels: '{kind}' is not one of auto, letters, numbers")


def setwise_prompt(frame: Frame, query: str, texts: list[str], labels: list[str]) -> list[int]:
    """Zhuang et al.'s setwise question for a set of passages, as token ids."""
    body = frame.enc(f'Given a query "{query.strip()}", which of the following passages is the most relevant to the query?')
    for lab, t in zip(labels, texts):
        body += frame.enc(f"\n\nPassage {lab}:") + frame.doc(t)
    body += frame.enc("\n\nOutput only the passage label of the most relevant passage.")
    return frame.wrap(body, answer_prefix="Answer: Passage")


def parse_label(text: str, labels: list[str]) -> int | None:
    """Position of the first valid label in an answer (``B``, ``Passage B``, ``[2]``), or None."""
    if labels and labels[0].isdigit():
        hits = re.findall(r"(?<!\d)\d+(?!\d)", text)
    else:
        hits = re.findall(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", text)
        upper = [h for h in hits if h.isupper()]
        hits = upper or [h.upper() for h in hits]
    for h in hits:
        if h in labels:
            return labels.index(h)
    return None


def _argmax_first_stage(values, items: list[int]) -> int:
    """Position of the largest value; ties go to the item earliest in first-stage order."""
    vals = [float(v) for v in values]
    top = max(vals)
    return min((p for p, v in enumerate(vals) if v == top), key=lambda p: items[p])


def rerank_setwise(model, tokenizer, query: str, docs: list[Doc], params: dict, stats: Stats) -> Ranked:
    """Setwise heapsort re-ranking; ``params``: scorer (likelihood | generation | attention), c, top_k, labels,
    max_new_tokens, attention (the attention method spec), prompt."""
    p = resolve_params("setwise", params)
    c, top_k, scorer = p["c"], p["top_k"], p["scorer"]
    n = len(docs)
    if n <= 1:
        return sort_ranked(rank_by_order(docs, list(range(n))))
    if scorer == "attention":
        att = scorer_from_params(model, tokenizer, p, p["_name"])

        def by_attention(items: list[int]) -> int:
            return _argmax_first_stage(att.score(query, [docs[j] for j in items], stats), items)

        return sort_ranked(rank_by_order(docs, heapsort_top(n, c, top_k, by_attention)))
    frame = Frame(tokenizer, p)
    labels = setwise_labels(frame, p["labels"], c + 1)
    label_ids = [frame.answer_token(l, "setwise") for l in labels]
    if scorer == "likelihood" and len(set(label_ids)) != len(label_ids):
        raise InputError("methods.setwise.labels: the labels do not map to distinct first tokens; use another labels setting")
    max_new = p["max_new_tokens"]

    def best_of(items: list[int]) -> int:
        ids = setwise_prompt(frame, query, [docs[j][1] for j in items], labels[: len(items)])
        if scorer == "likelihood":
            cand = label_ids[: len(items)]
            (w,) = position_logits(model, [ids], [[len(ids) - 1]], lambda lg, _: _argmax_first_stage(lg[0, cand], items),
                                   stats, 1, False, 1, pad_id(tokenizer))
            return int(w)
        answer = greedy_generate(model, tokenizer, ids, max_new, stats)
        w = parse_label(answer, labels[: len(items)])
        if w is None:  # no answer: the first-stage order decides
            stats.parse_failures += 1
            return items.index(min(items))
        return w

    return sort_ranked(rank_by_order(docs, heapsort_top(n, c, top_k, best_of)))
