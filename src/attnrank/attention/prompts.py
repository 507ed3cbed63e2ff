"""The ICR prompt (Chen et al. ICLR'25), built as token ids with exact document and query spans.

Layout (inside the model's chat template, as one user message)::

    <template head> {instruction}
    {sep}[1] {doc}{sep}[2] {doc} ... {sep}            <- prefix: shared by the query and the "N/A" prompt
    {late_instruction}{sep}Query: {query}<template tail> <- query span (ICR: late instruction to end of prompt)

Every piece is tokenised on its own and the ids are concatenated, so spans are exact by construction and the
"N/A" prompt shares the prefix ids bit for bit (no re-tokenisation arithmetic). A document's span is its block
``[i] text`` (as in ICR), so an empty document still owns its marker tokens.

The template head/tail come from rendering the chat template around a sentinel (Qwen3: ``enable_thinking=False``).
A tokenizer without a chat template gets a plain prompt (BOS when the tokenizer adds one), logged once.

Config keys (``PromptConfig.from_dict``): ``instruction``, ``late_instruction``, ``separator``,
``calibration_query``, ``max_doc_tokens``, ``max_doc_words``, ``order`` (retrieval | reversed | shuffle),
``seed``, ``max_length`` (default: the model's ``max_position_embeddings``), ``use_chat_template``, and the keys a
paper's preset fixes (``attnrank.protocols.prompt_config``; the defaults give the layout above):

- ``role_prefix`` / ``role_suffix``: the bare role wrapper the reference code writes by hand instead of the chat
  template (ICR ``[INST]`` ... ``[/INST]``; BOS prepended when the tokenizer adds one). None: the chat template.
- ``marker``: the document marker, ``{i}`` = slot (ICR ``[{i}]``, CoRe ``[document {i}]``).
- ``doc_span``: ``block`` (marker and body, ICR) | ``body`` (the body after the marker, CoRe).
- ``query_span``: ``suffix`` (late instruction to the end of the prompt, ICR) | ``late`` (late instruction to the
  query's last token plus ``query_tail_tokens`` tokens of the template tail, CoRe) | ``query`` (the query text
  only, Selective-ICR on models other than Llama and Mistral). Attention is causal, so the tokens after the query
  span cannot change the query rows' attention: they are kept in ``Prompt.rest_ids`` (the rendered prompt) and
  not fed to the attention pass; under ``query`` the late instruction and ``Query:`` move into the shared prefix.

Over-long prompts: when prefix + the longer suffix exceeds ``max_length``, every document is cut to
``floor(n_i * budget / sum(n))`` tokens (proportional truncation, at least its marker stays) and a warning is logged.
"""

from __future__ import annotations

import hashlib
import logging
import random
from dataclasses import asdict, dataclass, field, fields

from ..errors import InputError

log = logging.getLogger(__name__)

_SENTINEL = "\u2063ATTNRANK_SLOT\u2063"
ORDERS = ("retrieval", "reversed", "shuffle")
DOC_SPANS = ("block", "body")
QUERY_SPANS = ("suffix", "late", "query")


RENAMED = {"doc_max_tokens": "max_doc_tokens", "doc_max_words": "max_doc_words"}  # old key -> new key (rejected)


