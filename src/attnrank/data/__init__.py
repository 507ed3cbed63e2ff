"""Data: ir_datasets ids, local BEIR folders, BRIGHT and the synthetic collection, normalised to Parquet (rule file workflow/rules/data.smk)."""
