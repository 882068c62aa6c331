#!/usr/bin/env bash
# Fills docker/build-inputs/ (see its README) from this machine's pip configuration:
#   - the torch CPU wheel that `pip install torch==$TORCH_VERSION` resolves to here (a local
#     wheel folder or index in pip's configuration), for the image's model-export stage;
#   - with CA_BUNDLE=/path/to/bundle.crt, that bundle as the build's pip CA bundle.
#
#   scripts/docker_build_inputs.sh
#   CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt scripts/docker_build_inputs.sh
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
PYTHON="${PYTHON:-.venv/bin/python}"
DEST=docker/build-inputs

if ls "$DEST"/torch-"$TORCH_VERSION"*.whl >/dev/null 2>&1; then
  echo "torch wheel present: $(ls "$DEST"/torch-"$TORCH_VERSION"*.whl)"
else
  # --no-deps: the build stage resolves torch's small pure-Python dependencies from PyPI.
  "$PYTHON" -m pip download "torch==$TORCH_VERSION" --no-deps --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_28_x86_64 -d "$DEST"
fi
if [ -n "${CA_BUNDLE:-}" ]; then
  cp "$CA_BUNDLE" "$DEST/ca-certificates.crt"
  echo "CA bundle: $CA_BUNDLE -> $DEST/ca-certificates.crt"
fi
ls -l "$DEST"
