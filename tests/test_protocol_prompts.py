"""Each preset's prompt, as its reference code renders it (issue 22, must-show 1).

Text level: ``PromptBuilder.render_text`` with the preset's keys (``protocols.prompt_config``) and a tokenizer carrying
the model family's real chat template (tests/fixtures) equals a golden string written from the reference code.
Token level: on a tiny word-level tokenizer with the family's special tokens, the ids are the encoded text and the
document / query spans are the references' spans, token by token.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attnrank import protocols
from attnrank.attention.prompts import PromptBuilder
from attnrank.models import build_tiny_tokenizer

FIX = Path(__file__).parent / "fixtures"
QUERY = "what is a star"
DOCS = ["star\nA star is a ball of plasma", "moon\nThe moon orbits the earth"]  # first-stage order
LATE_IE = "Please find information that are relevant to the following query in the paragraphs above."
LATE_QA = "Please answer the following question based on the information in the paragraphs above."

FAMILIES = {
    # family: (model id, chat template file, BOS the tokenizer adds, special tokens)
    "llama": ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-instruct.jinja", "<|begin_of_text|>",
              ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]),
    "mistral": ("mistralai/Mistral-7B-Instruct-v0.2", "mistral-7b-instruct-v0.2.jinja", "<s>", ["[INST]", "[/INST]"]),
    "qwen": ("Qwen/Qwen3-0.6B", "qwen3.jinja", None, ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]),
}


def family_tokenizer(family: str):
    """The tiny word-level tokenizer with the family's special tokens, chat template and BOS behaviour."""
    from tokenizers.processors import TemplateProcessing

    _, template, bos, specials = FAMILIES[family]
    tok = build_tiny_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": specials})
    tok.chat_template = (FIX / template).read_text()
    if bos is None:
        tok.bos_token = None
    else:
        tok.bos_token = bos
        tok._tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.convert_tokens_to_ids(bos))])
    return tok


def builder(protocol: str, family: str, dataset: str = "scifact", order: str = "reversed") -> PromptBuilder:
    cfg = {**protocols.prompt_config(protocol, FAMILIES[family][0], dataset), "order": order, "max_doc_tokens": None}
    return PromptBuilder(family_tokenizer(family), cfg)


# Golden renderings (reversed order: the first-stage rank 1 is the last block, nearest the query).
# ICR src/in_context_reranker.py:136-141 (wrapper), :108-116 (separator ' \n\n' Llama, '\n\n' Mistral), :85-86
# and :435-439 (' Here are some paragraphs:' after the prefix), :484-488 (sep + '[i] doc'), :505-522 (sep + late
# + sep + 'Query:' + ' q' + suffix); the tokenizer adds BOS (:107 prompt_bos_length = 1).
ICR_LLAMA = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|> Here are some paragraphs: \n\n"
             "[1] moon\nThe moon orbits the earth \n\n[2] star\nA star is a ball of plasma \n\n"
             f"{LATE_IE} \n\nQuery: what is a star<|eot_id|><|start_header_id|>assistant<|end_header_id|>")
ICR_MISTRAL = ("<s>[INST] Here are some paragraphs:\n\n"
               "[1] moon\nThe moon orbits the earth\n\n[2] star\nA star is a ball of plasma\n\n"
               f"{LATE_IE}\n\nQuery: what is a star[/INST]")
# CoRe experiments/src/reranker_calib.py:45-56 (wrapper, instruction ending '\n\n', late instruction ending
# 'Query: '), :240-257 ('[document i]' + ' ' + doc + '\n\n', then late + q.strip() + suffix); retrieval order.
CORE_LLAMA = ("<|begin_of_text|><|start_header_id|>user<|end_header_id|> Here are some paragraphs:\n\n"
              "[document 1] star\nA star is a ball of plasma\n\n[document 2] moon\nThe moon orbits the earth\n\n"
              f"{LATE_IE}\n\nQuery: what is a star<|eot_id|><|start_header_id|>assistant<|end_header_id|>")
CORE_MISTRAL = ("<s>[INST] Here are some paragraphs:\n\n"
                "[document 1] star\nA star is a ball of plasma\n\n[document 2] moon\nThe moon orbits the earth\n\n"
                f"{LATE_IE}\n\nQuery: what is a star[/INST]")
