#!/usr/bin/env bash
# Install wrk and create the peers' venvs (idempotent), with the dev venv's scikit-learn so joblib files load.
set -euo pipefail
cd "$(dirname "$0")"
# wrk drives the REST rows; Debian packages it.
command -v wrk >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -q wrk >/dev/null; } || {
  echo "install wrk (apt-get install wrk) and run again" >&2; exit 1; }
sk=$(../.venv/bin/python -c "import sklearn; print(sklearn.__version__)")
[ -x .venvs/kserve/bin/python ] || { python3 -m venv .venvs/kserve; .venvs/kserve/bin/pip install -q kserve "scikit-learn==$sk" joblib; }
[ -x .venvs/mlserver/bin/mlserver ] || { python3 -m venv .venvs/mlserver; .venvs/mlserver/bin/pip install -q mlserver mlserver-sklearn "scikit-learn==$sk"; }
