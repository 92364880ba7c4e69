"""``budgetd up``: the one-command quick start.

Starts three child processes: ``budgetd serve`` on the embedded SQLite, the built-in fake
upstream, and the shim on :4000 with the packaged config (the seed's ``azure-gpt-3.5`` and
``mistral`` plus ``gpt-4o-mini``, priced like their real counterparts). Honours the variables of
the separate commands: ``SHIM_ADDR``, ``BUDGETD_GRPC_ADDR``, ``BUDGETD_DATABASE_URL``,
``BUDGETD_MASTER_KEY`` (generated and printed when unset), ``SHIM_CONFIG`` and
``FAKE_UPSTREAM_ADDR``. Ctrl-C or SIGTERM stops the children in reverse order (the shim first,
so its last charges still reach budgetd) and waits for each.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from types import FrameType

import httpx

_STOP_TIMEOUT_SECONDS = 15.0
_READY_TIMEOUT_SECONDS = 30.0


class _Child:
    def __init__(self, name: str, argv: list[str], env: Mapping[str, str]) -> None:
        self.name = name
        # A session of its own: a terminal's Ctrl-C reaches only `up`, which stops the
        # children in order instead of all of them at once.
        self.proc = subprocess.Popen(argv, env=dict(env), start_new_session=True)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(_STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the stack until Ctrl-C / SIGTERM or until a child dies; returns the exit code."""
    env = dict(os.environ if environ is None else environ)
    master = env.get("BUDGETD_MASTER_KEY")
    generated = not master
    if not master:
        master = "sk-" + secrets.token_urlsafe(24)
    admin = env.get("BUDGETD_ADMIN_TOKEN") or secrets.token_urlsafe(32)
    grpc_addr = env.get("BUDGETD_GRPC_ADDR", "127.0.0.1:50051")
    shim_addr = env.get("SHIM_ADDR", "127.0.0.1:4000")
    fake_addr = env.get("FAKE_UPSTREAM_ADDR", "127.0.0.1:4001")
    common = {
        **env,
        "BUDGETD_MASTER_KEY": master,
        "BUDGETD_ADMIN_TOKEN": admin,
        "BUDGETD_GRPC_ADDR": grpc_addr,
        "BUDGETD_DATABASE_URL": env.get("BUDGETD_DATABASE_URL", "sqlite:///budgetd.db"),
        "BUDGETD_ADDR": grpc_addr,
        "SHIM_ADDR": shim_addr,
        "FAKE_UPSTREAM_URL": f"http://{fake_addr}/v1",
    }
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    py = sys.executable
    children: list[_Child] = []
    code = 0
    try:
        children.append(_Child("budgetd", [py, "-m", "budgetd", "serve"], common))
        children.append(
            _Child(
                "fake-upstream",
                [py, "-m", "proxy_shim", "fake-upstream", "--addr", fake_addr],
                common,
            )
        )
        children.append(_Child("shim", [py, "-m", "proxy_shim", "serve"], common))
        if not _wait_ready(f"http://{shim_addr}/health/readiness", children, stop):
            if not stop.is_set():
                print("budgetd up: the stack did not become ready", file=sys.stderr)
                code = 1
        else:
            _banner(shim_addr, master, generated)
            while not stop.wait(0.5):
                dead = [c for c in children if c.proc.poll() is not None]
                if dead:
                    print(
                        f"budgetd up: {dead[0].name} exited ({dead[0].proc.returncode}); stopping",
                        file=sys.stderr,
                    )
                    code = 1
                    break
    finally:
        for child in reversed(children):
            child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code


def _wait_ready(url: str, children: list[_Child], stop: threading.Event) -> bool:
    deadline = time.monotonic() + _READY_TIMEOUT_SECONDS
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline and not stop.is_set():
            if any(c.proc.poll() is not None for c in children):
                return False
            try:
                if client.get(url).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            stop.wait(0.1)
    return False


def _banner(shim_addr: str, master: str, generated: bool) -> None:
    key_line = (
        f"generated master key: {master}  (set BUDGETD_MASTER_KEY to choose one)"
        if generated
        else "master key: from BUDGETD_MASTER_KEY"
    )
    print(
        f"budgetd up: ready on http://{shim_addr}\n  {key_line}\n"
        "  models: azure-gpt-3.5, mistral, gpt-4o-mini (fake upstream, real prices)\n"
        "  Ctrl-C stops everything.",
        flush=True,
    )