# Selective-ICR icr/src/in_context_reranker.py:185-187 (Qwen wrapper, no think block), :136-146 (no BOS, separator
# ' \n\n'), :699-798 (blocks and late instruction as ICR), :802-804 (' q' + suffix).
SELECTIVE_QWEN = ("<|im_start|>user\n Here are some paragraphs: \n\n"
                  "[1] moon\nThe moon orbits the earth \n\n[2] star\nA star is a ball of plasma \n\n"
                  f"{LATE_IE} \n\nQuery: what is a star<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("protocol,family,order,golden", [
    ("icr", "llama", "reversed", ICR_LLAMA),
    ("icr", "mistral", "reversed", ICR_MISTRAL),
    # QRHead src/qrretriever/attn_retriever.py:109-110, :118, :124-139: ICR's Llama prompt, IE instruction
    ("qrhead", "llama", "reversed", ICR_LLAMA),
    # QRHead has no Mistral prompt (attn_retriever.py:114-115 raises): ICR's, which QRHead builds on (docs/protocols.md)
    ("qrhead", "mistral", "reversed", ICR_MISTRAL),
    ("core", "llama", "retrieval", CORE_LLAMA),
    ("core", "mistral", "retrieval", CORE_MISTRAL),
    ("selective-icr", "qwen", "reversed", SELECTIVE_QWEN),
    ("selective-icr", "llama", "reversed", ICR_LLAMA),
])
def test_rendered_prompt_equals_reference(protocol, family, order, golden):
    b = builder(protocol, family, order=order)
    text = b.render_text(QUERY, DOCS, qid="q")
    assert text == golden
    # the ids the attention pass sees are that text, tokenised (piece by piece = whole here), and nothing else
    p = b.build(QUERY, DOCS, qid="q")
    assert p.text_ids() == list(b.tok.encode(text, add_special_tokens=False))
    # the family's own chat template is not used: no Llama system block, no Qwen think block
    assert "Cutting Knowledge" not in text and "<think>" not in text


def test_chat_template_fixture_is_what_the_presets_avoid():
    """Without a preset the real templates add what the references do not write (the fixtures are live)."""
    llama = PromptBuilder(family_tokenizer("llama"), {}).render_text(QUERY, DOCS)
    assert llama.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date")
    qwen = PromptBuilder(family_tokenizer("qwen"), {}).render_text(QUERY, DOCS)
    assert qwen.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    mistral = PromptBuilder(family_tokenizer("mistral"), {}).render_text(QUERY, DOCS)
    assert mistral.startswith("<s>[INST] Here are some paragraphs:") and mistral.endswith(" [/INST]")


@pytest.mark.parametrize("protocol,dataset,late", [
    ("icr", "nq", LATE_QA), ("icr", "webis-touche2020", LATE_QA), ("icr", "scifact", LATE_IE),
    ("selective-icr", "trec-covid", LATE_QA), ("selective-icr", "arguana", LATE_IE),
    ("qrhead", "nq", LATE_IE), ("core", "fiqa", LATE_IE),
])
def test_late_instruction_per_dataset(protocol, dataset, late):
    """QA on trec-covid, fiqa, webis-touche2020, dbpedia-entity, nq for ICR (experiments.py:73-76) and Selective-ICR
    (icr/experiments.py:131-134); QRHead (attn_retriever.py:125) and CoRe (reranker_calib.py:56) always IE."""
    text = builder(protocol, "llama", dataset).render_text(QUERY, DOCS)
    assert late in text and ({LATE_QA, LATE_IE} - {late}).pop() not in text


def test_reference_dataset_names():
    assert protocols.reference_dataset("touche2020", {"source": "irds", "id": "beir/webis-touche2020/v2"}) == "webis-touche2020"
    assert protocols.reference_dataset("fiqa", {"source": "irds", "id": "beir/fiqa/test"}) == "fiqa"
    assert protocols.reference_dataset("cisi", {"source": "beir", "path": "x"}) == "cisi"


def _dec(tok, ids):
    return tok.decode(ids).split()


