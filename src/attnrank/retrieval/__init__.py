"""First stage: BM25 (pyserini), dense encoders, the run and the candidates handed to the re-rankers (rule file workflow/rules/retrieval.smk)."""
