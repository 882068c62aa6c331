#!/bin/sh
# Same steps as `make run`: make sure a model exists in the data volume (the image's default
# unless one was brought), index the bundled samples once, then serve (`python -m app`, which
# refuses to bind 0.0.0.0 without SIMSEARCH_API_KEYS or SIMSEARCH_ALLOW_UNAUTHENTICATED=true).
set -eu
DATA="${SIMSEARCH_DATA_DIR:-/data}"
if [ -z "${SIMSEARCH_MODEL_DIR:-}" ] && [ ! -f "$DATA/model/model_meta.json" ]; then
  echo "no model in $DATA/model: installing the image's default model (GET /health describes it)"
  mkdir -p "$DATA/model"
  cp /opt/simsearch/default-model/model.onnx /opt/simsearch/default-model/model_meta.json "$DATA/model/"
fi
if [ "${SIMSEARCH_INDEX_SAMPLES:-1}" = "1" ] && [ ! -d "$DATA/store" ]; then
  python -m workbench.build_index samples --data-dir "$DATA"
fi
exec "$@"
