#!/usr/bin/env bash
# Create the peers' venvs (idempotent), with the dev venv's scikit-learn so joblib files load.
set -euo pipefail
cd "$(dirname "$0")"
sk=$(../.venv/bin/python -c "import sklearn; print(sklearn.__version__)")
[ -x .venvs/kserve/bin/python ] || { python3 -m venv .venvs/kserve; .venvs/kserve/bin/pip install -q kserve "scikit-learn==$sk" joblib; }
[ -x .venvs/mlserver/bin/mlserver ] || { python3 -m venv .venvs/mlserver; .venvs/mlserver/bin/pip install -q mlserver mlserver-sklearn "scikit-learn==$sk"; }
