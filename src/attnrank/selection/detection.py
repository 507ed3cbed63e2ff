"""Detection sets for retrieval-head scoring (QR heads, CoRe heads), built as a candidates frame.

A detection set holds, for N queries with a judged positive, the positive and its hard negatives mined with the
configured first-stage retriever. As in the CoRe paper (Tran et al., arXiv 2510.02219):

- the positive of a query is its judged document with the highest relevance (>= ``min_relevance``) that is in
  the corpus and in the first-stage run; ties go to the higher first-stage score, then the smaller docid;
- negatives are the run's candidates for the query that have no positive judgement (relevance > 0, whatever
  ``min_relevance`` is: on NQ grade 1 means "contains the answer"), exist in the corpus, and score strictly
  *below* the positive: a candidate the retriever scores at or above the positive may be an unjudged relevant
  document (a false negative) and is dropped; documents judged 0 or below are valid negatives;
- the hardest ``n_negatives`` remaining (score descending, docid ascending) are kept, in that order
  (``negatives="hardest"``), or ``n_negatives`` of them drawn at random (``negatives="sample"``, seeded per query,
  kept in first-stage order), as CoRe samples its 49 negatives from granite-30m's top-100;
- each query gives ``positions`` samples (P) laid out by ``layout`` (:data:`LAYOUTS`):

  - ``shuffle`` (QRHead): the positive and its negatives in a seeded random order, drawn anew for every sample
    (princeton-pli/QRHead @7a668e7 ``exp_scripts/detection/detect_qrhead_beir.py``:52 ``random.seed(42)`` once,
    :60 ``random.shuffle(docs)`` per instance). QRHead draws from one global stream in file order; here each
    sample has its own generator seeded by (seed, query id, sample index), so a sample does not depend on which
    other queries were kept;
  - ``spread`` (CoRe): the positive at P slots spread evenly over the list, first and last included (0-based
    ``round(i * (N - 1) / (P - 1))``, i = 0..P-1, N = n_negatives + 1: with CoRe's 49 negatives and P = 5 the slots
    1, 13, 26, 38, 50 in 1-based numbering), the negatives in first-stage order. The CoRe paper puts the positive
    at 5 positions; its code (linhhtran/CoRe-Reranking @4d62a24 ``experiments/head_detection.py``:38-58 reads
    ``is_positive`` from the prebuilt ``head_data/nq_core.json``, which the repository does not ship) does not say
    which, so the even spread is our choice (P = 1: slot 1);
  - ``first`` (the layout before issue 22, kept for comparison only, never a default): the positive at each of the
    first P slots.

  Slots count in first-stage order (the ``rank`` column); a ``reversed`` prompt order mirrors them (slot s ->
  N - 1 - s), which leaves ``spread`` the same set up to rounding and ``shuffle`` uniform.

The frame has the candidates-file shape (qid, query, docid, rank, score, text) with ``qid`` = ``sample_id`` =
``"{orig_qid}#p{k}"`` (k: the sample's index 0..P-1), so the attention engine scores it like any candidates file (one prompt per sample, the
documents in ``rank`` order — run the engine with the first-stage prompt order for it). ``rank`` is the prompt slot
(1-based), ``score`` the first-stage score; extra columns ``sample_id``, ``orig_qid``, ``label`` (1 positive, 0
negative). Queries that cannot give a full sample are logged and skipped (reasons counted in ``report``).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import polars as pl

from ..data.sources import doc_text
from ..errors import InputError

log = logging.getLogger(__name__)

COLUMNS = ["qid", "query", "docid", "rank", "score", "text", "sample_id", "orig_qid", "label"]
SKIP_REASONS = ("no_query_text", "positive_not_in_corpus", "positive_not_in_run", "too_few_negatives")
LAYOUTS = ("shuffle", "spread", "first")
# the layout each head-ranking kind's paper detects with (``detection.layout: auto``): QRHead shuffles; CoRe puts the
# positive at 5 positions; qr-mass (attention mass on the gold document) is QRHead's QR score, detected as QRHead does
PAPER_LAYOUT = {"qrhead": "shuffle", "qr-mass": "shuffle", "core": "spread"}


def sample_id(orig_qid: str, index: int) -> str:
    """The id of the ``index``-th (0-based) detection sample of ``orig_qid``."""
    return f"{orig_qid}#p{index}"


def layout_for(kind: str, layout: str = "auto") -> str:
    """The detection layout of a head-ranking ``kind``: ``layout`` itself, or for ``auto`` its paper's layout."""
    if layout != "auto":
        return layout
    return PAPER_LAYOUT.get(kind, "spread")