@pytest.mark.parametrize("protocol", ["icr", "qrhead"])
def test_icr_spans_token_by_token(protocol):
    """ICR: a document's span is its '[i] doc' block (in_context_reranker.py:489-491), the query span runs from the
    late instruction to the prompt's last token (:506, :527); QRHead the same (attn_retriever.py:168-178: the
    block's and the query content's first to last token, the suffix included)."""
    b = builder(protocol, "llama")
    tok, p = b.tok, b.build(QUERY, DOCS, qid="q")
    s, e = p.doc_spans[0]  # rank 1, the second block
    assert p.prefix_ids[s:e] == b.encode("[2]") + b.encode(" star\nA star is a ball of plasma")
    assert p.query_ids == (b.encode(LATE_IE) + b.encode(" \n\n") + b.encode("Query:") + b.encode(" what is a star")
                           + b.encode("<|eot_id|><|start_header_id|>assistant<|end_header_id|>"))
    assert p.rest_ids == [] and p.na_ids[-len(b.tail) - 3:-len(b.tail)] == b.encode(" N/A")
    assert _dec(tok, p.prefix_ids[:3]) == ["<|begin_of_text|>", "<|start_header_id|>", "user"]


@pytest.mark.parametrize("family,tail_in_span", [("llama", 1), ("mistral", 0)])
def test_core_spans_token_by_token(family, tail_in_span):
    """CoRe: the document span starts after '[document i]' (reranker_calib.py:244-245) and covers ' ' + doc; the
    query span starts at the late instruction (:253) and ends, inclusive, at len(tokens(... + q)) - off_set
    (:256, :110): Llama (off_set 0) keeps the suffix's first token, Mistral (off_set 1) ends at the query."""
    b = builder("core", family, order="retrieval")
    p = b.build(QUERY, DOCS, qid="q")
    s, e = p.doc_spans[0]
    assert p.prefix_ids[s - len(b.encode("[document 1]")):s] == b.encode("[document 1]")
    assert p.prefix_ids[s:e] == b.encode(" star\nA star is a ball of plasma")
    assert p.n_tokens[0] == e - s
    late = b.encode(LATE_IE) + b.encode("\n\n") + b.encode("Query:")
    assert p.query_ids == late + b.encode(" what is a star") + b.tail[:tail_in_span]
    assert p.rest_ids == b.tail[tail_in_span:] and len(b.tail) > tail_in_span
    assert p.na_ids == late + b.encode(" N/A") + b.tail[:tail_in_span]


def test_selective_qwen_query_only_span():
    """Selective-ICR on Qwen: the query span is ' {q}' only (icr/src/in_context_reranker.py:791-792, :806-815); the
    late instruction and 'Query:' sit in the prefix both prompts share, the wrapper's suffix after the span."""
    b = builder("selective-icr", "qwen")
    p = b.build(QUERY, DOCS, qid="q")
    assert p.query_ids == b.encode(" what is a star") and p.na_ids == b.encode(" N/A")
    late = b.encode(LATE_IE) + b.encode(" \n\n") + b.encode("Query:")
    assert p.prefix_ids[-len(late):] == late
    assert p.rest_ids == b.encode("<|im_end|>\n<|im_start|>assistant\n")
    assert b.head == b.encode("<|im_start|>user\n")  # no BOS: Qwen's tokenizer adds none (:136-137)


def test_empty_document_body_span():
    """A body span of an empty document is empty (it owns no marker tokens); a block span keeps the marker."""
    for protocol, order in (("core", "retrieval"), ("icr", "reversed")):
        b = builder(protocol, "llama", order=order)
        p = b.build(QUERY, ["", "moon"], qid="q")
        assert p.n_tokens[0] == (0 if protocol == "core" else len(b.encode("[2]" if order == "reversed" else "[1]")))


def _documented_deviations() -> dict[str, set[str]]:
    """{row: keys} from the table "Deviations left in config/paper.yaml" of docs/protocols.md."""
    import re

    text = (Path(__file__).parents[1] / "docs" / "protocols.md").read_text()
    section = text.split("## Deviations left in config/paper.yaml", 1)[1].split("\n## ", 1)[0]
    out: dict[str, set[str]] = {}
    for line in section.splitlines():
        m = re.match(r"\| `([\w-]+)` \| (.+?) \|", line)
        if m:
            out.setdefault(m.group(1), set()).update(re.findall(r"`([\w.]+)`", m.group(2)))
    return out