@dataclass(frozen=True)
class PromptConfig:
    """Prompt settings; see the module docstring."""

    instruction: str = "Here are some paragraphs:"
    late_instruction: str = "Please find information that are relevant to the following query in the paragraphs above."
    separator: str = "\n\n"
    calibration_query: str = "N/A"
    max_doc_tokens: int | None = 300
    max_doc_words: int | None = None
    order: str = "retrieval"
    seed: int = 0
    max_length: int | None = None
    use_chat_template: bool = True
    role_prefix: str | None = None
    role_suffix: str | None = None
    marker: str = "[{i}]"
    doc_span: str = "block"
    query_span: str = "suffix"
    query_tail_tokens: int = 0

    @classmethod
    def from_dict(cls, d: dict | None, key: str = "prompt") -> "PromptConfig":
        d = dict(d or {})
        for old, new in RENAMED.items():
            if old in d:
                raise InputError(f"{key}.{old}: was renamed: use '{new}'")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"{key}: unknown key(s) {unknown}; allowed: {sorted(names)}")
        cfg = cls(**d)
        if cfg.order not in ORDERS:
            raise InputError(f"{key}.order: '{cfg.order}' is not one of {list(ORDERS)}")
        for name, allowed in (("doc_span", DOC_SPANS), ("query_span", QUERY_SPANS)):
            if getattr(cfg, name) not in allowed:
                raise InputError(f"{key}.{name}: '{getattr(cfg, name)}' is not one of {list(allowed)}")
        if "{i}" not in cfg.marker:
            raise InputError(f"{key}.marker: must contain '{{i}}' (the slot number), got {cfg.marker!r}")
        if (cfg.role_prefix is None) != (cfg.role_suffix is None):
            raise InputError(f"{key}: role_prefix and role_suffix are set together (both or neither)")
        for name in ("max_doc_tokens", "max_doc_words", "max_length", "query_tail_tokens"):
            v = getattr(cfg, name)
            if v is not None and (not isinstance(v, int) or v < 0):
                raise InputError(f"{key}.{name}: expected a non-negative integer or null, got {v!r}")
        return cfg

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prompt:
    """Token ids of one query's prompt. Spans are ``[start, end)`` indices into ``prefix_ids``.

    ``doc_spans``, ``positions`` and ``n_tokens`` are indexed by candidate (first-stage rank order), not by slot.
    """

    prefix_ids: list[int]
    query_ids: list[int]
    na_ids: list[int]
    doc_spans: list[tuple[int, int]]
    positions: list[int]
    n_tokens: list[int]
    truncated: bool = False
    rest_ids: list[int] = field(default_factory=list)  # after the query span: rendered, not fed to the pass

    def text_ids(self, calibration: bool = False) -> list[int]:
        """The whole rendered prompt (``full_ids`` and the tokens after the query span)."""
        return self.full_ids(calibration) + self.rest_ids

    def full_ids(self, calibration: bool = False) -> list[int]:
        return self.prefix_ids + (self.na_ids if calibration else self.query_ids)

    @property
    def length(self) -> int:
        return len(self.prefix_ids) + max(len(self.query_ids), len(self.na_ids))


def prompt_order(n: int, order: str, seed: int, qid: str) -> list[int]:
    """Candidate index placed in each prompt slot (deterministic per (seed, qid) for ``shuffle``)."""
    idx = list(range(n))
    if order == "reversed":
        idx.reverse()
    elif order == "shuffle":
        h = int.from_bytes(hashlib.sha256(f"{seed}\x00{qid}".encode()).digest()[:8], "little")
        random.Random(h).shuffle(idx)
    elif order != "retrieval":
        raise InputError(f"prompt.order: '{order}' is not one of {list(ORDERS)}")
    return idx


