"""Listwise generation re-ranking (RankGPT, Sun et al. EMNLP'23) and the shared re-ranker plumbing.

Every generation / likelihood re-ranker has one shape::

    rerank_<name>(model, tokenizer, query, docs: list[(docid, text)], params: dict, stats: Stats)
        -> list[(docid, score)]      # a full permutation of ``docs``; score descending, ties by docid ascending

``rerank_candidates(kind, model_dir, candidates, params)`` runs one of them over a candidates table with logged
progress and returns the run (qid, docid, score) and the cost counters. Kinds: ``rankgpt``, ``yesno``, ``qlm``,
``setwise``, ``pointwise`` (see ``_registry``).

Prompts are built from separately tokenised pieces (as the attention prompt in ``attnrank.prompts`` does) inside
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
import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable

import polars as pl
import torch

from .errors import InputError
from .progress import progress as progress_lines
from .params import TEXT_KINDS, resolve_text

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------------------- params
def resolve_params(kind: str, params: dict | None) -> dict:
    """A text method's parameters checked against its one declaration (``attnrank.params.TEXT_KINDS``), defaults
    filled; errors name ``methods.<name>.<key>`` (the name from ``params['_name']`` or ``name``, else the kind)."""
    return resolve_text(kind, params)


# ---------------------------------------------------------------------------------------------------- prompt frame
class Frame:
    """Token-id helpers for one tokenizer: chat-template head/tail, piece encoding, document truncation."""

    def __init__(self, tokenizer, params: dict):
        from .prompts import PromptBuilder

        builder = PromptBuilder(tokenizer, {
            "max_doc_tokens": params.get("max_doc_tokens"),
            "max_doc_words": params.get("max_doc_words"),
            "use_chat_template": bool(params.get("use_chat_template", True)),
        })
        self.tok = tokenizer
        self.builder = builder
        self.head, self.tail = list(builder.head), list(builder.tail)
        self.chat = len(self.tail) > 0
        self._cache: dict[str, tuple[int, ...]] = {}

    def enc(self, text: str) -> list[int]:
        """Ids of ``text`` alone (no special tokens): a new list on every call (the memo holds immutable tuples,
        so a caller that extends the result cannot change what the next call returns)."""
        if text not in self._cache:
            self._cache[text] = tuple(self.tok.encode(text, add_special_tokens=False)) if text else ()
        return list(self._cache[text])

    def doc(self, text: str) -> list[int]:
        """Truncated document ids, the attention prompt's policy (leading space, first ``max_doc_tokens``)."""
        fn = getattr(self.builder, "doc_tokens", None) or self.builder._doc_tokens
        return list(fn(text))

    def wrap(self, body: list[int], answer_prefix: str = "") -> list[int]:
        """Head + body + tail; a plain prompt (no template) ends with ``answer_prefix`` instead of the tail."""
        if self.chat:
            return self.head + body + self.tail
        return self.head + body + (self.enc("\n" + answer_prefix) if answer_prefix else [])

    def answer_token(self, word: str, what: str) -> int:
        """First token id of ``word`` as the first answer token (no leading space in chat, one in plain text)."""
        ids = self.enc(word if self.chat else " " + word)
        if not ids:
            raise InputError(f"{what}: the tokenizer encodes '{word}' to no tokens")
        return ids[0]


def model_device(model) -> torch.device:
    return next(model.parameters()).device


def stop_token_ids(model, tokenizer) -> list[int]:
    """EOS ids of the model's generation config and tokenizer, plus common end-of-turn tokens in the vocabulary."""
    ids: set[int] = set()
    gc = getattr(model, "generation_config", None)
    eos = getattr(gc, "eos_token_id", None) if gc is not None else None
    for v in (eos if isinstance(eos, (list, tuple)) else [eos]):
        if v is not None:
            ids.add(int(v))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for t in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>"):
        if t in vocab:
            ids.add(int(vocab[t]))
    return sorted(ids)


@torch.inference_mode()
def greedy_generate(model, tokenizer, ids: list[int], max_new_tokens: int, stats: Stats) -> str:
    """Greedy-decode (KV cached) up to ``max_new_tokens`` after ``ids``; the decoded answer, stripped."""
    from transformers import GenerationConfig

    stops = stop_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops[0] if stops else 0)
    gen_cfg = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad,
        eos_token_id=stops or None, use_cache=True,
    )
    device = model_device(model)
    x = torch.tensor([ids], dtype=torch.long, device=device)
    out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), generation_config=gen_cfg)
    new = out[0, len(ids):].tolist()
    stats.generations += 1
    stats.generated_tokens += len(new)
    stats.forward_passes += max(len(new), 1)
    stats.model_calls += max(len(new), 1)
    stats.prompt_tokens += len(ids)
    stop = set(stops)
    while new and new[-1] in stop:
        new.pop()
    text = tokenizer.decode(new, skip_special_tokens=True).strip()
    if not text:
        stats.empty_generations += 1
    return text


