"""Score cache: format, equality with direct scoring, resume after a kill, invalidation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from attnrank.attention.engine import Scorer, iter_candidates
from attnrank.errors import InputError
from attnrank.attention.scorecache import compute_cache, iter_scores, load_scores, read_manifest

WORDS = "planet star orbit recipe oven flour bank loan whale coral reef court judge the of and".split()


def make_candidates(n_queries: int = 5) -> pl.DataFrame:
    rows = []
    for q in range(n_queries):
        k = 2 + q % 3  # k varies: 2, 3, 4
        for r in range(k):
            text = " ".join(WORDS[(q * 3 + r * 5 + i) % len(WORDS)] for i in range(4 + r))
            rows.append((f"q{q}", " ".join(WORDS[q : q + 2]), f"d{q}-{r}", r + 1, 10.0 - r, text))
    # rows out of rank order: the cache sorts by rank
    rows.reverse()
    rows.sort(key=lambda x: x[0])
    return pl.DataFrame(rows, schema=["qid", "query", "docid", "rank", "score", "text"], orient="row")


class Killed(RuntimeError):
    pass


def assert_same_scores(a, b):
    assert [s.qid for s in a] == [s.qid for s in b]
    for x, y in zip(a, b):
        assert x.docids == y.docids
        for name in ("raw", "na", "masked_prefix", "positions", "n_tokens"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))


def test_cache_equals_direct_scoring(tmp_path, tiny_llama, tiny_llama_dir):
    cands = make_candidates()
    out = compute_cache(tiny_llama_dir, cands, tmp_path / "c", {"order": "reversed"}, layers=2, shard_size=2)
    man = read_manifest(out)
    assert man["shards"] == ["shard-00000.npz", "shard-00001.npz", "shard-00002.npz"]
    assert (man["n_layers"], man["n_heads"], man["layers"], man["n_queries"]) == (2, 4, 2, 5)
    cached = load_scores(out)
    model, tok = tiny_llama
    direct = Scorer(model, tok, {"order": "reversed"}, layers=2).score(list(iter_candidates(cands)))
    assert_same_scores(cached, direct)
    assert [len(s.docids) for s in cached] == [2, 3, 4, 2, 3]
    assert cached[1].docids == ["d1-0", "d1-1", "d1-2"]  # rank order
    with np.load(out / "shard-00000.npz") as z:
        assert z["raw"].shape == (2, 2, 4, 3) and np.isnan(z["raw"][0, :, :, 2]).all()


def test_resume_after_kill(tmp_path, tiny_llama_dir):
    cands = make_candidates()
    ref = load_scores(compute_cache(tiny_llama_dir, cands, tmp_path / "ref", {}, shard_size=2, progress=False))

    def kill(i, path):
        if i == 0:
            raise Killed

    out = tmp_path / "c"
    with pytest.raises(Killed):
        compute_cache(tiny_llama_dir, cands, out, {}, shard_size=2, on_shard=kill, progress=False)
    assert (out / "shard-00000.npz").is_file() and not (out / "manifest.json").exists()
    with pytest.raises(InputError, match="incomplete"):
        list(iter_scores(out))
    written = []
    compute_cache(tiny_llama_dir, cands, out, {}, shard_size=2, on_shard=lambda i, p: written.append(i), progress=False)
    assert written == [1, 2]  # shard 0 was kept
    assert_same_scores(load_scores(out), ref)


def test_complete_cache_is_skipped_and_config_change_recomputes(tmp_path, tiny_llama_dir, monkeypatch):
    cands = make_candidates(3)
    out = compute_cache(tiny_llama_dir, cands, tmp_path / "c", {}, shard_size=2, progress=False)
    h1 = read_manifest(out)["config_hash"]
    import attnrank.models

    def boom(*a, **k):
        raise AssertionError("model loaded although the cache is complete")

    monkeypatch.setattr(attnrank.models, "load_model", boom)
    compute_cache(tiny_llama_dir, cands, out, {}, shard_size=2, progress=False)
    monkeypatch.undo()
    written = []
    compute_cache(tiny_llama_dir, cands, out, {"order": "reversed"}, shard_size=2, progress=False,
                  on_shard=lambda i, p: written.append(i))
    assert written == [0, 1] and read_manifest(out)["config_hash"] != h1
    assert json.loads((out / "manifest.json").read_text())["prompt"]["order"] == "reversed"
    # fewer queries: stale shards are removed
    compute_cache(tiny_llama_dir, cands.filter(pl.col("qid") == "q0"), out, {}, shard_size=2, progress=False)
    assert sorted(p.name for p in out.glob("shard-*.npz")) == ["shard-00000.npz"]


def test_bad_candidates(tmp_path, tiny_llama_dir):
    with pytest.raises(InputError, match="missing column"):
        compute_cache(tiny_llama_dir, make_candidates().drop("text"), tmp_path / "c")


def test_shards_written_by_other_code_are_discarded(tmp_path, tiny_llama_dir, monkeypatch, caplog):
    """A cache (even an unfinished one) from other engine code is recomputed, never reused; same code is kept."""
    import logging

    import attnrank.models
    from attnrank.attention import scorecache

    cands = make_candidates()
    out = tmp_path / "c"

    def kill(i, path):
        if i == 1:
            raise Killed

    with pytest.raises(Killed):  # an unfinished cache: shards 0 and 1 written
        compute_cache(tiny_llama_dir, cands, out, {}, shard_size=2, on_shard=kill, progress=False)
    old = {p.name: p.read_bytes() for p in out.glob("shard-*.npz")}
    assert sorted(old) == ["shard-00000.npz", "shard-00001.npz"]
    monkeypatch.setattr(scorecache, "engine_code_hash", lambda: "other-code")
    written = []
    with caplog.at_level(logging.INFO, logger="attnrank.attention.scorecache"):
        compute_cache(tiny_llama_dir, cands, out, {}, shard_size=2, on_shard=lambda i, p: written.append(i), progress=False)
    assert written == [0, 1, 2]
    assert "2 of 3 shards discarded: written by other code" in caplog.text and "kept" not in caplog.text
    man = read_manifest(out)
    assert man["code_hash"] == "other-code"
    with np.load(out / "shard-00000.npz") as z:
        assert str(z["code_hash"]) == "other-code"
    # same code again: complete, nothing recomputed, the model is not even loaded
    monkeypatch.setattr(attnrank.models, "load_model", lambda *a, **k: pytest.fail("model loaded for a complete cache"))
    compute_cache(tiny_llama_dir, cands, out, {}, shard_size=2, progress=False)
    assert read_manifest(out)["config_hash"] == man["config_hash"]


def test_engine_code_hash_follows_the_modules_the_attention_pass_runs(tmp_path):
    import shutil

    from attnrank import codehash, models
    from attnrank.attention import engine, methods, prompts, scorecache
    from attnrank.evaluation import tables

    root = Path(codehash.__file__).parent
    pkg = tmp_path / "attnrank"
    shutil.copytree(root, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    base = scorecache.engine_code_hash(pkg)
    for mod, changes in [(engine, True), (models, True), (prompts, True), (scorecache, True), (tables, False), (methods, False)]:
        path, name = pkg / Path(mod.__file__).relative_to(root), mod.__name__
        text = path.read_text()
        path.write_text(text + "\n# a comment\n")
        assert scorecache.engine_code_hash(pkg) == base, name
        path.write_text(text + "\n_code_probe = 1\n")
        assert (scorecache.engine_code_hash(pkg) != base) == changes, name
        path.write_text(text)
