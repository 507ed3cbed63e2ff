"""attnrank: a benchmark of attention-based zero-shot LLM re-rankers.

All logic lives in this package; the Snakemake workflow only wires its functions together.
"""

__version__ = "0.1.0"
