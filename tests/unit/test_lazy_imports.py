"""Heavy modules stay out of the processes that do not need them (each costs MB of memory).

Each case runs in a fresh interpreter, since this test session has loaded everything already.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

_REPORT = """
import sys
print(" ".join(m for m in sys.argv[1:] if m in sys.modules))
"""


def _loaded(code: str, modules: list[str]) -> set[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _REPORT, *modules],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    return set(done.stdout.split())


def test_the_shim_loads_no_store() -> None:
    code = "import proxy_shim.app"
    assert _loaded(code, ["sqlalchemy", "psycopg", "budgetd.store.database"]) == set()


def test_budgetd_on_sqlite_loads_no_postgres_driver_alembic_or_httpx(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'budgetd.db'}"
    subprocess.run(
        [sys.executable, "-m", "budgetd", "migrate", "--database-url", url],
        capture_output=True,
        check=True,
    )
    # `budgetd serve` on a schema at head, up to the point where it would start serving.
    code = f"""
    import budgetd.api.server
    from budgetd import cli
    from budgetd.store.health import StoreHealth

    async def serve(app, settings):
        health = StoreHealth(app.db, 1.0)
        assert health.check()
        health.stop()

    budgetd.api.server.serve = serve
    assert cli.main(["serve", "--database-url", {url!r}, "--metrics-addr", ""]) == 0
    """
    heavy = ["alembic", "psycopg", "sqlalchemy.dialects.postgresql", "httpx"]
    assert _loaded(code, heavy) == set()
