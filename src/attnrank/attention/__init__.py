"""Attention: prompts, the capturing engine, per-query score tensors and their cache, the aggregation methods over them and the attention re-ranking run (rule file workflow/rules/attention.smk)."""
