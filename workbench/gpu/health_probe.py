#!/usr/bin/env python
"""Start the service on a model, read GET /health, stop it: what the service says it runs.

    python -m workbench.gpu.health_probe --model-dir DIR [--require-gpu] [--set GROUP.FIELD=VALUE]

uvicorn app.main:app on 127.0.0.1 (a free port, an empty data directory), as
workbench/servers/service.py starts it. With --require-gpu the service is started with
SIMSEARCH_REQUIRE_GPU=true, so it refuses to start unless a GPU execution provider is active,
and this script exits 1 unless /health reports one. Prints one JSON object: the /health body,
seconds to ready, and `gpu_active` (a GPU provider among the providers /health reports).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from workbench.servers.service import Server, parse_sets, server_env

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def main(argv: list[str] | None = None) -> int:
    import httpx

    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--require-gpu", action="store_true")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="GROUP.FIELD=VALUE",
        help="service settings override (repeatable)",
    )
    p.add_argument("--ready-timeout", type=float, default=120.0)
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="health-probe-") as tmp:
        env = server_env(Path(tmp) / "data", args.model_dir.resolve(), parse_sets(args.set))
        if args.require_gpu:
            env["SIMSEARCH_REQUIRE_GPU"] = "true"
        server = Server(env, Path(tmp) / "server.log")
        try:
            try:
                ready_s = server.wait_ready(args.ready_timeout)
            except (RuntimeError, TimeoutError):
                print((Path(tmp) / "server.log").read_text()[-4000:], file=sys.stderr)
                raise
            health = httpx.get(f"{server.base}/health", timeout=10.0).json()
        finally:
            server.stop()
    providers = (health.get("model") or {}).get("providers") or []
    result = {
        "ready_s": round(ready_s, 2),
        "require_gpu": args.require_gpu,
        "gpu_active": any(p in GPU_PROVIDERS for p in providers),
        "health": health,
    }
    text = json.dumps(result)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)
    return 1 if args.require_gpu and not result["gpu_active"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
