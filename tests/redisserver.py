"""A redis-server the tests start themselves, on a free port, so they can stop and restart it.

Tests never touch the machine's shared Redis: each test session (each xdist worker)
starts its own throw-away server with no persistence, in a temporary directory. When
``redis-server`` is missing the Redis tests skip with the reason, except under
``CI=true``, where a missing service is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")


TIMEOUTS = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
"""Client timeouts for tests that are not about timeouts: a loaded CI machine can take 250 ms."""


def free_port(below: int = 65536) -> int:
    """A TCP port nobody listens on right now, below ``below``."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port < below:
            return port


def require_redis_server() -> str:
    """The redis-server binary; skip (fail under CI=true) when there is none."""
    if REDIS_SERVER is None:
        reason = "redis-server is not installed; the Redis tests need it to start their own server"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return REDIS_SERVER


class RedisServer:
    """One redis-server process of the tests' own.

    Args:
        directory: Where its (unused) working files go.
        port: The port; a free one when not given.
    """

    def __init__(self, directory: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.port = port or free_port()
        self.extra = tuple(extra)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again, on the same port) and wait until it answers PING.

        Starting a server that is already running does nothing.
        """
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(  # noqa: S603  a fixed binary with fixed arguments
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        self.stop()
        pytest.fail(f"redis-server on port {self.port} did not start:\n{log}")

    def ping(self) -> bool:
        """Whether the server answers PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server and wait until it is gone."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def unique_prefix() -> str:
    """A key prefix no other test uses, so tests sharing a server own their keys."""
    return f"test-{uuid.uuid4().hex[:12]}:"


class RedisClusterServers:
    """A three-node Redis Cluster (primaries only) of the tests' own, on free ports.

    Args:
        directory: Where each node keeps its cluster configuration file.
    """

    def __init__(self, directory: Path) -> None:
        self.nodes = []
        for i in range(3):
            node_dir = directory / f"node{i}"
            node_dir.mkdir()
            self.nodes.append(
                RedisServer(
                    node_dir,
                    # A node's cluster bus listens on its port + 10000, which must exist too.
                    free_port(below=55536),
                    extra=("--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf")),
                )
            )

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:<first node>``."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> None:
        """Start the nodes, join them into a cluster and wait until it reports ``cluster_state:ok``."""
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            self.stop()
            pytest.fail("redis-cli is needed to form the test cluster")
        subprocess.run(  # noqa: S603  a fixed binary with fixed arguments
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = subprocess.run(  # noqa: S603  as above
                [cli, "-p", str(self.nodes[0].port), "cluster", "info"],
                check=False,
                capture_output=True,
                timeout=5,
            ).stdout
            if b"cluster_state:ok" in info:
                return
            time.sleep(0.1)
        self.stop()
        pytest.fail("the test Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()
