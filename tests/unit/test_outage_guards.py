"""The pure parts of outage handling: call deadlines, the store health check, gateway auth."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from budgetd.api.auth import AdminAuth, GatewayAuth
from budgetd.api.tls import server_credentials
from budgetd.errors import DeadlineExceeded, Unauthenticated, Unavailable
from budgetd.settings import Settings
from budgetd.store import deadlines, migrate
from budgetd.store.database import Database
from budgetd.store.health import StoreHealth

# -- deadlines ------------------------------------------------------------------------------


def test_store_work_has_no_call_deadline_outside_a_call() -> None:
    assert deadlines.store_seconds_left() is None
    with deadlines.store_work(5.0):
        left = deadlines.store_seconds_left()
        assert left is not None
        assert 4.9 < left <= 5.0
    assert deadlines.store_seconds_left() is None


def test_store_work_ends_before_the_calls_deadline() -> None:
    with deadlines.call_deadline(1.0), deadlines.store_work(5.0):
        left = deadlines.store_seconds_left()
        assert left is not None
        # A margin is kept for the answer to travel back.
        assert 0.85 < left < 0.95
    with deadlines.call_deadline(10.0), deadlines.store_work(0.5):
        left = deadlines.store_seconds_left()
        assert left is not None
        assert left <= 0.5


def test_nested_deadlines_keep_the_earliest() -> None:
    with deadlines.call_deadline(0.5), deadlines.call_deadline(30.0), deadlines.store_work(5.0):
        left = deadlines.store_seconds_left()
        assert left is not None
        assert left < 0.5


@pytest.mark.parametrize("left", [0.0, -1.0])
def test_a_deadline_already_past_never_reaches_the_store(left: float) -> None:
    with pytest.raises(DeadlineExceeded), deadlines.call_deadline(left):
        pytest.fail("the call ran")


def test_store_work_after_the_deadline_passed_is_refused() -> None:
    with deadlines.call_deadline(0.02):
        time.sleep(0.05)
        with pytest.raises(DeadlineExceeded), deadlines.store_work(5.0):
            pytest.fail("the store was touched")


def test_a_deadline_exceeded_is_an_outage_to_retry() -> None:
    assert issubclass(DeadlineExceeded, Unavailable)


# -- the store health check -----------------------------------------------------------------


def test_store_health_reports_an_unreachable_store_and_its_return(tmp_path: Path) -> None:
    home = tmp_path / "data"
    db = Database.connect(f"sqlite:///{home / 'budgetd.db'}", pool_size=2)
    changes: list[bool] = []
    health = StoreHealth(db, interval_s=0.2, on_change=changes.append)
    try:
        # The directory is missing: SQLite cannot open the file.
        assert health.check() is False
        assert changes == [False]
        assert db.outage is not None
        started = time.monotonic()
        with pytest.raises(Unavailable, match="store unavailable"), db.read():
            pytest.fail("a unit of work ran during the outage")
        assert time.monotonic() - started < 0.1  # refused at once

        home.mkdir()
        migrate.upgrade(db)
        assert health.check() is True
        assert changes == [False, True]
        assert db.outage is None
        with db.read() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar() == 1
        assert health.check() is True
        assert changes == [False, True]  # only transitions are reported
    finally:
        health.stop()
        db.dispose()


def test_store_health_probes_on_its_own_thread(tmp_path: Path) -> None:
    home = tmp_path / "data"
    db = Database.connect(f"sqlite:///{home / 'budgetd.db'}", pool_size=2)
    health = StoreHealth(db, interval_s=0.05)
    health.start()
    try:
        deadline = time.monotonic() + 5
        while db.outage is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert db.outage is not None and not health.up
        home.mkdir()
        while db.outage is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert db.outage is None and health.up
    finally:
        health.stop()
        db.dispose()


# -- the gateway token ----------------------------------------------------------------------


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_without_a_gateway_token_the_hot_path_is_open() -> None:
    auth = GatewayAuth(None, AdminAuth("admin-secret"))
    assert not auth.enabled
    auth.check([])
    auth.check(_bearer("anything"))


def test_the_gateway_or_the_admin_token_is_accepted() -> None:
    auth = GatewayAuth("gw-secret", AdminAuth("admin-secret"))
    assert auth.enabled
    auth.check(_bearer("gw-secret"))
    auth.check(_bearer("admin-secret"))
    for metadata in ([], _bearer("wrong"), [("authorization", "gw-secret")], _bearer("gw-secre")):
        with pytest.raises(Unauthenticated) as refused:
            auth.check(metadata)
        assert "gw-secret" not in refused.value.message
        assert "admin-secret" not in refused.value.message


def test_an_open_admin_api_does_not_open_the_gateway_path() -> None:
    auth = GatewayAuth("gw-secret", AdminAuth(None))
    auth.check(_bearer("gw-secret"))
    with pytest.raises(Unauthenticated):
        auth.check([])


# -- TLS settings ---------------------------------------------------------------------------


def test_tls_is_off_by_default() -> None:
    assert server_credentials(Settings()) is None


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({"tls_cert_file": "cert.pem"}, "both"),
        ({"tls_key_file": "key.pem"}, "both"),
        ({"tls_client_ca_file": "ca.pem"}, "BUDGETD_TLS_CLIENT_CA_FILE needs"),
    ],
)
def test_incomplete_tls_settings_are_refused(fields: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        server_credentials(Settings(**fields))
