#!/usr/bin/env bash
# Create the reference environment the `reference` tests compare robustlab with (never a robustlab dependency).
#
#   scripts/reference-env.sh PATH        # e.g. scripts/reference-env.sh ../ref-venv
#
# PATH gets a virtualenv holding torch==2.13.0 (the same build robustlab's own venv uses, from the configured index),
# numpy, and pyautoattack==0.2.0 (fra31/auto-attack repackaged, algorithm-identical) installed --no-deps from its
# wheel, whose sha256 pip verifies (--require-hashes). The tests find it through ROBUSTLAB_REF_PYTHON
# (default: <repo>/../ref-venv/bin/python) and skip, saying why, when it is absent.
# Environment: PYTHON (the interpreter that creates the venv, default python3).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 PATH   (creates a virtualenv at PATH with torch==2.13.0 and pyautoattack==0.2.0)" >&2
  exit 2
fi
dest=$1
python=${PYTHON:-python3}
pyautoattack_sha256=ce84de323b52ca109949d07a9df8e2f1072a8742bd951a020a678259f93f652d

"$python" -m venv "$dest"
pip=("$dest/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0 numpy

req=$(mktemp)
trap 'rm -f "$req"' EXIT
echo "pyautoattack==0.2.0 --hash=sha256:$pyautoattack_sha256" >"$req"
"${pip[@]}" --no-deps --require-hashes --only-binary=:all: -r "$req"

"$dest/bin/python" -c "import pyautoattack, torch; print('reference env ready:', torch.__version__, pyautoattack.__file__)"
