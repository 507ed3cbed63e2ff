"""Dense first stage benchmark: chunked exact top-k vs a full score matrix, and encoder throughput (CPU).

    python bench/bench_dense.py [--docs 200000] [--queries 1000] [--dim 384] [--k 100] [--encode-docs 256]

Peak memory is the largest resident-set growth above the level before each call, sampled every millisecond by a
background thread (the large torch buffers go back to the OS when freed, so each call starts from the same level).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from attnrank.retrieval import dense

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def measure(fn):
    """Run ``fn()``; return (result, seconds, peak RSS growth in bytes)."""
    base, peak, stop = _rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    stop.set()
    t.join()
    return out, dt, max(peak[0], _rss()) - base


def naive_sort(d: torch.Tensor, q: torch.Tensor, k: int):
    scores = q @ d.T  # [Nq, N] at once
    values, index = torch.sort(scores, dim=1, descending=True, stable=True)
    return values[:, :k].clone(), index[:, :k].clone()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--chunk-size", type=int, default=32768)
    ap.add_argument("--encode-docs", type=int, default=256, help="documents for the encoder throughput (0: skip)")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")

    rng = np.random.default_rng(0)
    d = rng.standard_normal((a.docs, a.dim), dtype=np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    q = rng.standard_normal((a.queries, a.dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    dt_, qt = torch.from_numpy(d), torch.from_numpy(q)

    (cs, ci), t_chunk, m_chunk = measure(lambda: dense.topk_inner_product(d, q, a.k, chunk_size=a.chunk_size, device="cpu"))
    (ns, ni), t_naive, m_naive = measure(lambda: naive_sort(dt_, qt, a.k))
    same = np.array_equal(ci, ni.numpy())
    print(f"top-{a.k} of {a.queries} queries x {a.docs} docs x {a.dim} dims")
    print(f"  chunked top-k (chunk {a.chunk_size}): {t_chunk:7.2f} s  peak +{m_chunk / 2**20:8.1f} MiB")
    print(f"  full matrix + sort:          {t_naive:7.2f} s  peak +{m_naive / 2**20:8.1f} MiB")
    print(f"  time ratio naive/chunked {t_naive / t_chunk:.2f}x, peak memory ratio {m_naive / max(m_chunk, 1):.1f}x; "
          f"same doc ids: {same}, max |score diff| {np.abs(cs - ns.numpy()).max():.2e}")

    if a.encode_docs:
        from attnrank.data.synthetic import make_collection

        with tempfile.TemporaryDirectory() as tmp:
            make_collection(tmp, n_docs=a.encode_docs, n_queries=12, doc_words=(120, 220))
            import polars as pl

            texts = pl.read_ndjson(f"{tmp}/corpus.jsonl")["text"].to_list()
        enc = dense.Encoder(dense.EncoderSpec.from_dict({"model": "all-MiniLM-L6-v2"}), device="cpu")
        enc.encode(texts[:64])  # warm-up
        n_tok = sum(min(len(x), enc.max_length) for x in enc.tokenizer(texts)["input_ids"])
        _, t_enc, _ = measure(lambda: enc.encode(texts))
        print(f"encoder all-MiniLM-L6-v2 on cpu: {len(texts)} docs ({n_tok / len(texts):.0f} tokens avg) in {t_enc:.1f} s "
              f"= {len(texts) / t_enc:.1f} docs/s, {n_tok / t_enc:.0f} tokens/s")


if __name__ == "__main__":
    main()
