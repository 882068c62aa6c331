"""onnxruntime session wrapper: provider choice with loud fallback, graph-vs-meta checks.

`OnnxSession.run` maps a batch [B,3,H,W] float32 to unit descriptors [B,D] float32. What
`/health` reports as the model's providers is `active_providers`, read back from the live
session (`session.get_providers()`), never what was asked for.

On a GPU provider `run` uses IO binding: the batch is copied once into a device buffer kept
per input shape (no device allocation per run once a shape has been seen) and only the small
[B,D] output comes back to the host. docs/GPU.md measured onnxruntime CUDA fp32 at batch 32 going
from 832 to 1,134 images/s with IO binding on an H100. (This code path is not measured on the
CPU-only machines; a CPU test exercises it with device buffers on the host.)

Not done yet: TensorRT engine caching / shape profiles (the multi-scale inputs have arbitrary
H,W, so TensorRT would build engines for new shapes; it is therefore only used when asked for
explicitly).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from app.artifacts import ModelMeta
from app.config import InferenceSettings
from app.errors import ArtifactMismatch
from app.inference.preprocess import l2_normalize
from app.threads import usable_cores

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
_GPU_PROVIDERS = (TENSORRT, CUDA)
# Device input buffers kept for IO binding, one per input shape (multi-scale inputs come in a
# few shapes per image size; the least recently used buffer goes first).
_BOUND_INPUTS_KEPT = 16

# Provider preference per setting, best first; CPU is always appended last. "auto" does not
# include TensorRT: with dynamic multi-scale shapes it rebuilds engines for new input sizes,
# which makes first requests take seconds to minutes. Ask for "tensorrt" explicitly.
_PREFERENCE: dict[str, tuple[str, ...]] = {
    "auto": (CUDA,),
    "cuda": (CUDA,),
    "tensorrt": (TENSORRT, CUDA),
    "cpu": (),
}


class GpuUnavailableError(RuntimeError):
    """A GPU execution provider was required (`require_gpu`) but none is active."""


def choose_providers(
    requested: str, available: list[str], settings: InferenceSettings
) -> list[str | tuple[str, dict[str, Any]]]:
    """Providers to ask onnxruntime for: preference for `requested` ∩ `available`, then CPU.

    Every decision is logged. GPU providers carry their options (cuDNN algorithm search).
    """
    chosen: list[str | tuple[str, dict[str, Any]]] = []
    for name in _PREFERENCE[requested]:
        if name not in available:
            level = logging.INFO if requested == "auto" else logging.WARNING
            logger.log(level, "providers=%s: %s is not available in this onnxruntime build "
                       "(available: %s); skipping it", requested, name, ", ".join(available))
            continue
        logger.info("providers=%s: %s is available; requesting it", requested, name)
        if name == CUDA:
            chosen.append((CUDA, {"cudnn_conv_algo_search": settings.cudnn_conv_algo_search}))
        else:
            chosen.append(name)
    chosen.append(CPU)
    return chosen


def _provider_names(providers: list[str | tuple[str, dict[str, Any]]]) -> list[str]:
    return [p if isinstance(p, str) else p[0] for p in providers]


class OnnxSession:
    """One onnxruntime InferenceSession for the exported DOLG graph.

    Attributes: `active_providers` (session.get_providers()), `device` ('tensorrt' | 'cuda' |
    'cpu'), `input_name`, `output_name`, `embedding_dim`, `max_batch` (None when the graph's
    batch axis is dynamic, else the fixed batch size the batcher must not exceed).
    Raises ArtifactMismatch (naming the model file) when the graph cannot be loaded or disagrees
    with the meta, GpuUnavailableError when `require_gpu` and no GPU provider is active.
    """

    def __init__(
        self,
        model_path: Path,
        meta: ModelMeta,
        settings: InferenceSettings,
        require_gpu: bool = False,
        intra_op_threads: int | None = None,
        io_binding: bool | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.meta = meta
        self.embedding_dim = meta.embedding_dim
        if not self.model_path.is_file():
            raise ArtifactMismatch(f"{self.model_path}: ONNX model file not found")

        threads = intra_op_threads if intra_op_threads is not None else settings.intra_op_threads
        self.intra_op_threads = threads or usable_cores()
        self.inter_op_threads = settings.inter_op_threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if settings.allow_spinning else "0"
        )

        available = ort.get_available_providers()
        requested = choose_providers(settings.providers, available, settings)
        self.requested_providers = _provider_names(requested)
        self._session = self._create(options, requested, require_gpu)

        self.active_providers: list[str] = list(self._session.get_providers())
        if TENSORRT in self.active_providers:
            self.device = "tensorrt"
        elif CUDA in self.active_providers:
            self.device = "cuda"
        else:
            self.device = "cpu"
        missing = [p for p in self.requested_providers if p not in self.active_providers]
        if missing:
            logger.warning("requested providers %s are not active after session creation; "
                           "running on %s", missing, self.active_providers)
        wants_gpu = settings.providers in ("cuda", "tensorrt") or require_gpu
        if self.device == "cpu" and wants_gpu:
            message = (f"{self.model_path.name}: no GPU execution provider is active "
                       f"(providers setting {settings.providers!r}, onnxruntime "
                       f"{ort.__version__} offers {available}, active {self.active_providers})")
            if require_gpu:
                raise GpuUnavailableError(
                    f"{message}; require_gpu is set. Install onnxruntime-gpu (the `gpu` extra) "
                    "and check the CUDA/cuDNN libraries, or unset SIMSEARCH_REQUIRE_GPU"
                )
            logger.warning("%s; degrading to CPU", message)
        logger.info(
            "ONNX session for %s: active providers %s (device %s), intra-op threads %d, "
            "inter-op threads %d", self.model_path.name, self.active_providers, self.device,
            self.intra_op_threads, self.inter_op_threads,
        )
        self.input_name, self.output_name, self.max_batch = self._check_graph()
        # IO binding: on by default on a GPU provider; `io_binding=True` forces it (on the CPU
        # the "device" buffers live in host memory, which is how tests exercise this path).
        self.io_binding = (self.device != "cpu") if io_binding is None else io_binding
        self._bind_device = ("cuda", 0) if self.device != "cpu" else ("cpu", 0)
        self._bound_inputs: OrderedDict[tuple[int, ...], ort.OrtValue] = OrderedDict()
        self._bind_lock = threading.Lock()
        if self.io_binding:
            logger.info("IO binding on: inputs bound to %s device buffers", self._bind_device[0])

    # ------------------------------------------------------------------ loading

    def _create(
        self,
        options: ort.SessionOptions,
        providers: list[str | tuple[str, dict[str, Any]]],
        require_gpu: bool,
    ) -> ort.InferenceSession:
        path = str(self.model_path)
        try:
            return ort.InferenceSession(path, sess_options=options, providers=providers)
        # onnxruntime's pybind exceptions (Fail, InvalidProtobuf, EPFail, ...) derive from
        # Exception only, so nothing narrower catches them.
        except Exception as exc:
            first_error = exc
        if _provider_names(providers) == [CPU]:
            raise ArtifactMismatch(
                f"{self.model_path}: onnxruntime cannot load the model: {first_error}"
            ) from first_error
        # A GPU provider can fail at session creation (driver, missing libraries): tell, then
        # find out whether the model itself loads on CPU.
        logger.error("creating the session with %s failed: %s; retrying on CPU only",
                     _provider_names(providers), first_error)
        try:
            session = ort.InferenceSession(path, sess_options=options, providers=[CPU])
        except Exception as exc:
            raise ArtifactMismatch(
                f"{self.model_path}: onnxruntime cannot load the model: {exc}"
            ) from exc
        if require_gpu:
            raise GpuUnavailableError(
                f"{self.model_path.name}: the GPU providers {_provider_names(providers)} failed "
                f"to start ({first_error}); require_gpu is set"
            ) from first_error
        return session

    def _check_graph(self) -> tuple[str, str, int | None]:
        """Graph inputs/outputs vs the meta; ArtifactMismatch naming the file on any mismatch."""
        meta, where = self.meta, f"{self.model_path}"
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ArtifactMismatch(
                f"{where}: expected one graph input, found {[i.name for i in inputs]}"
            )
        graph_in = inputs[0]
        if graph_in.name != meta.input.name:
            raise ArtifactMismatch(
                f"{where}: graph input is {graph_in.name!r}, the meta says {meta.input.name!r}"
            )
        if graph_in.type != "tensor(float)":
            raise ArtifactMismatch(
                f"{where}: graph input {graph_in.name!r} is {graph_in.type}, expected float32"
            )
        shape = list(graph_in.shape)
        if len(shape) != 4 or len(meta.input.shape) != 4:
            raise ArtifactMismatch(
                f"{where}: input must be [batch,3,height,width]; graph has {shape}, meta has "
                f"{meta.input.shape}"
            )
        if isinstance(shape[1], int) and shape[1] != 3:
            raise ArtifactMismatch(f"{where}: input has {shape[1]} channels, expected 3")
        if isinstance(shape[2], int) or isinstance(shape[3], int):
            raise ArtifactMismatch(
                f"{where}: input {shape} has a fixed height/width; multi-scale extraction "
                "needs dynamic spatial axes (re-export with dynamic height and width)"
            )
        for axis, (graph_dim, meta_dim) in enumerate(zip(shape, meta.input.shape, strict=True)):
            if isinstance(graph_dim, int) and isinstance(meta_dim, int) and graph_dim != meta_dim:
                raise ArtifactMismatch(
                    f"{where}: input axis {axis} is {graph_dim} in the graph, {meta_dim} in "
                    "the meta"
                )
        max_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None

        outputs = {o.name: o for o in self._session.get_outputs()}
        if meta.output.name not in outputs:
            raise ArtifactMismatch(
                f"{where}: graph has no output {meta.output.name!r} (outputs: {list(outputs)})"
            )
        out_shape = list(outputs[meta.output.name].shape)
        if len(out_shape) != 2:
            raise ArtifactMismatch(f"{where}: output {meta.output.name!r} has shape {out_shape}, "
                                   "expected [batch, dim]")
        meta_out_dim = meta.output.shape[-1] if meta.output.shape else None
        if isinstance(meta_out_dim, int) and meta_out_dim != meta.embedding_dim:
            raise ArtifactMismatch(f"{where}: meta output shape {meta.output.shape} disagrees "
                                   f"with embedding_dim {meta.embedding_dim}")
        dim = out_shape[-1]
        if isinstance(dim, int):
            if dim != meta.embedding_dim:
                raise ArtifactMismatch(f"{where}: graph output {meta.output.name!r} has {dim} "
                                       f"dimensions, the meta says {meta.embedding_dim}")
        else:
            # Symbolic last axis: find out with one tiny run.
            side = max(32, meta.preprocessing.min_side)
            probe = np.zeros((1, 3, side, side), dtype=np.float32)
            got = self._session.run([meta.output.name], {graph_in.name: probe})[0]
            if got.shape != (1, meta.embedding_dim):
                raise ArtifactMismatch(f"{where}: graph output has shape {got.shape} for one "
                                       f"image, expected (1, {meta.embedding_dim})")
        return graph_in.name, meta.output.name, max_batch

    # ------------------------------------------------------------------ running

    def run(self, batch: np.ndarray) -> np.ndarray:
        """[B,3,H,W] float32 -> [B,D] float32, each row L2-normalised.

        Rows are normalised here when the graph does not do it (`l2_normalized_in_graph`), so
        callers always get the official per-scale output (docs/ALGORITHMS.md 1.7 step 5).
        Thread-safe (onnxruntime sessions are), though the batcher calls it from one thread.
        """
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a [B,3,H,W] batch, got shape {batch.shape}")
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise ValueError(f"the graph takes at most {self.max_batch} images per run, "
                             f"got {batch.shape[0]}")
        feed = np.ascontiguousarray(batch, dtype=np.float32)  # no copy for batcher output
        if self.io_binding:
            out = self._run_bound(feed)
        else:
            out = self._session.run([self.output_name], {self.input_name: feed})[0]
        if out.shape != (batch.shape[0], self.embedding_dim):
            raise ArtifactMismatch(f"{self.model_path}: graph returned shape {out.shape} for a "
                                   f"batch of {batch.shape[0]}, expected [B, {self.embedding_dim}]")
        out = out.astype(np.float32, copy=False)
        if not self.meta.l2_normalized_in_graph:
            out = l2_normalize(out, axis=1).astype(np.float32, copy=False)
        return out

    def _run_bound(self, feed: np.ndarray) -> np.ndarray:
        """One run with IO binding: feed [B,3,H,W] float32 (host) -> [B,D] (host).

        The device buffer for this shape is reused (update_inplace copies host -> device), so
        a known shape costs one copy in and one small copy out, no device allocation. The lock
        keeps two concurrent callers of one shape from overwriting each other's input.
        """
        device, device_id = self._bind_device
        with self._bind_lock:
            bound = self._bound_inputs.get(feed.shape)
            if bound is None:
                bound = ort.OrtValue.ortvalue_from_numpy(feed, device, device_id)
                self._bound_inputs[feed.shape] = bound
                while len(self._bound_inputs) > _BOUND_INPUTS_KEPT:
                    self._bound_inputs.popitem(last=False)
            else:
                bound.update_inplace(feed)
                self._bound_inputs.move_to_end(feed.shape)
            binding = self._session.io_binding()
            binding.bind_ortvalue_input(self.input_name, bound)
            binding.bind_output(self.output_name, "cpu")
            self._session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]

    def describe(self) -> dict[str, Any]:
        """What /health and logs may show about this session."""
        return {
            "model_file": self.model_path.name,
            "providers": list(self.active_providers),
            "device": self.device,
            "intra_op_threads": self.intra_op_threads,
            "inter_op_threads": self.inter_op_threads,
            "io_binding": self.io_binding,
        }
