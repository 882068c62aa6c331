"""Read official / pycls / torchvision weights, write our self-describing checkpoints.

Formats (docs/ALGORITHMS.md 2):
- official DOLG (pycls container): {"model_state", "cfg" (YAML text), "epoch", "optimizer_state"}
  with `globalmodel.` backbone keys and the training-only head `desc_cls.*`;
- official CFCD (same container, docs/ALGORITHMS.md 2.6): `globalmodel.*`, `fc.*`, BatchNorm1d
  `bn.*` and the MadaCos head `desc_cls.weight`; told apart from DOLG by `bn.*` and the absence
  of the local branch `localmodel.*`;
- a bare state dict (e.g. a re-saved official model), possibly with a DDP `module.` prefix;
- ours: the pycls container plus `format`, `family` (the model family, `models.factory`;
  "dolg" when absent, as in files written before families existed), `config` (that family's
  config as a dict) and `preprocessing`, so `build_model_from_checkpoint` rebuilds the net
  from the file alone (cirtorch's `meta`);
- backbone-only inits: pycls ImageNet (`stem.*`, `s1.*`, ..., `head.fc.*`) or torchvision
  ResNet (`conv1`, `layer1.0.conv1`, ...), mapped onto `globalmodel`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from models.backbones import pycls_backbone_name
from models.cfcd.model import CFCDConfig
from models.dolg import DOLGConfig
from models.factory import ModelConfig, build_model, config_family, family_of, stored_config

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "dolg-simsearch/checkpoint/v1"
# Keys of the training-only margin head; never part of the descriptor network.
HEAD_PREFIX = "desc_cls."
BACKBONE_PREFIX = "globalmodel."
FAMILY_KEY = "family"
_CFCD_BN_KEY = "bn.running_mean"
_MA_KEY = "localmodel.aspp.aspp.0.weight"
GEM_P_KEY = "pool_g.p"
# How many offending keys an error message lists per category before summarising.
_MAX_LISTED = 20

StateDict = dict[str, Tensor]


class CheckpointError(ValueError):
    """The file cannot be used for the requested model; the message says why."""


@dataclass
class CheckpointInfo:
    """What `build_model_from_checkpoint` learned about a file (no paths, only its name)."""

    kind: Literal["official", "ours"]
    file_name: str
    sha256: str
    config: ModelConfig
    epoch: int | None = None
    preprocessing: dict[str, Any] | None = None
    cfg_text: str | None = None
    dropped_keys: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------- reading


def load_file(path: str | os.PathLike[str], trusted: bool = False) -> Any:
    """torch.load on the CPU; only plain tensors/containers unless `trusted` (pickle runs code)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path.name}: not loadable as plain tensors ({exc}); if you trust the file, "
            "load it with trusted=True"
        ) from exc


