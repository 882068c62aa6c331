"""The training loop: `Trainer` builds data, network, optimiser and loaders from a `TrainConfig`
and runs it, with checkpoints, logging and validation.

One optimiser step = `accum_steps` micro-batches on each of `world_size` processes; the global
batch `batch_size` is fixed by the config, so the same settings mean the same optimisation on 1
or 8 GPUs. An epoch is a whole number of steps (the sampler drops the remainder).

Resuming continues exactly: the checkpoint holds the weights, the head (CurricularFace's `t`),
BatchNorm statistics, the optimiser's momentum, the AMP scaler, the global RNG states and the
position (epoch, steps done in it). The sample order and every augmentation are functions of
(seed, epoch, index) (see `models.training.data`), and the learning rate is a function of the
position, so N steps + save + resume + 1 step equals N + 1 straight steps bit for bit
(same world size, deterministic kernels).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from models.backbones import get_backbone_spec
from models.checkpoint import load_state_strict
from models.factory import ModelConfig, build_model, stored_config
from models.heads import MadaCos
from models.training import checkpointing as ckpt
from models.training.config import TrainConfig, merge_resume_config
from models.training.confusions import confusions_for, read_scores
from models.training.data import (
    DataError,
    EpochBatchSampler,
    ImageDataset,
    LabelledSet,
    RetrievalSet,
    Sample,
    ShardSampler,
    class_counts,
    labelled_from_pairs,
    make_loader,
    read_image_list,
    read_retrieval_list,
    scan_class_folders,
    split_train_val,
)
from models.training.distributed import DistContext, all_reduce_sum, barrier
from models.training.network import (
    FineStageNet,
    TrainNet,
    build_head,
    initialise_model,
    load_head_state,
)
from models.training.progress import EPOCH_FIELDS, TRAIN_FIELDS, CsvLog, StepTimer, format_duration
from models.training.schedule import build_sgd, epoch_lr, set_lr
from models.training.transforms import (
    ColourSpec,
    EvalTransform,
    RetrievalTransform,
    TrainTransform,
)
from models.training.tuples import Confusions, TupleBatchSampler
from models.training.validation import classification_accuracy, retrieval_metrics

logger = logging.getLogger(__name__)

LAST = "last.pth"
BEST = "best.pth"


@dataclass
class DataBundle:
    root: Path
    labelled: LabelledSet
    train: list[Sample]
    val: list[Sample]
    retrieval: RetrievalSet | None


def build_data(cfg: TrainConfig, class_names: list[str] | None = None) -> DataBundle:
    """Read the training source, split it and read the retrieval list (files are checked)."""
    if cfg.train_list:
        list_path = Path(cfg.train_list)
        root = Path(cfg.data_root) if cfg.data_root else list_path.parent
        labelled = labelled_from_pairs(read_image_list(list_path), class_names)
    elif cfg.data_root:
        root = Path(cfg.data_root)
        labelled = scan_class_folders(root)
        if class_names is not None and labelled.class_names != class_names:
            raise DataError(f"{root}: the class folders differ from the checkpoint's classes")
    else:
        raise DataError("no training data: give a data root (class folders) and/or a train list")
    if cfg.val_list:
        val = labelled_from_pairs(read_image_list(cfg.val_list), labelled.class_names).samples
        train = labelled.samples
    else:
        train, val = split_train_val(labelled.samples, cfg.val_fraction, cfg.seed)
    if cfg.val_max_images and len(val) > cfg.val_max_images:
        # Every k-th sample: deterministic and spread over the (class-sorted) list.
        stride = len(val) / cfg.val_max_images
        val = [val[int(i * stride)] for i in range(cfg.val_max_images)]
    missing = [s.path for s in train[:1] + val[:1] if not (root / s.path).is_file()]
    if missing:
        raise DataError(f"image {missing[0]} not found under the data root {root}")
    retrieval = None
    if cfg.retrieval_list:
        retrieval = read_retrieval_list(cfg.retrieval_list, cfg.retrieval_root or None)
        absent = [
            p
            for p, _ in retrieval.queries + retrieval.gallery
            if not (retrieval.root / p).is_file()
        ]
        if absent:
            raise DataError(f"{len(absent)} retrieval images are missing, e.g. {absent[0]}")
    return DataBundle(root, labelled, train, val, retrieval)


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    mode = cfg.amp
    if mode == "auto":
        if device.type != "cuda":
            return None
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError("--amp fp16 needs CUDA; use bf16 or off on the CPU")
        return torch.float16
    raise ValueError(f"amp must be auto, off, bf16 or fp16, got {cfg.amp!r}")


def embedding_dim(config: ModelConfig) -> int:
    """Width of the descriptor a config's network outputs (the margin head's input)."""
    return config.embedding_dim


def colour_spec(cfg: TrainConfig) -> ColourSpec:
    """Input colour order and normalisation: BGR / RGB with the ImageNet statistics, or
    "auto": what the backbone's ImageNet weights expect (BGR ImageNet for the pycls ResNets)."""
    if cfg.colour_order in ("BGR", "RGB"):
        return ColourSpec.imagenet(cfg.colour_order)  # type: ignore[arg-type]
    if cfg.colour_order != "auto":
        raise ValueError(f"colour_order must be auto, BGR or RGB, got {cfg.colour_order!r}")
    prep = get_backbone_spec(cfg.backbone_name).preprocessing
    if not prep:
        return ColourSpec.imagenet("BGR")
    return ColourSpec(prep["colour_order"], tuple(prep["mean"]), tuple(prep["std"]))