def test_paper_own_protocol_rows_deviate_only_as_documented():
    """Must-show 2: every own-protocol row of config/paper.yaml, on every model and evaluation dataset, with the
    prompt its attention pass uses, deviates from its paper only in keys docs/protocols.md lists (icr, selective:
    none)."""
    import yaml

    from attnrank.plan import Plan

    plan = Plan(yaml.safe_load((Path(__file__).parents[1] / "config" / "paper.yaml").read_text()))
    cfg, documented = plan.cfg, _documented_deviations()
    assert set(documented) == {"core", "qrhead"}
    seen: dict[str, set[str]] = {}
    for row in ("icr", "qrhead", "core", "selective"):
        spec = cfg["methods"][row]
        assert spec["protocol"] == {"selective": "selective-icr"}.get(row, row)
        for model in cfg["models"]:
            for dataset in plan.eval_datasets():
                for order in plan.method_orders(row):
                    for clist in plan.method_lists(row):  # the candidate lists it re-ranks (its own or shared)
                        grid = plan.protocol_grid(row, model, dataset, clist)
                        dev = protocols.deviations(spec["protocol"], grid, clist,
                                                   prompt=plan.prompt_cfg(order, model, dataset, clist=clist),
                                                   model_id=grid["model_id"], dataset=grid["dataset_name"],
                                                   method=spec)
                        assert not any(d.startswith("not comparable") for d in dev), (row, model, dataset, dev)
                        seen.setdefault(row, set()).update(d.split(":")[0] for d in dev)
    assert seen["icr"] == seen["selective"] == set()
    for row in ("core", "qrhead"):
        assert seen[row] <= documented[row], (row, seen[row] - documented[row])
    # the table documents nothing that does not occur (it goes stale when a deviation is fixed)
    # and a method setting changed away from the paper is caught too (the entry wins in expand, not silently)
    g = plan.protocol_grid("core", "llama-3.1-8b", "scifact", "granite-40")
    dev = protocols.deviations("core", g, "granite-40",
                               prompt=plan.prompt_cfg("retrieval", "llama-3.1-8b", "scifact", clist="granite-40"),
                               model_id=g["model_id"], dataset="scifact", method={**cfg["methods"]["core"], "k_heads": 16})
    assert "k_heads: paper 8, here 16" in dev
    assert seen["core"] == documented["core"] and seen["qrhead"] == documented["qrhead"]


def test_paper_passes_take_the_presets_prompts():
    """paper.yaml: the retrieval-order pass is CoRe's alone, so it (and CoRe's detection) uses CoRe's prompt; the
    reversed pass uses the shared (ICR) prompt; Mistral is v0.2 (the references' version) and qr-mass has 8 heads."""
    import yaml

    from attnrank.plan import Plan

    plan = Plan(yaml.safe_load((Path(__file__).parents[1] / "config" / "paper.yaml").read_text()))
    assert plan.pass_protocol("retrieval") == "core" and plan.pass_protocol("reversed") == "shared"
    core = plan.prompt_cfg("retrieval", "llama-3.1-8b", "nq-train")
    assert (core["marker"], core["doc_span"], core["query_span"], core["query_tail_tokens"]) == ("[document {i}]", "body", "late", 1)
    shared = plan.prompt_cfg("reversed", "mistral-7b", "touche2020")
    assert shared["late_instruction"] == LATE_QA and shared["role_prefix"] == "[INST]" and shared["separator"] == "\n\n"
    assert plan.prompt_cfg("reversed", "qwen3-0.6b", "scifact")["query_span"] == "query"
    assert plan.cfg["models"]["mistral-7b"]["id"] == "mistralai/Mistral-7B-Instruct-v0.2"
    assert plan.cfg["methods"]["qr-mass"]["k_heads"] == 8
    text = (Path(__file__).parents[1] / "config" / "paper.yaml").read_text()
    assert text.count("\nmodels:") == 1  # PyYAML keeps only the last of two keys


def test_word_cut_is_the_references_cut():
    """The body is cut with split(' ') (ICR experiments.py:218, QRHead run_retrieval.py:67, CoRe reranking.py:86):
    a newline does not split a word, the title is not counted and is prepended after the cut."""
    import polars as pl

    from attnrank.data.sources import Dataset
    from attnrank.retrieval.candidates import build, truncate_words

    assert truncate_words("a b\nc d e", 2) == "a b\nc"  # 'b\nc' is one word for split(' ')
    assert truncate_words("a  b c", 2) == "a "  # two spaces: an empty word, as the references count it
    assert truncate_words("a b", None) == "a b"
    ds = Dataset(corpus=pl.DataFrame({"docid": ["d1"], "title": ["The Title"], "text": ["one two three four"]}),
                 queries=pl.DataFrame({"qid": ["q1"], "text": ["q"]}),
                 qrels=pl.DataFrame({"qid": ["q1"], "docid": ["d1"], "relevance": [1]}))
    run = pl.DataFrame({"qid": ["q1"], "docid": ["d1"], "rank": [1], "score": [1.0]})
    cands, meta = build(ds, run, 10, 2)
    assert cands["text"].to_list() == ["The Title\none two"] and meta["max_doc_words"] == 2


