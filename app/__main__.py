"""`python -m app`: serve the API with uvicorn on SIMSEARCH_HOST:SIMSEARCH_PORT (one worker).

The launcher owns the bind, so it enforces the access rule the app cannot see: with no API
keys configured it binds only to loopback, unless SIMSEARCH_ALLOW_UNAUTHENTICATED=true says
otherwise; either way the decision is logged. SIGTERM (and Ctrl-C) shut down gracefully:
uvicorn stops accepting, lets in-flight requests finish (at most shutdown_timeout_s), then the
lifespan drains the inference queue and closes the store with a final snapshot; the process
then exits 0. Exit codes: 0 clean shutdown, 2 refused configuration, 3 startup failed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

from app.config import Settings, get_settings, is_loopback_host

logger = logging.getLogger("app.launcher")

EXIT_REFUSED = 2
EXIT_STARTUP_FAILED = 3


def bind_decision(settings: Settings, host: str) -> tuple[bool, str]:
    """(allowed, why) for serving on `host` with these settings."""
    if settings.api_keys:
        return True, (
            f"binding {host}: {len(settings.api_keys)} API key(s) configured; requests need "
            "a key (except /health/live, /health/ready and the API docs)"
        )
    if is_loopback_host(host):
        return True, (
            f"binding {host} (loopback) without API keys: only this machine can reach the "
            "service; set SIMSEARCH_API_KEYS before binding other addresses"
        )
    if settings.allow_unauthenticated:
        return True, (
            f"binding {host} WITHOUT authentication (SIMSEARCH_ALLOW_UNAUTHENTICATED=true): "
            "anyone who reaches this address may search, index and delete"
        )
    return False, (
        f"refusing to bind {host}: no API keys are configured, so only a loopback host "
        "(127.0.0.1, ::1, localhost) is allowed. Set SIMSEARCH_API_KEYS='<key>:write,...' "
        "or, behind something that authenticates, SIMSEARCH_ALLOW_UNAUTHENTICATED=true"
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app", description="Serve the image-similarity API (uvicorn, 1 worker)."
    )
    parser.add_argument("--host", help="bind address (default: SIMSEARCH_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: SIMSEARCH_PORT or 8000)")
    return parser.parse_args(argv)


def _keep_exit_code_zero(sig: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the signal it shut down for once it is done; by then the shutdown was
    graceful, so the process should exit 0 rather than die of the signal."""
    logger.info("shutdown complete after signal %s", signal.Signals(sig).name)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host = args.host or settings.host
    port = args.port or settings.port
    allowed, why = bind_decision(settings, host)
    if not allowed:
        logger.error(why)
        return EXIT_REFUSED
    # Before the model loads: a backend whose extra is not installed is a configuration error.
    from app.index.factory import missing_client

    missing = missing_client(settings)
    if missing is not None:
        logger.error(missing)
        return EXIT_REFUSED
    if settings.api_keys or is_loopback_host(host):
        logger.info(why)
    else:
        logger.warning(why)

    import uvicorn

    config = uvicorn.Config(
        "app.main:app",
        host=host,
        port=port,
        workers=1,
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
        log_level=settings.log_level.lower(),
        access_log=settings.access_log,
    )
    server = uvicorn.Server(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _keep_exit_code_zero)
    server.run()
    if not server.started:
        logger.error("startup failed; see the errors above")
        return EXIT_STARTUP_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