class PromptBuilder:
    """Builds ``Prompt``s for one tokenizer and config."""

    def __init__(self, tokenizer, cfg: PromptConfig | dict | None = None, model_max_length: int | None = None):
        self.tok = tokenizer
        self.cfg = cfg if isinstance(cfg, PromptConfig) else PromptConfig.from_dict(cfg)
        self.max_length = self.cfg.max_length or model_max_length
        self.head, self.tail = self._template_pieces()
        self._enc_cache: dict[str, tuple[int, ...]] = {}

    # ------------------------------------------------------------------ pieces
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` alone, without special tokens added by the tokenizer."""
        if not text:
            return []
        return list(self.tok.encode(text, add_special_tokens=False))

    def _enc(self, text: str) -> list[int]:
        """Memoised ``encode``: a new list on every call (the memo holds immutable tuples)."""
        if text not in self._enc_cache:
            self._enc_cache[text] = tuple(self.encode(text))
        return list(self._enc_cache[text])

    def _template_pieces(self) -> tuple[list[int], list[int]]:
        self.head_text, self.tail_text = self._template_text()
        return self.encode(self.head_text), self.encode(self.tail_text)

    def _bos_text(self) -> str:
        bos = getattr(self.tok, "bos_token_id", None)
        adds_bos = bos is not None and list(self.tok.encode("a", add_special_tokens=True))[:1] == [bos]
        return self.tok.bos_token if adds_bos else ""

    def _template_text(self) -> tuple[str, str]:
        if self.cfg.role_prefix is not None:  # the reference's hand-written wrapper (tokenizer(text) adds BOS)
            return self._bos_text() + self.cfg.role_prefix, self.cfg.role_suffix
        tmpl = getattr(self.tok, "chat_template", None)
        if self.cfg.use_chat_template and tmpl:
            msgs = [{"role": "user", "content": _SENTINEL}]
            try:
                text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
            except TypeError:
                text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            if isinstance(text, list):
                text = text[0]
            if text.count(_SENTINEL) == 1:
                head, tail = text.split(_SENTINEL)
                return head, tail
            log.warning("chat template did not render the message once; using a plain prompt")
        else:
            log.info("no chat template (or disabled): using a plain prompt")
        return self._bos_text(), ""

    # text pieces: ``render_text`` joins them, ``build`` encodes each on its own
    def _late_text(self) -> list[str]:
        c = self.cfg
        return [c.late_instruction, c.separator, "Query:"]

    def _query_text(self, query: str) -> str:
        q = query.strip()
        return " " + q if q or self.cfg.query_span == "query" else ""  # the reference encodes f' {q}' always

    def _body_text(self, text: str) -> str:
        c = self.cfg
        text = (text or "").strip()
        if c.max_doc_words is not None:
            text = " ".join(text.split()[: c.max_doc_words])
        return " " + text if text else ""

    def _suffix(self, query: str) -> tuple[list[int], list[int]]:
        """(query span ids, ids after it) of the part after the shared prefix."""
        c = self.cfg
        q = self.encode(self._query_text(query))
        late = [t for piece in self._late_text() for t in self._enc(piece)]
        if c.query_span == "query":
            return q, list(self.tail)
        if c.query_span == "late":
            n = c.query_tail_tokens
            return late + q + self.tail[:n], self.tail[n:]
        return late + q + self.tail, []

    def doc_tokens(self, text: str) -> list[int]:
        """Token ids of one document body (" " + text, word- then token-truncated by the config)."""
        ids = self.encode(self._body_text(text))
        if self.cfg.max_doc_tokens is not None:
            ids = ids[: self.cfg.max_doc_tokens]
        return ids

    _doc_tokens = doc_tokens  # old name

    def render_text(self, query: str, docs: list[str], qid: str = "", calibration: bool = False) -> str:
        """The prompt as text (documents not cut in tokens): what ``build`` encodes piece by piece."""
        c = self.cfg
        slots = prompt_order(len(docs), c.order, c.seed, qid)
        out = [self.head_text, c.instruction]
        for s, j in enumerate(slots):
            out += [c.separator, c.marker.format(i=s + 1), self._body_text(docs[j])]
        out += [c.separator, *self._late_text(), self._query_text(c.calibration_query if calibration else query), self.tail_text]
        return "".join(out)

    # ------------------------------------------------------------------ build
    def build(self, query: str, docs: list[str], qid: str = "") -> Prompt:
        """The prompt for ``query`` and candidate texts ``docs`` (first-stage rank order)."""
        c = self.cfg
        k = len(docs)
        slots = prompt_order(k, c.order, c.seed, qid)
        sep = self._enc(c.separator)
        markers = [self._enc(c.marker.format(i=s + 1)) for s in range(k)]
        bodies = [self.doc_tokens(docs[j]) for j in slots]  # by slot
        (q_suffix, rest), (na_suffix, _) = self._suffix(query), self._suffix(c.calibration_query)
        head = self.head + self._enc(c.instruction)
        # query span "query": the late instruction and "Query:" are the same for the query and "N/A": shared prefix
        late = [t for piece in self._late_text() for t in self._enc(piece)] if c.query_span == "query" else []
        fixed = (len(head) + k * len(sep) + sum(map(len, markers)) + len(sep) + len(late)
                 + max(len(q_suffix), len(na_suffix)))
        total_docs = sum(map(len, bodies))
        truncated = False
        if self.max_length is not None and fixed + total_docs > self.max_length:
            budget = max(self.max_length - fixed, 0)
            bodies = [b[: (len(b) * budget) // total_docs] for b in bodies]
            truncated = True
            log.warning(
                "query %s: prompt of %d tokens exceeds max_length %d; documents cut proportionally to %d tokens in all",
                qid or "?", fixed + total_docs, self.max_length, sum(map(len, bodies)),
            )
            if fixed > self.max_length:
                log.warning("query %s: even without documents the prompt has %d tokens (> %d)", qid or "?", fixed, self.max_length)
        ids = list(head)
        spans: list[tuple[int, int]] = [(0, 0)] * k
        n_tokens = [0] * k
        positions = [0] * k
        for s, j in enumerate(slots):
            ids += sep
            start = len(ids)
            ids += markers[s]
            if c.doc_span == "body":
                start = len(ids)
            ids += bodies[s]
            spans[j] = (start, len(ids))
            n_tokens[j] = len(ids) - start
            positions[j] = s
        ids += sep + late
        return Prompt(ids, q_suffix, na_suffix, spans, positions, n_tokens, truncated, rest)


def model_max_length(model_or_config) -> int | None:
    """The context length a model declares (``max_position_embeddings``), or None."""
    cfg = getattr(model_or_config, "config", model_or_config)
    return getattr(cfg, "max_position_embeddings", None)
