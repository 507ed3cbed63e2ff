"""A deterministic tiny test collection (BEIR layout) for the demo and the tests.

Topics are small sets of real English words; documents mix words of one topic (a quarter also of a second topic)
with filler words; a query is two words of its topic plus one distractor word of another topic. Relevance is graded:
2 when a document of the query's topic contains both topic words of the query, 1 for the other documents of that
topic. Judged queries are split alternately into train and
test, as in ../shared/data/cisi. Same seed, same files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = {
    "astronomy": "planet star orbit telescope galaxy comet moon solar eclipse nebula asteroid gravity",
    "cooking": "recipe oven flour butter sugar bake dough sauce garlic onion pepper kitchen",
    "medicine": "patient doctor disease vaccine therapy hospital symptom dose clinical virus immune drug",
    "finance": "bank loan interest market stock bond investor credit inflation budget profit tax",
    "sports": "football match goal team player coach league score stadium referee season tournament",
    "music": "guitar piano melody concert song rhythm orchestra chord singer album violin tempo",
    "computing": "software compiler database network server algorithm memory processor code kernel cache query",
    "gardening": "soil seed garden flower compost tomato prune water sunlight root leaf harvest",
    "law": "court judge lawyer contract trial verdict statute appeal jury evidence rights witness",
    "ocean": "whale coral reef tide wave salt fish shark current diver marine island",
    "history": "empire king war treaty castle dynasty revolution ancient medieval army monarch colony",
    "library": "catalog book index librarian archive reader shelf journal citation abstract retrieval collection",
}
FILLER = (
    "the a of and to in is was for on that with as by this from are be it at or an which have has not "
    "study report new results method data paper research general work use also more these first between "
    "during after several often many most some"
).split()


def _sentence(rng: random.Random, topic_words: list[str], n: int, topic_share: float) -> str:
    words = [rng.choice(topic_words) if rng.random() < topic_share else rng.choice(FILLER) for _ in range(n)]
    return " ".join(words)


def make_collection(
    out_dir: str | Path,
    n_docs: int = 240,
    n_queries: int = 24,
    seed: int = 13,
    doc_words: tuple[int, int] = (25, 70),
) -> Path:
    """Write corpus.jsonl, queries.jsonl and qrels/{train,test}.tsv under ``out_dir``; return ``out_dir``."""
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    names = sorted(TOPICS)
    words = {t: TOPICS[t].split() for t in names}
    docs = []
    for i in range(n_docs):
        topic = names[i % len(names)]
        # a quarter of the documents mix in a second topic: harder negatives for the re-rankers
        mix = words[topic] + (words[rng.choice(names)] if rng.random() < 0.25 else [])
        n = rng.randint(*doc_words)
        docs.append(
            {
                "_id": f"d{i:04d}",
                "title": f"{topic} {rng.choice(words[topic])}",
                "text": _sentence(rng, mix, n, topic_share=0.2),
                "topic": topic,
            }
        )
    queries, qrels = [], []
    for j in range(n_queries):
        topic = names[j % len(names)]
        # two words of the topic and one distractor from another topic: lexical matching alone is not enough
        other = names[(j + 1 + rng.randrange(len(names) - 1)) % len(names)]
        qwords = rng.sample(words[topic], 2) + [rng.choice(words[other])]
        qid = f"q{j:03d}"
        queries.append({"_id": qid, "text": " ".join(qwords)})
        for d in docs:
            if d["topic"] != topic:
                continue
            hits = sum(w in d["text"].split() for w in qwords[:2])
            qrels.append((qid, d["_id"], 2 if hits >= 2 else 1))
    with open(out / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d["_id"], "title": d["title"], "text": d["text"]}) + "\n")
    with open(out / "queries.jsonl", "w") as f:
        for q in queries:
            f.write(json.dumps(q) + "\n")
    order = [q["_id"] for q in queries]
    for split, keep in (("train", set(order[0::2])), ("test", set(order[1::2]))):
        with open(out / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, did, rel in qrels:
                if qid in keep:
                    f.write(f"{qid}\t{did}\t{rel}\n")
    return out
