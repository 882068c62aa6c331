"""The official DOLG `model_state` key table, written out from docs/ALGORITHMS.md 2.2 / 2.3.

Deliberately independent of `models/`: it lists names and shapes as the spec states them, so
the tests compare our modules against the spec, not against themselves.
"""

from __future__ import annotations

import torch

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
BOTTLENECK = (64, 128, 256, 512)
OUT = (256, 512, 1024, 2048)
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{k}": (() if k == "num_batches_tracked" else (channels,)) for k in BN_KEYS}


def backbone_keys(depth: int, prefix: str = "") -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {f"{prefix}stem.conv.weight": (64, 3, 7, 7)}
    keys.update(_bn(f"{prefix}stem.bn", 64))
    w_in = 64
    for s, (d, w_b, w_out) in enumerate(zip(DEPTHS[depth], BOTTLENECK, OUT, strict=True), 1):
        for i in range(1, d + 1):
            block = f"{prefix}s{s}.b{i}"
            block_in = w_in if i == 1 else w_out
            if i == 1:
                keys[f"{block}.proj.weight"] = (w_out, block_in, 1, 1)
                keys.update(_bn(f"{block}.bn", w_out))
            keys[f"{block}.f.a.weight"] = (w_b, block_in, 1, 1)
            keys.update(_bn(f"{block}.f.a_bn", w_b))
            keys[f"{block}.f.b.weight"] = (w_b, w_b, 3, 3)
            keys.update(_bn(f"{block}.f.b_bn", w_b))
            keys[f"{block}.f.c.weight"] = (w_out, w_b, 1, 1)
            keys.update(_bn(f"{block}.f.c_bn", w_out))
        w_in = w_out
    return keys


def official_keys(depth: int, with_ma: bool = False, num_classes: int | None = None
                  ) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of an official model_state; with desc_cls.* when num_classes is given."""
    keys = {
        "pool_g.p": (1,),
        "fc_t.weight": (1024, 2048), "fc_t.bias": (1024,),
        "fc.weight": (512, 2048), "fc.bias": (512,),
        "localmodel.conv1.weight": (1024, 1024, 1, 1), "localmodel.conv1.bias": (1024,),
        "localmodel.conv2.weight": (1, 1024, 1, 1), "localmodel.conv2.bias": (1,),
    }
    keys.update(_bn("localmodel.bn", 1024))
    keys.update(backbone_keys(depth, "globalmodel."))
    if with_ma:
        for i in range(4):
            k = 1 if i == 0 else 3
            keys[f"localmodel.aspp.aspp.{i}.weight"] = (512, 1024, k, k)
            keys[f"localmodel.aspp.aspp.{i}.bias"] = (512,)
        keys["localmodel.aspp.im_pool.1.weight"] = (512, 1024, 1, 1)
        keys["localmodel.aspp.im_pool.1.bias"] = (512,)
        keys["localmodel.aspp.conv_after.0.weight"] = (1024, 2560, 1, 1)
        keys["localmodel.aspp.conv_after.0.bias"] = (1024,)
    if num_classes is not None:
        keys["desc_cls.weight"] = (num_classes, 512)
        keys["desc_cls.t"] = (1,)
    return keys


def random_state(keys: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Plausible random tensors for those keys (positive variances, small weights)."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in keys.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7, dtype=torch.long)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        elif name == "pool_g.p":
            state[name] = torch.tensor([2.8])
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.05
    return state


def cfcd_keys(depth: int, num_classes: int | None = None, dim: int = 512
              ) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of an official CFCD `model_s1_*.pyth` / `model_s2_*.pyth` model_state
    (docs/ALGORITHMS.md 2.6): the backbone, `fc`, BatchNorm1d `bn`; MadaCos `desc_cls.weight` (no
    buffers) when num_classes is given. No `pool_g.p`: CFCD's GeM p is fixed."""
    keys: dict[str, tuple[int, ...]] = {"fc.weight": (dim, 2048), "fc.bias": (dim,)}
    keys.update(_bn("bn", dim))
    keys.update(backbone_keys(depth, "globalmodel."))
    if num_classes is not None:
        keys["desc_cls.weight"] = (num_classes, dim)
    return keys