def test_table_captions_name_the_deviations(tmp_path):
    """The rerank sidecars' protocol_deviations reach the captions of the LaTeX tables (keys per row)."""
    import json

    import numpy as np
    import polars as pl

    from attnrank.evaluation import tables

    side = {}
    for method, dev in (("core", ["depth: paper 40, here 100", "doc_title: paper False, here True"]), ("icr", []),
                        ("yesno", None)):
        path = tmp_path / f"{method}.json"
        path.write_text(json.dumps({"protocol": "core" if method == "core" else ("icr" if dev is not None else None),
                                    "protocol_deviations": dev or []}))
        side[str(path)] = {"dataset": "d", "retriever": "bm25", "model": "m", "method": method}
    keys = tables.protocol_deviation_keys(side)
    assert keys == {"core": ["depth", "doc_title"], "icr": []}
    rng = np.random.default_rng(0)
    rows = [{"qid": f"q{i}", "metric": "ndcg@10", "value": float(v), "dataset": "d", "retriever": r, "model": m,
             "method": meth}
            for r, m, meth in (("bm25", "-", "bm25"), ("bm25", "m", "core"), ("bm25", "m", "icr"))
            for i, v in enumerate(rng.uniform(0, 1, 10))]
    res = tables.results_frame(pl.DataFrame(rows), "first_stage")
    tex = tables.metric_table(res, "ndcg@10", deviations=keys)
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption"))
    assert r"core: depth, doc\_title; icr: none" in caption
    assert "paper-protocol rows differ" not in tables.metric_table(res, "ndcg@10")


SPAN_CFGS = [
    # the engine's query rows are the query span; the tokens after it (rest_ids) are never fed
    {"role_prefix": "<|im_start|>user\n", "role_suffix": "<|im_end|>\n<|im_start|>assistant\n", "query_span": "query",
     "separator": " \n\n", "instruction": " Here are some paragraphs:"},
    {"role_prefix": "<|im_start|>user\n", "role_suffix": "<|im_end|>\n<|im_start|>assistant\n", "query_span": "late",
     "query_tail_tokens": 1, "marker": "[document {i}]", "doc_span": "body"},
]


@pytest.mark.parametrize("cfg", SPAN_CFGS, ids=["query-only", "late+1"])
def test_engine_on_preset_spans_equals_full_prompt_oracle(tiny_llama, cfg):
    """Causality makes the short suffix exact: the engine (query span only, prefix reused) equals an eager pass over
    the whole rendered prompt (``text_ids``, the template tail included) averaging the query span's rows."""
    import numpy as np
    import torch

    from attnrank.attention.capture import attn_implementation
    from attnrank.attention.engine import QueryInput, Scorer
    from attnrank.attention.prompts import PromptBuilder

    model, tok = tiny_llama
    cfg = {**cfg, "order": "reversed"}
    item = QueryInput("q1", "planet star orbit", ["d1", "d2", "d3"],
                      ["planet star comet the moon orbit of a galaxy", "bank loan interest and the market", ""])
    got = Scorer(model, tok, cfg).score([item])[0]
    p = PromptBuilder(tok, cfg).build(item.query, list(item.texts), item.qid)
    assert p.rest_ids  # there is a tail after the span, and the engine did not need it
    pl_ = len(p.prefix_ids)
    with torch.inference_mode(), attn_implementation(model, "eager"):
        for calib, have in ((False, got.raw), (True, got.na)):
            ids = p.text_ids(calibration=calib)
            span = len(p.na_ids if calib else p.query_ids)
            out = model(input_ids=torch.tensor([ids]), output_attentions=True, use_cache=False)
            att = torch.stack([a[0, :, pl_:pl_ + span, :].float().mean(1) for a in out.attentions])  # [L, H, T]
            want = np.stack([att[:, :, s:e].sum(-1).numpy() for s, e in p.doc_spans], -1)
            np.testing.assert_allclose(have, want, atol=1e-5, rtol=0)
    assert got.n_tokens.tolist() == [e - s for s, e in p.doc_spans]
