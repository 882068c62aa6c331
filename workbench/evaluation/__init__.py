"""Evaluation: the revisitop backends and pipeline, the copy-verdict and near-duplicate fits."""
