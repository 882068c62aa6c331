#!/usr/bin/env bash
# Fills docker/build-inputs/ (see its README) from this machine's pip configuration:
#   - the torch CPU wheel that `pip download torch==$TORCH_VERSION` resolves to here (a local
#     wheel folder or index in pip's configuration; TORCH_INDEX_URL=... names an index, e.g.
#     https://download.pytorch.org/whl/cpu), for the image's model-export stage. The build
#     needs it wherever the PyTorch index cannot be reached from inside the build;
#   - with CA_BUNDLE=/path/to/bundle.crt, that bundle as the build's pip CA bundle.
#
#   docker/build_inputs.sh
#   CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt docker/build_inputs.sh
#
# Needs only a Python with pip (the project's .venv when there is one, else python3;
# PYTHON=... picks another): it works on a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
DEST=docker/build-inputs

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if ls "$DEST"/torch-"$TORCH_VERSION"*.whl >/dev/null 2>&1; then
  echo "torch wheel present: $(ls "$DEST"/torch-"$TORCH_VERSION"*.whl)"
else
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "needs a Python with pip to download the torch wheel: '$PYTHON -m pip' does not run" >&2
    echo "(apt-get install python3-pip, or PYTHON=/path/to/python $0)" >&2
    exit 1
  fi
  index=()
  if [ -n "${TORCH_INDEX_URL:-}" ]; then index=(--index-url "$TORCH_INDEX_URL"); fi
  # --no-deps: the build stage resolves torch's small pure-Python dependencies from PyPI.
  if ! "$PYTHON" -m pip download "torch==$TORCH_VERSION" --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$DEST" "${index[@]}"; then
    echo "could not download torch==$TORCH_VERSION with $PYTHON's pip configuration;" \
      "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu $0 names the PyTorch CPU index," \
      "or copy a torch-$TORCH_VERSION CPU wheel (cp311, manylinux x86_64) into $DEST/" >&2
    exit 1
  fi
fi
if [ -n "${CA_BUNDLE:-}" ]; then
  cp "$CA_BUNDLE" "$DEST/ca-certificates.crt"
  echo "CA bundle: $CA_BUNDLE -> $DEST/ca-certificates.crt"
fi
ls -l "$DEST"