def rank_by_order(docs: list[Doc], order: list[int]) -> Ranked:
    """A ranking from an order of indices into ``docs``: score = n - position (so scores are unique)."""
    n = len(order)
    return [(docs[j][0], float(n - p)) for p, j in enumerate(order)]


def sort_ranked(ranked: Ranked) -> Ranked:
    """Score descending, ties by docid ascending."""
    return sorted(ranked, key=lambda t: (-t[1], t[0]))


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
        from .attnscoring import order_by_scores, scorer_from_params

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
    from .attnscoring import order_by_scores
    from .likelihood import _pad_id, position_logits
    from .setwise import setwise_labels, setwise_prompt

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

        position_logits(model, [ids], [[len(ids) - 1]], keep, stats, 1, False, 1, _pad_id(tokenizer))
        return order_by_scores(idx, got)

    return rank_window


# ---------------------------------------------------------------------------------------------------- driver
def _registry() -> dict[str, Callable]:
    from .attnscoring import rerank_pointwise
    from .likelihood import rerank_qlm, rerank_yesno
    from .setwise import rerank_setwise

    return {"rankgpt": rerank_rankgpt, "yesno": rerank_yesno, "qlm": rerank_qlm, "setwise": rerank_setwise,
            "pointwise": rerank_pointwise}


RERANKER_KINDS = tuple(TEXT_KINDS)


def get_reranker(kind: str) -> Callable:
    """The re-ranker function of a method kind (InputError for an unknown kind)."""
    reg = _registry()
    if kind not in reg:
        raise InputError(f"methods: unknown re-ranker kind '{kind}'; known: {sorted(reg)}")
    return reg[kind]


def iter_queries(candidates: pl.DataFrame) -> list[tuple[str, str, list[Doc]]]:
    """(qid, query, [(docid, text)]) per query (``attnrank.candidates.per_query``: rank order, ties by docid)."""
    from .candidates import per_query

    return [(qid, query, list(zip(docids, texts))) for qid, query, docids, texts in per_query(candidates)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rerank_candidates(
    method_kind: str,
    model_dir,
    candidates: pl.DataFrame,
    params: dict | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    name: str | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Re-rank every query of ``candidates`` with one method kind.

    ``model_dir`` is a prepared model folder (``attnrank.models.load_model``) or an already loaded
    ``(model, tokenizer)`` pair. Returns the run (qid, docid, score; every candidate) and ``Stats.as_dict()``.
    Parameters are checked before the model loads; errors name ``methods.<name>.<key>``.
    """
    fn = get_reranker(method_kind)
    params = resolve_params(method_kind, {**(params or {}), "_name": name or method_kind})
    if isinstance(model_dir, tuple):
        model, tokenizer = model_dir
    else:
        from .models import load_model

        model, tokenizer = load_model(model_dir, device=device)
    dev = model_device(model)
    stats = Stats()
    qids: list[str] = []
    docids: list[str] = []
    scores: list[float] = []
    n_q = candidates["qid"].n_unique()
    for qid, query, docs in progress_lines(iter_queries(candidates), f"rerank {method_kind}", total=n_q, unit="q", enabled=progress):
        _sync(dev)
        t0 = time.perf_counter()
        ranked = fn(model, tokenizer, query, docs, params or {}, stats)
        _sync(dev)
        stats.seconds.append(time.perf_counter() - t0)
        stats.n_queries += 1
        if sorted(d for d, _ in ranked) != sorted(d for d, _ in docs):
            raise RuntimeError(f"{method_kind}: query {qid}: ranking is not a permutation of the candidates")
        for d, s in ranked:
            qids.append(qid)
            docids.append(d)
            scores.append(float(s) if math.isfinite(s) else -math.inf)
    run = pl.DataFrame({"qid": qids, "docid": docids, "score": scores},
                       schema={"qid": pl.String, "docid": pl.String, "score": pl.Float64})
    summary = stats.as_dict()
    summary["method_kind"] = method_kind
    summary["device"] = str(dev)
    if summary["parse_failures"] or summary["empty_generations"]:
        log.warning("%s: %d parse failures, %d empty generations over %d generations", method_kind,
                    summary["parse_failures"], summary["empty_generations"], summary["generations"])
    return run, summary