def extract_state_dict(obj: Any) -> StateDict:
    """The model weights of a container (`model_state`, `state_dict`) or a bare state dict,
    with a DDP `module.` prefix stripped."""
    state = obj
    if isinstance(obj, Mapping):
        for key in ("model_state", "state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                state = obj[key]
                break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError("no state dict found (expected `model_state` or a bare state dict)")
    non_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(f"state dict has non-tensor entries: {non_tensors[:_MAX_LISTED]}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def infer_depth(state: Mapping[str, Tensor], prefix: str = BACKBONE_PREFIX) -> int:
    """50 or 101 from the number of s3 blocks (6 or 23)."""
    pattern = re.compile(rf"^{re.escape(prefix)}s3\.b(\d+)\.")
    blocks = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    by_blocks = {6: 50, 23: 101}
    if len(blocks) not in by_blocks:
        raise CheckpointError(
            f"cannot infer ResNet depth: found {len(blocks)} `{prefix}s3.b*` blocks "
            "(expected 6 for R50 or 23 for R101)"
        )
    return by_blocks[len(blocks)]


def infer_config(state: Mapping[str, Tensor]) -> DOLGConfig:
    """DOLGConfig of an official DOLG state dict: depth, multi-atrous, output dim."""
    if "localmodel.conv1.weight" not in state or "fc.weight" not in state:
        raise CheckpointError(
            "neither a DOLG checkpoint (`localmodel.conv1.weight`, `fc.weight`) nor a CFCD one "
            "(`fc.weight`, `bn.running_mean`, `globalmodel.*`) "
            f"(first keys: {list(state)[:5]})"
        )
    return DOLGConfig(
        depth=infer_depth(state),  # type: ignore[arg-type]
        with_ma=_MA_KEY in state,
        reduction_dim=int(state["fc.weight"].shape[0]),
    )


def is_cfcd_state(state: Mapping[str, Tensor]) -> bool:
    """An official CFCD model_state: BatchNorm1d `bn.*` after `fc`, no DOLG local branch."""
    return (_CFCD_BN_KEY in state and "fc.weight" in state
            and "localmodel.conv1.weight" not in state
            and any(k.startswith(BACKBONE_PREFIX) for k in state))


def infer_cfcd_config(state: Mapping[str, Tensor]) -> CFCDConfig:
    """CFCDConfig of an official CFCD state dict: the pycls ResNet depth and the output dim."""
    return CFCDConfig(backbone=pycls_backbone_name(infer_depth(state)),
                      reduction_dim=int(state["fc.weight"].shape[0]))


def infer_official_config(state: Mapping[str, Tensor]) -> ModelConfig:
    """The config of an official checkpoint's model_state: CFCD or DOLG, from its keys."""
    return infer_cfcd_config(state) if is_cfcd_state(state) else infer_config(state)


def drop_head(state: Mapping[str, Tensor]) -> tuple[StateDict, list[str]]:
    """Remove the margin head `desc_cls.*`; return (state, dropped key names)."""
    dropped = sorted(k for k in state if k.startswith(HEAD_PREFIX))
    return {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}, dropped


def _listing(title: str, keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" ... (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{title} ({len(keys)}): {shown}{more}"


def load_state_strict(module: nn.Module, state: Mapping[str, Tensor], what: str = "model") -> None:
    """load_state_dict(strict=True), but first say exactly which keys are missing, unexpected
    or of the wrong shape (torch's own message stops at the first shape error)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = [f"checkpoint does not match the {what}"]
        if missing:
            parts.append(_listing("missing keys", missing))
        if unexpected:
            parts.append(_listing("unexpected keys", unexpected))
        if shapes:
            parts.append(_listing("shape mismatches (checkpoint vs model)", shapes))
        raise CheckpointError("; ".join(parts))
    module.load_state_dict(state, strict=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def build_model_from_checkpoint(
    path: str | os.PathLike[str], trusted: bool = False
) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the network a checkpoint describes (ours: from `config`; official: from its
    keys), load it strictly and return it in eval mode with what was learned about the file."""
    path = Path(path)
    obj = load_file(path, trusted=trusted)
    is_ours = isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT
    state, dropped = drop_head(extract_state_dict(obj))
    if is_ours:
        config: ModelConfig = stored_config(obj.get(FAMILY_KEY), obj["config"])
    else:
        config = infer_official_config(state)
    if isinstance(config, DOLGConfig) and not is_ours and GEM_P_KEY not in state:
        # Official code before 2022-04-11 used a fixed GeM p=3 with no parameter (docs/ALGORITHMS.md
        # 1.3); a learnable p holding 3.0 computes exactly the same function.
        logger.warning("%s has no %s (fixed-p GeM model): using p=3.0", path.name, GEM_P_KEY)
        state[GEM_P_KEY] = torch.tensor([3.0])
    model = build_model(config)
    what = f"{family_of(config)} {config.backbone_name}"
    try:
        load_state_strict(model, state, what=what)
    except CheckpointError as exc:
        raise CheckpointError(f"{path.name}: {exc}") from exc
    model.eval()
    epoch = obj.get("epoch") if isinstance(obj, Mapping) else None
    cfg_text = obj.get("cfg") if isinstance(obj, Mapping) else None
    info = CheckpointInfo(
        kind="ours" if is_ours else "official",
        file_name=path.name,
        sha256=_sha256(path),
        config=config,
        epoch=int(epoch) if isinstance(epoch, int) else None,
        preprocessing=dict(obj["preprocessing"]) if is_ours and obj.get("preprocessing") else None,
        cfg_text=cfg_text if isinstance(cfg_text, str) else None,
        dropped_keys=dropped,
    )
    logger.info(
        "loaded %s checkpoint %s: %s (%d keys, dropped %d head keys)",
        info.kind, info.file_name, config.to_dict(), len(state), len(dropped),
    )
    return model, info


# --------------------------------------------------------------------------------- writing


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    config: ModelConfig | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    epoch: int | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
    scaler_state: Mapping[str, Any] | None = None,
    head_state: Mapping[str, Tensor] | None = None,
) -> Path:
    """Write a self-describing checkpoint atomically (temp file, fsync, os.replace).

    `head_state` (the margin head's weights, for resuming training) is stored under its own key,
    never in `model_state`, so the descriptor network always loads strictly.
    """
    path = Path(path)
    config = config or getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise CheckpointError("save_checkpoint needs a model config (model.config or config=)")
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        FAMILY_KEY: config_family(config),
        "config": config.to_dict(),
        "preprocessing": dict(preprocessing) if preprocessing is not None else None,
        "epoch": epoch,
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state": optimizer_state,
        "scaler_state": scaler_state,
        "head_state": dict(head_state) if head_state is not None else None,
    }
    atomic_torch_save(payload, path)
    return path


def atomic_torch_save(payload: Mapping[str, Any], path: Path) -> None:
    """temp file in the same folder -> fsync -> os.replace -> fsync(dir): a crash leaves either
    the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            torch.save(dict(payload), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------- backbone initialisation

_TV_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])\.(.+)$")
_PY_BLOCK = re.compile(r"^s([1-4])\.b(\d+)\.(f\.[abc]|f\.[abc]_bn|proj|bn)\.(.+)$")
_TV_TO_PY = {
    "conv1": "f.a", "bn1": "f.a_bn", "conv2": "f.b", "bn2": "f.b_bn",
    "conv3": "f.c", "bn3": "f.c_bn", "downsample.0": "proj", "downsample.1": "bn",
}
_PY_TO_TV = {v: k for k, v in _TV_TO_PY.items()}


def torchvision_to_pycls(state: Mapping[str, Tensor]) -> StateDict:
    """Rename torchvision ResNet keys to pycls ones (docs/ALGORITHMS.md 2.5); `fc.*` is dropped.
    No colour flip here (see `flip_stem_channels`)."""
    out: StateDict = {}
    for key, value in state.items():
        if key.startswith("fc."):
            continue
        if key.startswith("conv1."):
            out["stem.conv." + key[len("conv1.") :]] = value
        elif key.startswith("bn1."):
            out["stem.bn." + key[len("bn1.") :]] = value
        elif m := _TV_BLOCK.match(key):
            stage, index, part, rest = m.groups()
            out[f"s{stage}.b{int(index) + 1}.{_TV_TO_PY[part]}.{rest}"] = value
        else:
            raise CheckpointError(f"unexpected torchvision ResNet key {key!r}")
    return out


def pycls_to_torchvision(state: Mapping[str, Tensor]) -> StateDict:
    """Inverse of `torchvision_to_pycls` (for backbone keys; `head.*` is dropped)."""
    out: StateDict = {}
    for key, value in state.items():
        if key.startswith("head."):
            continue
        if key.startswith("stem.conv."):
            out["conv1." + key[len("stem.conv.") :]] = value
        elif key.startswith("stem.bn."):
            out["bn1." + key[len("stem.bn.") :]] = value
        elif m := _PY_BLOCK.match(key):
            stage, index, part, rest = m.groups()
            out[f"layer{stage}.{int(index) - 1}.{_PY_TO_TV[part]}.{rest}"] = value
        else:
            raise CheckpointError(f"unexpected pycls ResNet key {key!r}")
    return out


def flip_stem_channels(state: StateDict, key: str = "stem.conv.weight") -> StateDict:
    """Reverse the input-channel axis of the first conv ([64,3,7,7]): RGB <-> BGR weights."""
    out = dict(state)
    out[key] = state[key].flip(1).contiguous()
    return out


BackboneSource = Literal["auto", "torchvision", "pycls", "dolg"]


def detect_backbone_source(state: Mapping[str, Tensor]) -> Literal["torchvision", "pycls", "dolg"]:
    if "conv1.weight" in state and "layer1.0.conv1.weight" in state:
        return "torchvision"
    if "stem.conv.weight" in state:
        return "pycls"
    if BACKBONE_PREFIX + "stem.conv.weight" in state:
        return "dolg"
    raise CheckpointError(
        "unknown backbone format: expected torchvision (`conv1.weight`), pycls "
        f"(`stem.conv.weight`) or DOLG (`globalmodel.stem.conv.weight`) keys; got {list(state)[:5]}"
    )


def load_backbone_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    source: BackboneSource = "auto",
    input_colour: Literal["BGR", "RGB"] = "BGR",
    trusted: bool = False,
) -> dict[str, Any]:
    """Initialise the ResNet (`model.globalmodel`, or `model` itself) from a local file.

    torchvision weights were trained on RGB input; pycls/DOLG weights on BGR. When the two
    differ from `input_colour`, the stem conv's input channels are reversed so the weights see
    the colours they were trained on. Returns a small report (source, flipped, keys).
    """
    backbone = getattr(model, "globalmodel", model)
    raw = extract_state_dict(load_file(path, trusted=trusted))
    kind = detect_backbone_source(raw) if source == "auto" else source
    if kind == "torchvision":
        state, trained_colour = torchvision_to_pycls(raw), "RGB"
    elif kind == "pycls":
        state, trained_colour = {k: v for k, v in raw.items() if not k.startswith("head.")}, "BGR"
    else:
        state = {
            k[len(BACKBONE_PREFIX) :]: v for k, v in raw.items() if k.startswith(BACKBONE_PREFIX)
        }
        trained_colour = "BGR"
    flipped = trained_colour != input_colour
    if flipped:
        state = flip_stem_channels(state)
    load_state_strict(backbone, state, what="ResNet backbone")
    report = {
        "source": kind,
        "file_name": Path(path).name,
        "flipped_stem_channels": flipped,
        "keys": len(state),
    }
    logger.info("initialised backbone from %s", report)
    return report
