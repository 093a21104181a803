#!/usr/bin/env bash
# Create the reference environment the `reference` tests compare robustlab with (never a robustlab dependency).
#
#   scripts/reference-env.sh PATH        # e.g. scripts/reference-env.sh ../ref-venv
#
# PATH gets a virtualenv holding torch==2.13.0 (the same build robustlab's own venv uses, from the configured index),
# numpy, pyautoattack==0.2.0 (fra31/auto-attack repackaged, algorithm-identical; the attack comparisons) and
# kornia==0.9.0 (the transforms comparison, tests/reference/test_kornia_reference.py). Both are installed --no-deps
# from their wheels, whose sha256 pip verifies (--require-hashes). pip's hash-checking mode covers every package of
# an install, dependencies included, so hashes cannot be mixed with unpinned dependencies in one call: kornia's
# dependencies (kornia_rs; numpy and torch are already there) are installed plainly first, then the two hash-pinned
# wheels. The tests find the environment through ROBUSTLAB_REF_PYTHON (default: <repo>/../ref-venv/bin/python) and
# skip, saying why, when it is absent (the kornia comparison also when kornia is missing from it).
# Environment: PYTHON (the interpreter that creates the venv, default python3).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 PATH   (creates a virtualenv at PATH with torch==2.13.0, pyautoattack==0.2.0 and kornia==0.9.0)" >&2
  exit 2
fi
dest=$1
python=${PYTHON:-python3}
pyautoattack_sha256=ce84de323b52ca109949d07a9df8e2f1072a8742bd951a020a678259f93f652d
kornia_sha256=7a1632fe004a305c94f2b979fc6ab4df26e01f925e74bdb9f8b8a03a1229caaf

"$python" -m venv "$dest"
pip=("$dest/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0 numpy
# kornia 0.9.0's dependencies besides torch and numpy (its wheel's Requires-Dist: kornia-rs>=0.2.0)
"${pip[@]}" kornia_rs==0.2.0

req=$(mktemp)
trap 'rm -f "$req"' EXIT
{
  echo "pyautoattack==0.2.0 --hash=sha256:$pyautoattack_sha256"
  echo "kornia==0.9.0 --hash=sha256:$kornia_sha256"
} >"$req"
"${pip[@]}" --no-deps --require-hashes --only-binary=:all: -r "$req"

"$dest/bin/python" -c "import kornia, pyautoattack, torch; print('reference env ready:', torch.__version__, pyautoattack.__file__, 'kornia', kornia.__version__)"
