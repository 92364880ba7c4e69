"""The SQLite writer thread: batches share commits; a failing unit undoes only its own work."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlalchemy import event, exc, text

from budgetd.store.database import Database
from budgetd.store.group_commit import GroupCommit


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.connect(f"sqlite:///{tmp_path / 'g.db'}")
    with database.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)")
    yield database
    database.dispose()


def _committed(db: Database) -> set[str]:
    """Rows another connection sees: only committed work."""
    with db.engine.connect() as conn:
        return {row[0] for row in conn.exec_driver_sql("SELECT k FROM t")}


def _insert(db: Database, key: str) -> str:
    with db.write() as conn:
        conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": key})
    return key


def test_a_job_resolves_only_after_the_commit_holding_its_write(db: Database) -> None:
    seen_at_resolution: list[bool] = []
    resolved = threading.Event()

    def check(_future: Future[str]) -> None:
        seen_at_resolution.append("a" in _committed(db))
        resolved.set()

    gate = threading.Event()
    db.submit(gate.wait, 10)  # so the callback is attached before the job runs
    future = db.submit(_insert, db, "a")
    future.add_done_callback(check)
    gate.set()
    assert future.result(timeout=10) == "a"
    assert resolved.wait(10)
    assert seen_at_resolution == [True]


def test_concurrent_jobs_share_commits(db: Database) -> None:
    commits = 0

    def count(*_args: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(db.engine, "commit", count)
    gate = threading.Event()
    # The first job holds the writer until every other job is queued behind it.
    first = db.submit(gate.wait, 10)
    futures = [db.submit(_insert, db, f"k{i}") for i in range(50)]
    gate.set()
    first.result(timeout=10)
    assert sorted(f.result(timeout=10) for f in futures) == sorted(f"k{i}" for i in range(50))
    assert _committed(db) == {f"k{i}" for i in range(50)}
    assert commits <= 2  # the gate's batch, then one for the 50 (at most 128 a batch)


def test_a_failing_job_undoes_only_its_own_writes(db: Database) -> None:
    def insert_then_fail(key: str) -> None:
        _insert(db, key)
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": key + "-partial"})
            raise ValueError("refused")

    gate = threading.Event()
    db.submit(gate.wait, 10)
    good = db.submit(_insert, db, "good")
    bad = db.submit(insert_then_fail, "bad")
    gate.set()
    assert good.result(timeout=10) == "good"
    with pytest.raises(ValueError, match="refused"):
        bad.result(timeout=10)
    # The failing block's write is gone; the job's earlier, finished unit stays.
    assert _committed(db) == {"good", "bad"}


def test_a_duplicate_key_fails_that_job_alone(db: Database) -> None:
    _insert(db, "taken")
    futures = [db.submit(_insert, db, key) for key in ("x", "taken", "y")]
    assert futures[0].result(timeout=10) == "x"
    with pytest.raises(exc.IntegrityError):
        futures[1].result(timeout=10)
    assert futures[2].result(timeout=10) == "y"
    assert _committed(db) == {"taken", "x", "y"}


def test_other_threads_take_turns_with_jobs(db: Database) -> None:
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            _insert(db, f"thread-{i}")
            with pytest.raises(RuntimeError), db.write() as conn:
                conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": f"undone-{i}"})
                raise RuntimeError("undo")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    jobs = [db.submit(_insert, db, f"job-{i}") for i in range(20)]
    for thread in threads:
        thread.join(timeout=20)
    assert [job.result(timeout=10) for job in jobs] == [f"job-{i}" for i in range(20)]
    assert errors == []
    assert _committed(db) == {f"thread-{i}" for i in range(8)} | {f"job-{i}" for i in range(20)}


def test_a_cancelled_job_never_runs(db: Database) -> None:
    gate = threading.Event()
    db.submit(gate.wait, 10)
    cancelled: Future[str] = db.submit(_insert, db, "never")
    assert cancelled.cancel()
    after = db.submit(_insert, db, "after")
    gate.set()
    assert after.result(timeout=10) == "after"
    assert _committed(db) == {"after"}


def test_the_writer_restarts_after_dispose(db: Database) -> None:
    assert db.submit(_insert, db, "before").result(timeout=10) == "before"
    db.dispose()
    assert db.submit(_insert, db, "after").result(timeout=10) == "after"
    assert _committed(db) == {"before", "after"}


def test_writes_on_the_writer_see_the_batch(db: Database) -> None:
    def insert_and_read(key: str) -> int:
        _insert(db, key)
        with db.write() as conn:
            return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())

    gate = threading.Event()
    db.submit(gate.wait, 10)
    first = db.submit(insert_and_read, "one")
    second = db.submit(insert_and_read, "two")
    gate.set()
    # The second job sees the first's uncommitted write: they share one transaction.
    assert (first.result(timeout=10), second.result(timeout=10)) == (1, 2)


def test_a_lane_batches_one_customers_calls_together(tmp_path: Path) -> None:
    # PostgreSQL's lanes: a batch never holds two customers' row locks (the mechanics are the
    # same on any engine; SQLite stands in here).
    db = Database.connect(f"sqlite:///{tmp_path / 'lane.db'}")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)")
    lane = GroupCommit(db.engine, one_key_per_batch=True)
    order: list[str] = []
    commits: list[list[str]] = []
    event.listen(db.engine, "commit", lambda _conn: commits.append(order[:]))

    def step(name: str) -> None:
        order.append(name)
        with lane.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": name})

    gate = threading.Event()
    lane.submit(gate.wait, 10)
    futures = [
        lane.submit(step, name, key=name[0]) for name in ("a1", "b1", "a2", "n1", "b2", "a3", "n2")
    ]
    lane.submit(step, "x1", key=None)
    gate.set()
    for future in futures:
        future.result(timeout=10)
    lane.close()
    db.dispose()
    assert order[:3] == ["a1", "a2", "a3"]  # customer a's calls, then b's, each in one batch
    assert order[3:5] == ["b1", "b2"]
    # Each customer's calls share a commit; the next batch starts at the next queued call.
    assert commits[:2] == [["a1", "a2", "a3"], ["a1", "a2", "a3", "b1", "b2"]]


@pytest.mark.postgres
def test_a_postgres_lane_undoes_only_the_failing_call(postgres_url: str) -> None:
    # One customer's calls share a lane's transaction: a failure, even one that aborts the
    # PostgreSQL transaction (a duplicate key), must undo only its own call's work.
    db = Database.connect(postgres_url)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY)")

    def insert_then_fail(key: str) -> None:
        _insert(db, key)
        with db.write() as conn:
            conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": key + "-partial"})
            raise ValueError("refused")

    try:
        gate = threading.Event()
        db.submit(gate.wait, 10, key="customer")
        futures = [
            db.submit(_insert, db, "a", key="customer"),
            db.submit(_insert, db, "a", key="customer"),  # a duplicate: IntegrityError
            db.submit(insert_then_fail, "b", key="customer"),
            db.submit(_insert, db, "c", key="customer"),
        ]
        gate.set()
        assert futures[0].result(timeout=10) == "a"
        with pytest.raises(exc.IntegrityError):
            futures[1].result(timeout=10)
        with pytest.raises(ValueError, match="refused"):
            futures[2].result(timeout=10)
        assert futures[3].result(timeout=10) == "c"
        assert _committed(db) == {"a", "b", "c"}
    finally:
        db.dispose()


def test_a_broken_connection_fails_its_batch_and_the_writer_goes_on(db: Database) -> None:
    def break_the_connection() -> None:
        with db.write() as conn:
            driver = conn.connection.dbapi_connection
            assert driver is not None
            driver.close()  # the batch's commit and rollback will fail too

    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        db.submit(break_the_connection).result(timeout=10)
    assert db.submit(_insert, db, "after").result(timeout=10) == "after"
    assert _committed(db) == {"after"}
