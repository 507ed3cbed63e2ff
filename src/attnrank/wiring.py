"""Helpers for the thin workflow scripts: logging to the rule's log file, and progress settings."""

from __future__ import annotations

import logging
import os
import sys
import warnings


def setup(log_path: str | None = None, cache_dir: str | None = None) -> logging.Logger:
    """Log INFO and above to ``log_path`` (the rule's ``log:``) and to stderr; set shared cache folders."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True)
    warnings.filterwarnings("ignore", module="ranx")
    warnings.filterwarnings("ignore", category=FutureWarning)
    if cache_dir:
        os.environ.setdefault("ATTNRANK_CACHE", os.path.abspath(cache_dir))
        os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.abspath(cache_dir), "numba"))
    return logging.getLogger("attnrank")
