"""Real ``tierpolicy serve`` processes for the tests, on free ports, stopped whatever happens.

:class:`ServiceProcess` runs the command line's ``serve`` in a subprocess with an
environment of its own (every setting of the service the caller's environment has is
dropped, so a developer's ``JWT_PUBLIC_KEY`` or ``DATABASE_URL`` cannot leak in), waits
until ``/health/ready`` answers 200, and stops it (terminate, then kill). Its output
goes to a log file whose tail is in every failure message. :func:`running` starts
several at once and stops them all when the ``with`` block ends, failed or not.

The processes share a database, so migrations run once, before any of them starts
(:func:`upgrade_database`, which is ``tierpolicy db upgrade``), and the processes are
told never to migrate: two replicas must not race on the schema.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from redisserver import free_port
from servicesupport import SECRET
from tierpolicy.service import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

READY_TIMEOUT = 30.0
"""Seconds a process may take to answer ``/health/ready``: two cores shared with other test runs."""

STOP_TIMEOUT = 10.0
"""Seconds a process may take to stop after SIGTERM before it is killed."""

_PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it


def tierpolicy_command() -> list[str]:
    """The ``tierpolicy`` command of the running interpreter's environment.

    The installed entry point when there is one (the command users run), else the same
    ``main`` through ``python -c``.
    """
    script = Path(sys.executable).with_name("tierpolicy")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from tierpolicy.cli import main; main()"]


def service_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any of the service's settings, plus ``settings``.

    Settings are matched case-insensitively, as the service reads them; ``settings`` are
    given by field name (``database_url``) and set in upper case (``DATABASE_URL``).
    """
    names = set(Settings.model_fields)
    environment = {key: value for key, value in os.environ.items() if key.lower() not in names}
    environment.update({name.upper(): value for name, value in settings.items()})
    return environment


def upgrade_database(database_url: str, *, timeout: float = 60.0) -> None:
    """Run ``tierpolicy db upgrade`` on ``database_url``; fail the test with its output when it fails."""
    result = subprocess.run(  # noqa: S603  our own command line with fixed arguments
        [*tierpolicy_command(), "db", "upgrade"],
        env=service_environment(database_url=database_url),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"tierpolicy db upgrade exited with {result.returncode}:\n{result.stdout}{result.stderr}")


class ServiceProcess:
    """One ``tierpolicy serve`` process.

    Args:
        name: What failure messages call it (``replica-a``); also its log file's name.
        directory: Where its log file goes.
        policy_dir: ``POLICY_DIR``.
        database_url: ``DATABASE_URL`` (already migrated: it runs with ``MIGRATE_ON_STARTUP=never``).
        redis_url: ``REDIS_URL``.
        settings: Further settings by field name (``{"rate_limit_max_requests": "5"}``).
    """

    def __init__(
        self,
        name: str,
        directory: Path,
        *,
        policy_dir: Path,
        database_url: str,
        redis_url: str,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.log = directory / f"{name}.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.environment = service_environment(
            policy_dir=str(policy_dir),
            database_url=database_url,
            redis_url=redis_url,
            jwt_secret=SECRET,
            log_level="warning",
            migrate_on_startup="never",
            **(settings or {}),
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def client(self, timeout: float = 10.0) -> httpx.Client:
        """An HTTP client whose base URL is this process."""
        return httpx.Client(base_url=self.url, timeout=timeout)

    def start(self) -> None:
        """Start the process on a free port (without waiting for it: see :meth:`wait_ready`)."""
        self.port = free_port()
        with self.log.open("wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(  # noqa: S603  our own command line with fixed arguments
                [*tierpolicy_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self, limit: int = 4000) -> str:
        """The last ``limit`` characters the process wrote (stdout and stderr)."""
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until ``/health/ready`` answers 200; fail the test (with the output) when it does not.

        A process that could not bind its port (taken since it was chosen) is started
        again on another one.
        """
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if self._ready_or_exited(timeout):
                return
            assert self.process is not None  # it exited; stop() was not called yet
            output = self.output()
            if "address already in use" in output.lower() and attempt < _PORT_ATTEMPTS:
                self.stop()
                self.start()
                continue
            code = self.process.returncode
            self.stop()
            pytest.fail(f"{self.name} exited with {code} before it was ready:\n{output}")

    def _ready_or_exited(self, timeout: float) -> bool:
        """Whether it became ready; ``False`` when it exited first. Fails the test on timeout."""
        if self.process is None:
            self.start()
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    response = client.get(f"{self.url}/health/ready")
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == httpx.codes.OK:
                        return True
                    last = f"{response.status_code} {response.text[:500]}"
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"{self.name} was not ready within {timeout:g} s (last answer: {last}):\n{self.output()}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout`` seconds) and wait until it is gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.process = None


@contextlib.contextmanager
def running(
    *services: ServiceProcess, timeout: float = READY_TIMEOUT
) -> Iterator[tuple[ServiceProcess, ...]]:
    """Start ``services`` together, wait until each is ready, and stop them all when the block ends."""
    try:
        for service in services:
            service.start()
        for service in services:
            service.wait_ready(timeout)
        yield services
    finally:
        for service in services:
            service.stop()