def spread_slots(n_docs: int, positions: int) -> list[int]:
    """0-based slots of the ``spread`` layout: ``positions`` slots evenly over ``n_docs``, first and last included."""
    if positions == 1:
        return [0]
    return [int((i * (n_docs - 1)) / (positions - 1) + 0.5) for i in range(positions)]


def layout_samples(layout: str, pos: tuple, negs: list[tuple], positions: int, seed: int, qid: str) -> list[list[tuple]]:
    """The ``positions`` samples (each a list of (docid, score) in slot order) of one query under ``layout``."""
    if layout == "shuffle":
        out = []
        for k in range(positions):
            docs = [pos, *negs]
            random.Random(f"{seed}\x00{qid}\x00{k}").shuffle(docs)
            out.append(docs)
        return out
    slots = spread_slots(len(negs) + 1, positions) if layout == "spread" else list(range(positions))
    return [negs[:p] + [pos] + negs[p:] for p in slots]


def build_detection_set(
    queries: pl.DataFrame,
    qrels: pl.DataFrame,
    first_stage_run: pl.DataFrame,
    corpus: pl.DataFrame | pl.LazyFrame | str | Path,
    n_queries: int = 1000,
    n_negatives: int = 49,
    positions: int = 5,
    seed: int = 0,
    min_relevance: int = 1,
    report: dict | None = None,
    negatives: str = "hardest",
    layout: str = "spread",
) -> pl.DataFrame:
    """Build the detection set (see the module docstring); ``report`` (if given) receives counts and skips.

    Queries are visited in a seeded random order of their ids and taken until ``n_queries`` are built, so the
    same inputs and seed give the same set. Fewer eligible queries than asked is logged, none is an InputError.
    ``corpus`` (a frame, a lazy scan or a Parquet path) is read only for the documents the visited queries need
    (:class:`CorpusTexts`).
    """
    _check_options(n_queries, n_negatives, positions, negatives, layout)
    _require(queries, ("qid", "text"), "queries")
    _require(qrels, ("qid", "docid", "relevance"), "qrels")
    _require(first_stage_run, ("qid", "docid", "score"), "first_stage_run")
    dtext = CorpusTexts(corpus)

    qtext = dict(zip(queries["qid"].cast(pl.String), queries["text"]))
    judged_pos, not_negative = _judgements(qrels, min_relevance)
    cands = _run_candidates(first_stage_run)

    order = sorted(judged_pos)
    random.Random(seed).shuffle(order)
    skips: dict[str, list[str]] = {r: [] for r in SKIP_REASONS}
    rows: list[tuple] = []
    slots: dict[int, int] = {}  # 1-based slot of the positive -> samples
    built = 0
    for i, q in enumerate(order):
        if built == n_queries:
            break
        if q not in dtext.ready:
            dtext.prepare(order[i : i + read_ahead(n_queries - built)], judged_pos, cands)
        picked = _positive_and_negatives(q, qtext, dtext, judged_pos[q], not_negative.get(q, set()), cands.get(q, []),
                                         n_negatives, negatives, seed)
        if isinstance(picked, str):
            skips[picked].append(q)
            continue
        (pos, pos_score), negs = picked
        for k, docs in enumerate(layout_samples(layout, (pos, pos_score), negs, positions, seed, q)):
            sid = sample_id(q, k)
            for slot, (d, s) in enumerate(docs, 1):
                rows.append((sid, qtext[q], d, slot, s, dtext[d], sid, q, int(d == pos)))
                if d == pos:
                    slots[slot] = slots.get(slot, 0) + 1
        built += 1
    _log_skips(skips, built, n_queries, n_negatives)
    if report is not None:
        report.update(n_queries=built, n_samples=built * positions, requested=n_queries, layout=layout,
                      positive_slots={str(k): v for k, v in sorted(slots.items())},
                      skipped={r: v for r, v in skips.items()})
    schema = {
        "qid": pl.String, "query": pl.String, "docid": pl.String, "rank": pl.Int32, "score": pl.Float64,
        "text": pl.String, "sample_id": pl.String, "orig_qid": pl.String, "label": pl.Int8,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


def read_ahead(still_needed: int) -> int:
    """How many queries' documents one corpus scan fetches: those still needed plus 25% and 16 for skips, so a
    detection set takes one or two scans whatever the corpus size."""
    return still_needed + still_needed // 4 + 16


class CorpusTexts:
    """``doc_text`` of the corpus documents the detection set needs, read by filtered scans of the corpus (a
    predicate on ``docid``), never a dict of the whole corpus. ``d in texts`` is True for a document that is in
    the corpus, once a :meth:`prepare` covered it."""

    def __init__(self, corpus: pl.DataFrame | pl.LazyFrame | str | Path):
        lf = pl.scan_parquet(corpus) if isinstance(corpus, (str, Path)) else corpus.lazy()
        _require_lazy(lf, ("docid", "text"), "corpus")
        has_title = "title" in lf.collect_schema().names()
        self.lf = lf.select(pl.col("docid").cast(pl.String), pl.col("title") if has_title else pl.lit("").alias("title"), "text")
        self.text: dict[str, str] = {}
        self.ready: set[str] = set()
        self.scans = 0

    def prepare(self, qids: list[str], judged_pos: dict[str, dict[str, int]], cands: dict[str, list[tuple[str, float]]]) -> None:
        """Read the positives and candidates of ``qids`` (one scan for all of them)."""
        need = {d for q in qids for d in judged_pos.get(q, {})} | {d for q in qids for d, _ in cands.get(q, [])}
        need -= self.text.keys()
        if need:
            found = self.lf.filter(pl.col("docid").is_in(pl.Series(sorted(need), dtype=pl.String).implode())).collect()
            self.text.update((d, doc_text(t, x)) for d, t, x in found.iter_rows())
            self.scans += 1
        self.ready.update(qids)

    def __contains__(self, docid: str) -> bool:
        return docid in self.text

    def __getitem__(self, docid: str) -> str:
        return self.text[docid]


def _check_options(n_queries: int, n_negatives: int, positions: int, negatives: str, layout: str) -> None:
    for key, val, lo in (("n_queries", n_queries, 1), ("n_negatives", n_negatives, 1), ("positions", positions, 1)):
        if not isinstance(val, int) or val < lo:
            raise InputError(f"detection.{key}: must be an integer >= {lo} (got {val!r})")
    if negatives not in ("hardest", "sample"):
        raise InputError(f"detection.negatives: must be 'hardest' or 'sample' (got {negatives!r})")
    if layout not in LAYOUTS:
        raise InputError(f"detection.layout: must be one of {list(LAYOUTS)} (got {layout!r})")
    if layout != "shuffle" and positions > n_negatives + 1:
        raise InputError(f"detection.positions: {positions} slots need at least {positions - 1} negatives (n_negatives={n_negatives})")


def _judgements(qrels: pl.DataFrame, min_relevance: int) -> tuple[dict[str, dict[str, int]], dict[str, set[str]]]:
    """({qid: {docid: grade}} of the positives (grade >= ``min_relevance``), {qid: docids judged relevant (> 0)})."""
    rel = qrels.select(pl.col("qid").cast(pl.String), pl.col("docid").cast(pl.String), pl.col("relevance").cast(pl.Int64))
    judged_pos: dict[str, dict[str, int]] = {}
    for q, d, r in rel.filter(pl.col("relevance") >= min_relevance).iter_rows():
        judged_pos.setdefault(q, {})[d] = max(r, judged_pos.get(q, {}).get(d, r))
    not_negative: dict[str, set[str]] = {}
    for q, d in rel.filter(pl.col("relevance") > 0).select("qid", "docid").iter_rows():
        not_negative.setdefault(q, set()).add(d)
    return judged_pos, not_negative


def _run_candidates(first_stage_run: pl.DataFrame) -> dict[str, list[tuple[str, float]]]:
    """{qid: [(docid, score)]} of the first-stage run, score descending, ties by docid (repeats dropped)."""
    run = (
        first_stage_run.select(pl.col("qid").cast(pl.String), pl.col("docid").cast(pl.String), pl.col("score").cast(pl.Float64))
        .unique(["qid", "docid"], keep="first", maintain_order=True)
        .sort(["qid", "score", "docid"], descending=[False, True, False])
    )
    cands: dict[str, list[tuple[str, float]]] = {}
    for q, d, s in run.iter_rows():
        cands.setdefault(q, []).append((d, s))
    return cands


def _positive_and_negatives(q: str, qtext: dict, dtext: dict, positives: dict[str, int], not_negative: set[str],
                            cands: list[tuple[str, float]], n_negatives: int, negatives: str, seed: int):
    """((positive, its score), negatives [(docid, score)]) of query ``q``, or the skip reason (a str)."""
    if not (qtext.get(q) or "").strip():
        return "no_query_text"
    pos_in_corpus = {d: r for d, r in positives.items() if d in dtext}
    if not pos_in_corpus:
        return "positive_not_in_corpus"
    run_scores = dict(cands)
    ranked_pos = sorted((d for d in pos_in_corpus if d in run_scores), key=lambda d: (-pos_in_corpus[d], -run_scores[d], d))
    if not ranked_pos:
        return "positive_not_in_run"
    pos = ranked_pos[0]
    pos_score = run_scores[pos]
    negs = [(d, s) for d, s in cands if d not in not_negative and d in dtext and s < pos_score]
    if negatives == "sample" and len(negs) > n_negatives:
        keep = sorted(random.Random(f"{seed}\x00{q}").sample(range(len(negs)), n_negatives))
        negs = [negs[i] for i in keep]
    negs = negs[:n_negatives]
    if len(negs) < n_negatives:
        return "too_few_negatives"
    return (pos, pos_score), negs


def _log_skips(skips: dict[str, list[str]], built: int, n_queries: int, n_negatives: int) -> None:
    for reason, qids in skips.items():
        if qids:
            log.warning("detection set: skipped %d quer(y/ies) (%s), e.g. %s", len(qids), reason.replace("_", " "), qids[:5])
    if built == 0:
        raise InputError(
            f"detection: no query gives a sample with a positive and {n_negatives} negatives "
            f"(skipped: { {r: len(v) for r, v in skips.items()} })"
        )
    if built < n_queries:
        log.warning("detection set: built %d of %d requested queries (not enough eligible queries)", built, n_queries)


def positive_labels(detection: pl.DataFrame) -> dict[str, str]:
    """sample_id -> docid of its positive (the ``labels`` argument of :func:`attnrank.selection.heads.score_heads`)."""
    _require(detection, ("sample_id", "docid", "label"), "detection set")
    pos = detection.filter(pl.col("label") == 1)
    dup = pos.group_by("sample_id").len().filter(pl.col("len") != 1)
    if dup.height:
        raise InputError(f"detection set: sample(s) {dup['sample_id'][:3].to_list()} have more than one positive")
    return dict(zip(pos["sample_id"], pos["docid"]))


def _require_lazy(lf: pl.LazyFrame, cols: tuple[str, ...], what: str) -> None:
    have = lf.collect_schema().names()
    missing = [c for c in cols if c not in have]
    if missing:
        raise InputError(f"detection: {what} lacks column(s) {missing} (has {have})")


def _require(df: pl.DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"detection: {what} lacks column(s) {missing} (has {df.columns})")


def detect_heads(scores_manifest: str, detection_path: str, temperature: float, out_heads: str, out_provenance: str, *,
                 model: str, order: str, detection: dict, prompt: dict) -> dict:
    """The ``detect_heads`` job: score every (layer, head) on the detection set's score cache (qr-mass, QRHead,
    CoRe at ``temperature``), rank them and record the provenance. Returns counts."""
    from .. import io
    from ..attention import scorecache
    from . import heads

    cache = Path(scores_manifest).parent
    labels = positive_labels(pl.read_parquet(detection_path))
    table = heads.score_heads(scorecache.iter_scores(cache), labels, temperature)
    io.write_parquet(table, out_heads)
    io.write_json(out_provenance, heads.provenance(
        model=model, order=order, temperature=temperature, detection=dict(detection), prompt=dict(prompt),
        manifest=scorecache.read_manifest(cache), n_samples=len(labels),
    ))
    return {"heads": table.height, "samples": len(labels)}
