"""Build the shipped Cranfield subset (BEIR layout) from the original Cranfield 1400 files.

Usage: python data/cranfield/make_subset.py SRC_DIR [OUT_DIR]
SRC_DIR holds cran.all.1400, cran.qry and cranqrel (the classic distribution). Deterministic (seed 0).
"""

import json
import random
import re
import sys
from pathlib import Path

N_TRAIN, N_TEST, N_DOCS, MIN_POSITIVES, SEED = 25, 50, 500, 5, 0


def fields(text: str) -> list[dict]:
    """Split a SMART-format file into records: {'I': id, 'T': ..., 'W': ...}."""
    records = []
    for block in re.split(r"^\.I ", text, flags=re.M)[1:]:
        head, *rest = block.split("\n", 1)
        rec, key = {"I": head.strip()}, None
        for line in (rest[0] if rest else "").splitlines():
            m = re.match(r"^\.([TABW])\s*$", line)
            if m:
                key = m.group(1)
                rec[key] = ""
            elif key:
                rec[key] += line.strip() + " "
        records.append({k: " ".join(v.split()) if k != "I" else v for k, v in rec.items()})
    return records


def main(src: Path, out: Path) -> None:
    docs = {r["I"]: r for r in fields((src / "cran.all.1400").read_text())}
    # cran.qry numbers its queries 001, 002, 004, ...; cranqrel numbers them 1..225 in file order.
    queries = {str(i + 1): r.get("W", "") for i, r in enumerate(fields((src / "cran.qry").read_text()))}
    qrels = {}
    for line in (src / "cranqrel").read_text().split("\n"):
        parts = line.split()
        if len(parts) == 3 and parts[1] in docs and 1 <= int(parts[2]) <= 4:
            qrels.setdefault(parts[0], {})[parts[1]] = 5 - int(parts[2])  # Cleverdon code 1 (complete answer) -> gain 4
    eligible = sorted((q for q, rel in qrels.items() if len(rel) >= MIN_POSITIVES), key=int)
    rng = random.Random(SEED)
    rng.shuffle(eligible)
    split = {"train": eligible[:N_TRAIN], "test": eligible[N_TRAIN : N_TRAIN + N_TEST]}
    keep = {d for qs in split.values() for q in qs for d in qrels[q]}
    others = sorted(set(docs) - keep, key=int)
    keep |= set(rng.sample(others, max(0, N_DOCS - len(keep))))
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    with open(out / "corpus.jsonl", "w") as f:
        for d in sorted(keep, key=int):
            title, text = docs[d].get("T", ""), docs[d].get("W", "")
            if text.startswith(title):  # the abstract field repeats the title
                text = text[len(title) :].strip()
            f.write(json.dumps({"_id": d, "title": title, "text": text}) + "\n")
    with open(out / "queries.jsonl", "w") as f:
        for q in sorted(split["train"] + split["test"], key=int):
            f.write(json.dumps({"_id": q, "text": queries[q]}) + "\n")
    for name, qs in split.items():
        with open(out / "qrels" / f"{name}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for q in sorted(qs, key=int):
                for d, g in sorted(qrels[q].items(), key=lambda x: int(x[0])):
                    f.write(f"{q}\t{d}\t{g}\n")
    print(f"{len(keep)} documents, {len(split['train'])} train / {len(split['test'])} test queries")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent)