@dataclass
class Position:
    """Where training stands: `epoch` (0-based, in progress), optimiser steps done in it, and
    in total. After the last step of epoch e the position is (e + 1, 0)."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


@dataclass
class EpochMeter:
    """Loss sum, correct margin-logit predictions, samples and (fine stage) the triplet part
    of the loss, kept as device scalars."""

    loss_sum: Tensor
    correct: Tensor
    count: Tensor
    triplet_sum: Tensor

    @classmethod
    def zeros(cls, device: torch.device) -> EpochMeter:
        z = torch.zeros((), dtype=torch.float64, device=device)
        return cls(z.clone(), z.clone(), z.clone(), z.clone())

    def add(
        self, loss: Tensor, logits: Tensor, labels: Tensor, triplet: Tensor | None = None
    ) -> None:
        # Kept on the device: no host sync per step.
        self.loss_sum += loss.detach().double() * labels.shape[0]
        self.correct += (logits.detach().argmax(dim=1) == labels).sum()
        self.count += labels.shape[0]
        if triplet is not None:
            self.triplet_sum += triplet.detach().double() * labels.shape[0]

    def reduce(self, ctx: DistContext) -> tuple[float, float, int]:
        """(mean loss, top-1 of the margin logits, samples) over all processes."""
        loss, top1, count, _ = self.reduce_all(ctx)
        return loss, top1, count

    def reduce_all(self, ctx: DistContext) -> tuple[float, float, int, float]:
        """`reduce` plus the mean triplet loss per micro-batch (0 outside the fine stage)."""
        total = all_reduce_sum(
            torch.stack([self.loss_sum, self.correct, self.count, self.triplet_sum]), ctx
        )
        loss_sum, correct, count, triplet_sum = total.tolist()
        if count == 0:
            return float("nan"), float("nan"), 0, float("nan")
        return loss_sum / count, correct / count, int(count), triplet_sum / count


class Trainer:
    """Builds everything from a `TrainConfig` (or a checkpoint to resume) and runs `fit()`."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext, resume: str | Path | None = None):
        self.ctx = ctx
        state = ckpt.load_training_checkpoint(resume) if resume else None
        if state is not None:
            cfg = merge_resume_config(TrainConfig.from_dict(state["training"]["train_config"]), cfg)
        self.cfg = cfg
        if not cfg.out_dir:
            raise ValueError("out_dir is required")
        self.out_dir = Path(cfg.out_dir)
        self.device = ctx.device
        self._configure_backends()
        self.colour = colour_spec(cfg)

        # ---- data
        class_names = state["training"]["class_names"] if state is not None else None
        self.data = build_data(cfg, class_names)
        self.num_classes = self.data.labelled.num_classes
        per_step = ctx.world_size * cfg.accum_steps
        if cfg.batch_size % per_step:
            raise ValueError(
                f"batch size {cfg.batch_size} is not divisible by processes x accumulation "
                f"({ctx.world_size} x {cfg.accum_steps})"
            )
        self.micro_batch = cfg.batch_size // per_step
        if self.micro_batch < 2:
            raise ValueError("each micro-batch needs >= 2 images (BatchNorm in train mode)")

        # ---- model, head, optimiser
        torch.manual_seed(cfg.seed)
        if state is not None:
            self.model_config = stored_config(state.get(ckpt.FAMILY_KEY), state["config"])
            model = build_model(self.model_config)
            load_state_strict(model, state["model_state"], what="resumed model")
            self.init_report: dict[str, Any] = state["training"].get("init", {})
        else:
            model, self.model_config, self.init_report = initialise_model(
                cfg.model_config(),
                cfg.init_weights or None,
                cfg.init_format,  # type: ignore[arg-type]
                input_colour=self.colour.order,
                trusted=cfg.trusted,
                imagenet=cfg.imagenet,
            )
        head = build_head(
            cfg.head,
            embedding_dim(self.model_config),
            self.num_classes,
            scale=cfg.head_scale,
            margin=cfg.head_margin,
            alpha=cfg.madacos_alpha,
            b_mode=cfg.madacos_b_mode,
        )
        if state is not None:
            load_state_strict(head, state["head_state"], what=f"{cfg.head} head")
        elif cfg.stage == 2 and cfg.init_weights:
            self.init_report["head_from_init"] = load_head_state(
                head, cfg.init_weights, trusted=cfg.trusted
            )
        self.channels_last = cfg.channels_last == "on" or (
            cfg.channels_last == "auto" and self.device.type == "cuda"
        )
        if cfg.stage not in (1, 2):
            raise ValueError(f"stage must be 1 (global) or 2 (CFCD fine stage), got {cfg.stage}")
        self.fine_stage = cfg.stage == 2
        self.net = (
            FineStageNet(model, head, cfg.tuple_size, cfg.triplet_margin)
            if self.fine_stage
            else TrainNet(model, head)
        ).to(self.device)
        if self.channels_last:
            self.net.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.ddp: DistributedDataParallel | None = None
        if ctx.distributed:
            self.ddp = DistributedDataParallel(
                self.net,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True,
            )
        self.optimizer = build_sgd(
            self.net.parameters(), cfg.lr, cfg.momentum, cfg.nesterov, cfg.weight_decay
        )
        self.amp_dtype = _amp_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16
        )
        self.position = Position()
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {}
        if state is not None:
            self._restore(state, resume)

        # ---- loaders
        self.train_set = ImageDataset(
            self.data.root, self.data.train, self._train_transform(), seed=cfg.seed
        )
        self.batch_sampler: EpochBatchSampler | TupleBatchSampler
        if self.fine_stage:
            self.batch_sampler = TupleBatchSampler(
                [s.label for s in self.data.train],
                self.micro_batch,
                tuple_size=cfg.tuple_size,
                world_size=ctx.world_size,
                rank=ctx.rank,
                seed=cfg.seed,
                group=cfg.accum_steps,
                confusions=self._confusions(),
            )
        else:
            self.batch_sampler = EpochBatchSampler(
                len(self.data.train),
                self.micro_batch,
                world_size=ctx.world_size,
                rank=ctx.rank,
                seed=cfg.seed,
                group=cfg.accum_steps,
            )
        self.steps_per_epoch = self.batch_sampler.batches_per_epoch // cfg.accum_steps
        pin = self.device.type == "cuda"
        self.train_loader = make_loader(
            self.train_set,
            batch_sampler=self.batch_sampler,
            num_workers=cfg.num_workers,
            pin_memory=pin,
            prefetch_factor=cfg.prefetch_factor,
        )
        self.val_loader = None
        if self.data.val:
            val_set = ImageDataset(
                self.data.root, self.data.val, self._eval_transform(), seed=cfg.seed
            )
            self.val_loader = make_loader(
                val_set,
                sampler=ShardSampler(len(val_set), ctx.world_size, ctx.rank),
                batch_size=self.micro_batch,
                num_workers=min(cfg.num_workers, 4),
                pin_memory=pin,
                prefetch_factor=cfg.prefetch_factor,
                persistent_workers=False,
            )
        self.train_csv = CsvLog(self.out_dir / "train_log.csv", TRAIN_FIELDS)
        self.epoch_csv = CsvLog(self.out_dir / "epochs.csv", EPOCH_FIELDS)
        if ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if state is not None:
                self.train_csv.truncate("global_step", self.position.global_step)
                self.epoch_csv.truncate("epoch", self.position.epoch)
            self._log_setup()

    # ------------------------------------------------------------------------------ setup

    def _configure_backends(self) -> None:
        if self.cfg.deterministic:
            # cuBLAS needs a fixed workspace to be deterministic; harmless on the CPU.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            # Fixed input size: let cuDNN pick the fastest kernels; TF32 for any fp32 matmul.
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

    def _confusions(self) -> Confusions | None:
        """The stage-1 model's confusions on the training images (hard negatives)."""
        if not self.cfg.scores_file:
            logger.info("fine stage without a scores file: random negatives")
            return None
        rows = read_scores(self.cfg.scores_file)
        return confusions_for(rows, self.data.train, self.data.labelled.class_names)

    def _train_transform(self) -> TrainTransform:
        c = self.cfg
        return TrainTransform(
            size=c.image_size,
            colour=self.colour,
            area_frac=c.crop_area_min,
            aspect=(c.crop_aspect_min, c.crop_aspect_max),
            flip_p=c.flip_p,
            lighting_std=c.lighting_std,
        )

    def _eval_transform(self) -> EvalTransform:
        c = self.cfg
        resize = c.val_resize or round(c.image_size * 256 / 224)
        return EvalTransform(size=c.image_size, resize=resize, colour=self.colour)

    def _retrieval_transform(self) -> RetrievalTransform:
        c = self.cfg
        return RetrievalTransform(
            max_side=c.retrieval_max_side or c.image_size,
            scales=tuple(c.retrieval_scales),
            colour=self.colour,
        )

    def _log_setup(self) -> None:
        c, d = self.cfg, self.data
        counts = class_counts(d.train, self.num_classes)
        logger.info(
            "data: %d classes, %d train images (%d..%d per class), %d val images%s",
            self.num_classes,
            len(d.train),
            counts.min(),
            counts.max(),
            len(d.val),
            f", retrieval {len(d.retrieval.queries)} queries / {len(d.retrieval.gallery)} gallery"
            if d.retrieval
            else "",
        )
        logger.info(
            "model: %s %s dim %d, init %s; head %s; %s on %s, %d process(es)%s",
            c.family,
            self.model_config.backbone_name,
            embedding_dim(self.model_config),
            self.init_report.get("source"),
            c.head,
            f"amp {self.amp_dtype}".replace("torch.", "") if self.amp_dtype else "fp32",
            self.device,
            self.ctx.world_size,
            f"; fine stage: tuples of {c.tuple_size}, triplet x{c.triplet_weight} margin "
            f"{c.triplet_margin}"
            if self.fine_stage
            else "",
        )
        logger.info(
            "optimisation: global batch %d = %d per micro-batch x %d accumulation x %d "
            "process(es); %d steps per epoch, %d epochs; lr %g (warm-up %g epochs from x%g, "
            "cosine per %s); image %d px, channels_last=%s, workers %d",
            c.batch_size,
            self.micro_batch,
            c.accum_steps,
            self.ctx.world_size,
            self.steps_per_epoch,
            c.epochs,
            c.lr,
            c.warmup_epochs,
            c.warmup_factor,
            "step" if c.lr_per_step else "epoch",
            c.image_size,
            self.channels_last,
            c.num_workers,
        )

    def _restore(self, state: dict[str, Any], resume: str | Path | None) -> None:
        training = state["training"]
        self.optimizer.load_state_dict(state["optimizer_state"])
        if state.get("scaler_state"):
            self.scaler.load_state_dict(state["scaler_state"])
        if training.get("world_size", 1) != self.ctx.world_size:
            logger.warning(
                "resuming a %d-process run on %d processes: the optimisation continues, but "
                "the sample order is not the one the original run would have seen",
                training.get("world_size", 1),
                self.ctx.world_size,
            )
        self.position = Position(
            int(training["epoch_index"]),
            int(training["step_in_epoch"]),
            int(training["global_step"]),
        )
        self.history = list(training.get("history", []))
        self.best = dict(training.get("best", {}))
        ckpt.restore_rng_state(training["rng"])
        logger.info(
            "resumed from %s at epoch %d, step %d of the epoch (global step %d)",
            Path(str(resume)).name,
            self.position.epoch + 1,
            self.position.step_in_epoch,
            self.position.global_step,
        )

    # ------------------------------------------------------------------------------ loop

    def lr_at(self, epoch: int, step_in_epoch: int) -> float:
        c = self.cfg
        e = epoch + (step_in_epoch / self.steps_per_epoch if c.lr_per_step else 0.0)
        return epoch_lr(e, c.lr, c.epochs, c.warmup_epochs, c.warmup_factor)

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _inputs(self, images: Tensor) -> Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def fit(self) -> dict[str, Any]:
        """Train until the last epoch (or max_steps / max_minutes); returns a summary."""
        c = self.cfg
        self._started = time.perf_counter()
        self._stop = False
        if c.eval_before_train and self.position.global_step == 0:
            self._end_of_epoch_eval(epoch_done=0, train=None, epoch_seconds=0.0, rate=None)
        while self.position.epoch < c.epochs and not self._stop:
            epoch_start = time.perf_counter()
            meter, images = self._train_epoch()
            if self._stop and self.position.step_in_epoch < self.steps_per_epoch:
                self._save(LAST)
                break
            seconds = time.perf_counter() - epoch_start
            self.position = Position(self.position.epoch + 1, 0, self.position.global_step)
            self._end_of_epoch_eval(
                self.position.epoch,
                meter.reduce_all(self.ctx),
                seconds,
                images / max(seconds, 1e-9),
            )
            self._save_epoch()
        barrier(self.ctx)
        return {
            "epochs_done": self.position.epoch,
            "global_step": self.position.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "history": self.history,
            "best": self.best,
            "out_dir": str(self.out_dir),
        }

    def _train_epoch(self) -> tuple[EpochMeter, int]:
        """Run the rest of the current epoch; returns its meter and the images it processed."""
        c, pos = self.cfg, self.position
        accum = c.accum_steps
        self.batch_sampler.set_epoch(pos.epoch)
        self.batch_sampler.set_start(pos.step_in_epoch * accum)
        net: nn.Module = self.ddp if self.ddp is not None else self.net
        self.net.train()
        set_lr(self.optimizer, self.lr_at(pos.epoch, pos.step_in_epoch))
        meter = EpochMeter.zeros(self.device)
        window = EpochMeter.zeros(self.device)
        timer = StepTimer()
        images_per_step = c.batch_size
        images_done = 0
        micro = 0
        self.optimizer.zero_grad(set_to_none=True)
        for images, labels in self.train_loader:
            images, labels = self._inputs(images), labels.to(self.device, non_blocking=True)
            last_micro = (micro + 1) % accum == 0
            sync = nullcontext() if last_micro or self.ddp is None else self.ddp.no_sync()
            triplet: Tensor | None = None
            with sync:
                with self._autocast():
                    out = net(images, labels)  # [b,C] float32 (the head runs in fp32)
                if self.fine_stage:
                    # CFCD: classification loss + weight x the tuples' summed local triplet.
                    logits, triplet = out
                    loss = F.cross_entropy(logits, labels) + c.triplet_weight * triplet
                else:
                    logits = out
                    loss = F.cross_entropy(logits, labels)
                # Mean over the step's micro-batches, so accumulation changes nothing else.
                self.scaler.scale(loss / accum).backward()
            meter.add(loss, logits, labels, triplet)
            window.add(loss, logits, labels, triplet)
            micro += 1
            if not last_micro:
                continue
            if c.lr_per_step:
                set_lr(self.optimizer, self.lr_at(pos.epoch, pos.step_in_epoch))
            if c.clip_grad_norm > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.net.parameters(), c.clip_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            pos.step_in_epoch += 1
            pos.global_step += 1
            images_done += images_per_step
            timer.update(images_per_step)
            epoch_end = pos.step_in_epoch == self.steps_per_epoch
            if pos.global_step % c.log_every == 0 or epoch_end:
                self._log_window(window, timer)
                window = EpochMeter.zeros(self.device)
                self._check_stop(at_log=True)
            elif c.max_steps:
                self._check_stop(at_log=False)
            if self._stop:
                break
            if c.save_every_steps and pos.global_step % c.save_every_steps == 0 and not epoch_end:
                self._save(LAST)
        return meter, images_done

    def _check_stop(self, at_log: bool) -> None:
        """max_steps is the same on every process; the time limit is decided on rank 0's clock
        at logging steps and shared, so all processes stop at the same step."""
        c = self.cfg
        stop = bool(c.max_steps) and self.position.global_step >= c.max_steps
        if at_log and c.max_minutes > 0:
            late = (time.perf_counter() - self._started) / 60.0 >= c.max_minutes
            flag = torch.tensor([1.0 if late and self.ctx.is_main else 0.0], device=self.device)
            stop = stop or all_reduce_sum(flag, self.ctx).item() > 0
        if stop and not self._stop:
            logger.info(
                "stopping at global step %d (%s)",
                self.position.global_step,
                "max_steps"
                if c.max_steps and self.position.global_step >= c.max_steps
                else "max_minutes",
            )
        self._stop = self._stop or stop

    def _log_window(self, window: EpochMeter, timer: StepTimer) -> None:
        c, pos = self.cfg, self.position
        loss, top1, _, triplet = window.reduce_all(self.ctx)
        rate, per_step = timer.close_window()
        if not self.ctx.is_main:
            return
        total_steps = c.epochs * self.steps_per_epoch
        if c.max_steps:
            total_steps = min(total_steps, c.max_steps)
        eta = timer.eta(max(total_steps - pos.global_step, 0), per_step)
        lr = self.optimizer.param_groups[0]["lr"]
        extra = ""
        head = self.net.head
        # MadaCos sets both at its first forward.
        if isinstance(head, MadaCos) and head.last_scale is not None:
            assert head.last_margin is not None
            extra = f" s {float(head.last_scale):.1f} m {float(head.last_margin):.3f}"
        if isinstance(self.net, FineStageNet):
            extra += f" triplet {triplet:.4f}"
            if self.net.last_matches is not None:
                extra += f" matches/tuple {float(self.net.last_matches):.1f}"
        logger.info(
            "epoch %d/%d step %d/%d | loss %.4f top1 %.3f | lr %.5g | %.1f img/s | eta %s%s",
            pos.epoch + 1,
            c.epochs,
            pos.step_in_epoch,
            self.steps_per_epoch,
            loss,
            top1,
            lr,
            rate,
            format_duration(eta),
            extra,
        )
        self.train_csv.append(
            {
                "global_step": pos.global_step,
                "epoch": pos.epoch + 1,
                "epoch_progress": pos.epoch + pos.step_in_epoch / self.steps_per_epoch,
                "loss": loss,
                "train_top1": top1,
                "lr": lr,
                "images_per_s": rate,
                "elapsed_s": time.perf_counter() - self._started,
                "triplet_loss": triplet if self.fine_stage else None,
            }
        )

    # ------------------------------------------------------------------------------ eval/save

    def evaluate(self) -> dict[str, Any]:
        """Val accuracy and the retrieval figure of the current weights (every process runs
        the val shard; retrieval runs on every process over the small held-out set)."""
        model = self.net.model
        metrics: dict[str, Any] = {}
        if self.val_loader is not None:
            # Every margin head keeps its class centres as the parameter `weight` [C, D].
            class_weight = self.net.head.weight
            assert isinstance(class_weight, Tensor), type(class_weight)
            metrics.update(
                classification_accuracy(
                    model,
                    class_weight,
                    self.val_loader,
                    self.ctx,
                    autocast=self._autocast(),
                    channels_last=self.channels_last,
                )
            )
        if self.data.retrieval is not None:
            metrics.update(
                retrieval_metrics(
                    model,
                    self.data.retrieval,
                    self._retrieval_transform(),
                    self.device,
                    autocast=self._autocast(),
                    channels_last=self.channels_last,
                )
            )
        return metrics

    def _end_of_epoch_eval(
        self,
        epoch_done: int,
        train: tuple[float, float, int, float] | None,
        epoch_seconds: float,
        rate: float | None,
    ) -> None:
        c = self.cfg
        row: dict[str, Any] = {
            "epoch": epoch_done,
            "global_step": self.position.global_step,
            "epoch_s": epoch_seconds,
            "images_per_s": rate,
        }
        if train is not None:
            if self.fine_stage:
                row["train_triplet_loss"] = train[3]
            row.update(
                train_loss=train[0], train_top1=train[1], lr=self.optimizer.param_groups[0]["lr"]
            )
        if epoch_done == 0 or epoch_done % c.val_every == 0 or epoch_done == c.epochs:
            start = time.perf_counter()
            row.update(self.evaluate())
            row["eval_s"] = time.perf_counter() - start
        self.history.append(row)
        if self.ctx.is_main:
            shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
            logger.info("epoch %d summary: %s", epoch_done, json.dumps(shown))
            self.epoch_csv.append(row)

    def _best_metric(self, row: dict[str, Any]) -> tuple[str, float] | None:
        for key in ("retrieval_map", "val_top1"):
            value = row.get(key)
            if isinstance(value, float) and math.isfinite(value):
                return key, value
        return None

    def _save_epoch(self) -> None:
        if not self.ctx.is_main:
            return
        epoch = self.position.epoch
        path = self._save(f"epoch_{epoch:04d}.pth")
        ckpt.link_atomic(path, self.out_dir / LAST)
        best = self._best_metric(self.history[-1]) if self.history else None
        if best is not None and (not self.best or best[1] > self.best.get("value", -1.0)):
            self.best = {"metric": best[0], "value": best[1], "epoch": epoch}
            ckpt.link_atomic(path, self.out_dir / BEST)
            logger.info("new best %s %.4f at epoch %d", best[0], best[1], epoch)
        kept = sorted(self.out_dir.glob("epoch_*.pth"))
        for old in kept[: max(len(kept) - max(self.cfg.keep_last, 1), 0)]:
            old.unlink()

    def _save(self, name: str) -> Path:
        """Write a checkpoint of the current position (rank 0 only)."""
        path = self.out_dir / name
        if not self.ctx.is_main:
            return path
        training = {
            "train_config": self.cfg.to_dict(),
            "epoch_index": self.position.epoch,
            "step_in_epoch": self.position.step_in_epoch,
            "global_step": self.position.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.ctx.world_size,
            "micro_batch": self.micro_batch,
            "num_classes": self.num_classes,
            "class_names": self.data.labelled.class_names,
            "init": self.init_report,
            "history": self.history,
            "best": self.best,
        }
        start = time.perf_counter()
        ckpt.save_training_checkpoint(
            path,
            model=self.net.model,
            head=self.net.head,
            config=self.model_config,
            preprocessing=self.colour.preprocessing_fields(),
            epoch=self.position.epoch,
            optimizer=self.optimizer,
            scaler=self.scaler if self.scaler.is_enabled() else None,
            training=training,
            cfg_text=json.dumps(self.cfg.to_dict(), sort_keys=True),
        )
        logger.info(
            "saved %s (epoch %d, step %d) in %.1f s",
            path.name,
            self.position.epoch,
            self.position.global_step,
            time.perf_counter() - start,
        )
        return path
