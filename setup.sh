#!/usr/bin/env bash
# Install attnrank with its dependencies and test tools into .venv (created when missing); used by the README
# and by CI. TORCH is the torch requirement: default the CPU build torch==2.13.0; on a GPU cluster set e.g.
# TORCH=torch to let pip pick your CUDA build. uv resolves the rest and keeps the torch installed here.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q "${TORCH:-torch==2.13.0}" uv
.venv/bin/python -m uv pip install -q --python .venv/bin/python -e '.[dev]'
