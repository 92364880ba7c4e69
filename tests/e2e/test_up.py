"""``budgetd up`` starts the whole stack, serves the seed's first call, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.e2e


def test_up_serves_the_seed_and_stops_on_sigterm(tmp_path: Path) -> None:
    shim_port = free_port()
    env = {
        **os.environ,
        "BUDGETD_MASTER_KEY": "sk-1234",
        "SHIM_ADDR": f"127.0.0.1:{shim_port}",
        "BUDGETD_GRPC_ADDR": f"127.0.0.1:{free_port()}",
        "BUDGETD_METRICS_ADDR": "",
        "BUDGETD_DATABASE_URL": f"sqlite:///{tmp_path / 'up.db'}",
        "FAKE_UPSTREAM_ADDR": f"127.0.0.1:{free_port()}",
        "SHIM_OUTBOX_PATH": str(tmp_path / "shim-outbox.db"),
    }
    env.pop("BUDGETD_ADMIN_TOKEN", None)
    with (tmp_path / "up.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "budgetd", "up"], env=env, stdout=log, stderr=log
        )
    try:
        base = f"http://127.0.0.1:{shim_port}"
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=base, headers={"Authorization": "Bearer sk-1234"}) as client:
            while True:
                assert proc.poll() is None, (tmp_path / "up.log").read_text()
                try:
                    if client.get("/health/readiness").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
                time.sleep(0.1)
            answer = client.post(
                "/chat/completions",
                json={
                    "model": "azure-gpt-3.5",
                    "user": "ishaan3",
                    "messages": [{"role": "user", "content": "what time is it"}],
                },
            )
            assert answer.status_code == 200, answer.text
            assert client.get("/customer/info?end_user_id=ishaan3").json()["spend"] > 0
        # `up` polls readiness on its own schedule: let it see the stack ready before SIGTERM.
        while "ready on" not in (tmp_path / "up.log").read_text():
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, (tmp_path / "up.log").read_text()
    assert "ready on" in (tmp_path / "up.log").read_text()
