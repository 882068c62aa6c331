#!/usr/bin/env python
"""Run a local Milvus standalone server from the `milvus` wheel (dev extra), without Docker.

    python -m workbench.servers.milvus_server --data-dir /tmp/milvus [--port 19530]

For development, tests and benchmarks on one machine. Production runs the official stack
(`docker compose --profile milvus up`, or a Milvus cluster). The wheel holds the real Milvus
2.3.5 server with embedded etcd and local storage; this wrapper fixes what it needs on a
shared machine:
- its components talk over loopback (they bind all interfaces, which 2.3.5 cannot change);
- its embedded etcd listens on free loopback ports through an etcd config file, instead of
  its defaults 2379/2380, which collide with any other etcd or Milvus on the machine;
- `/healthz` OK is not ready: `wait_ready` also waits for a client call to succeed;
- a graceful stop with loaded collections waits 1800 s by default: the grace period is set
  to a few seconds and `stop` still SIGKILLs after a bounded wait;
- a restart after SIGKILL waits for the dead server's etcd sessions to expire: their TTL is
  10 s instead of 30 s;
- auto-compaction after deletes rebuilds indexes in the background and can take every core:
  off unless asked for.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, the repository's packages are not on the path yet.
from workbench.servers.ports import free_port

logger = logging.getLogger("milvus_server")

_COMPONENTS = (
    "rootCoord",
    "proxy",
    "queryCoord",
    "queryNode",
    "indexNode",
    "dataCoord",
    "dataNode",
)


@dataclass
class LocalMilvus:
    """One Milvus standalone process over `data_dir`, reachable at `uri`."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    auto_compaction: bool = False
    # proxy.timeTickInterval (Milvus's default: 200). A Strong read waits one to two ticks,
    # and so does an acknowledgement under the store's default strong_wait "write". Measured
    # on 2.3.5 (1,000 x 1280 rows; Strong query p50, idle CPU of the server in % of a core):
    # 200 ms: 199 ms, 3.0 %; 50 ms: 97 ms, 6.9 %; 20 ms: 35 ms, 12.6 %; 10 ms: 19.6 ms,
    # 21.6 %; 5 ms: 10.3 ms, 30.8 %. Bounded reads: 2-3 ms at every tick.
    time_tick_ms: int = 50
    # Embedded etcd (client, peer) ports; chosen once, kept across restarts.
    etcd_ports: tuple[int, int] | None = None
    server: Any = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        proc = None if self.server is None else self.server.server_proc
        return None if proc is None else int(proc.pid)

    def start(self, timeout: float = 120.0) -> LocalMilvus:
        """Start (unpacking the binaries on first use) and wait until a client call works."""
        import milvus

        self.data_dir.mkdir(parents=True, exist_ok=True)
        server = milvus.MilvusServer(
            milvus.MilvusServerConfig(),
            data_dir=str(self.data_dir),
            wait_for_started=False,
            proxy_port=self.port,
        )
        for component in _COMPONENTS:
            server.config.set(f"{component}.ip", "127.0.0.1")
        # The embedded etcd listens on free loopback ports of ours, not on 2379/2380 (its
        # defaults, which collide with any other etcd or Milvus on the machine).
        server.config.set("etcd_port", self._etcd_client_port())
        # etcd.config.path is not in the wheel's template, so it is added to it.
        embed = "  use:\n    embed: true"
        assert embed in server.config.template_text
        server.config.template_text = server.config.template_text.replace(
            embed, f"  config:\n    path: {self._write_etcd_config()}\n{embed}", 1
        )
        server.config.set("common.gracefulStopTimeout", 5)
        server.config.set("proxy.timeTickInterval", self.time_tick_ms)
        # A killed server's etcd sessions block the next start until they expire (30 s by
        # default; measured: a restart 1 s after SIGKILL waited ~55 s): 10 s here.
        server.config.set("common.session.ttl", 10)
        server.config.set(
            "dataCoord.compaction.enableAutoCompaction", str(self.auto_compaction).lower()
        )
        server.start()
        self.server = server
        self.wait_ready(timeout)
        return self

    def _etcd_client_port(self) -> int:
        if self.etcd_ports is None:
            self.etcd_ports = (free_port(), free_port())
        return self.etcd_ports[0]

    def _write_etcd_config(self) -> Path:
        """embed.Config of the embedded etcd: loopback-only client and peer URLs."""
        self._etcd_client_port()
        assert self.etcd_ports is not None
        client, peer = (f"http://127.0.0.1:{p}" for p in self.etcd_ports)
        path = self.data_dir / "embed-etcd.yaml"
        path.write_text(
            f"listen-client-urls: {client}\n"
            f"advertise-client-urls: {client}\n"
            f"listen-peer-urls: {peer}\n"
            f"initial-advertise-peer-urls: {peer}\n"
            f"initial-cluster: default={peer}\n"
        )
        return path

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.server.webservice_port}/healthz"
        while True:
            if self.server.server_proc is None or self.server.server_proc.poll() is not None:
                raise RuntimeError(f"milvus exited during startup; see {self.data_dir}/logs")
            if _healthz_ok(health) and _client_call_ok(self.uri):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"milvus at {self.uri} not ready after {timeout:.0f}s")
            time.sleep(0.5)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds (exit codes -6/-9 are normal here)."""
        if self.server is None or self.server.server_proc is None:
            return
        proc = self.server.server_proc
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except Exception:  # subprocess.TimeoutExpired: the grace period ran out
            proc.kill()
            proc.wait(timeout=30)
        self._forget()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.server is None or self.server.server_proc is None:
            return
        self.server.server_proc.send_signal(signal.SIGKILL)
        self.server.server_proc.wait(timeout=30)
        self._forget()

    def _forget(self) -> None:
        for handle in self.server.proc_fds.values():
            handle.close()
        self.server.proc_fds.clear()
        self.server.server_proc = None

    def restart_after_crash(self, timeout: float = 180.0) -> None:
        """Start again on the same directory and port. Restarting 1-2 s after a SIGKILL can
        panic on leftover etcd sessions (they expire after ~10-15 s), so retry until then."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.start(timeout=max(10.0, deadline - time.monotonic()))
                return
            except (RuntimeError, TimeoutError) as exc:
                self.stop(grace=2.0)
                if time.monotonic() > deadline:
                    raise
                logger.info("milvus restart failed (%s); retrying", exc)
                time.sleep(3.0)


def _healthz_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return b"OK" in resp.read()
    except (urllib.error.URLError, OSError):
        return False


def _client_call_ok(uri: str) -> bool:
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    try:
        client = MilvusClient(uri=uri, timeout=5)
    except (MilvusException, OSError):
        return False
    try:
        client.list_collections(timeout=5)
        return True
    except MilvusException:
        return False
    finally:
        with contextlib.suppress(MilvusException):
            client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="server data and logs")
    parser.add_argument("--port", type=int, default=19530, help="client (gRPC) port")
    parser.add_argument(
        "--time-tick-ms",
        type=int,
        default=50,
        help="proxy.timeTickInterval: Strong reads (and, by default, the API's add/delete "
        "acknowledgements) wait one to two ticks",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # SIGTERM stops the server as Ctrl+C does (the finally block below).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    server = LocalMilvus(args.data_dir, port=args.port, time_tick_ms=args.time_tick_ms).start()
    print(f"milvus ready at {server.uri} (pid {server.pid}); Ctrl+C stops it", flush=True)
    try:
        while server.server is not None and server.server.server_proc.poll() is None:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
