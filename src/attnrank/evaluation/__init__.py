"""Evaluation: ranx metrics, significance, tables, the framework x mechanism grid, latency, report, figures (rule files workflow/rules/evaluate.smk, latency.smk, plots.smk)."""
