"""Training DOLG end to end (workbench/train.py): data, augmentation, loop, checkpoints, validation.

Modules, one concept each:
- `transforms`: the official pycls/DOLG augmentation (docs/ALGORITHMS.md 1.6) in torch/numpy/Pillow.
- `data`: GLDv2-style lists and class-per-folder trees, the train/val split, datasets, samplers
  and loaders.
- `schedule`: SGD and the per-epoch cosine schedule with linear warm-up.
- `network`: margin heads by name, `TrainNet` (descriptor network + head), initialisation.
- `checkpointing`: self-describing, resumable training checkpoints written atomically.
- `distributed`: torchrun / DDP process context.
- `validation`: classification accuracy on the val split, retrieval recall@1 / mAP.
- `progress`: running meters, the log line, CSV metric files.
- `config`: `TrainConfig`, every setting of a run (stored in each checkpoint).
- `engine`: `Trainer`, the loop that ties them together.
"""
