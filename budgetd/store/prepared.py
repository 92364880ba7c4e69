"""Hot-path statements: SQLAlchemy Core compiled once per dialect, run on the DBAPI cursor.

``Connection.execute`` spends about 12 µs per statement on work the hot path does not need
(execution context, result metadata, type processing, event dispatch): with five statements an
Authorize, that was a quarter of the writer's time. A :class:`Prepared` statement is written in
Core like any other and compiled once per dialect; each run is the driver's ``execute`` in the
connection's current transaction. Driver errors are raised as SQLAlchemy's own exception
classes (``IntegrityError``, ``OperationalError``, ...), as ``Connection.execute`` would, so the
layers above see no difference; a lost PostgreSQL connection is invalidated the same way.

Only for statements whose parameters and columns need no type processing: integers, text and
NULL (booleans read back as 0/1 on SQLite: wrap them in ``bool``); and an INSERT or UPDATE
must give every column with a Python-side default its value (checked when compiled).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable

Row = Sequence[Any]


class _Compiled(NamedTuple):
    sql: str
    # Names of the positional parameters in order; None for a dialect with named parameters.
    order: tuple[str, ...] | None
    constants: dict[str, Any]


class Prepared:
    """One Core statement, compiled per dialect on first use."""

    def __init__(self, statement: Executable) -> None:
        self._statement = statement
        self._compiled: dict[str, _Compiled] = {}
        returned = getattr(statement, "exported_columns", ())
        self.columns: tuple[str, ...] = tuple(column.key for column in returned)
        """The names of the columns a row holds, in order."""
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns must have distinct names: {self.columns}")

    def _sql(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            form = self._statement.compile(dialect=dialect)  # type: ignore[attr-defined]
            computed = [*form.insert_prefetch, *form.update_prefetch]
            if computed:
                # SQLAlchemy computes these defaults per execution; the driver would not.
                names = ", ".join(column.key for column in computed)
                raise ValueError(f"give every column a value; these have defaults: {names}")
            order = tuple(form.positiontup) if dialect.positional else None
            # Values written into the statement (``.values(blocked=False)``) are binds too.
            constants = {name: bind.value for name, bind in form.binds.items() if not bind.required}
            compiled = self._compiled[dialect.name] = _Compiled(form.string, order, constants)
        return compiled

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """Run the statement in ``conn``'s transaction; returns the DBAPI cursor."""
        sql, order, constants = self._sql(conn.dialect)
        if constants:
            params = {**constants, **params}
        values: Any = params if order is None else [params[name] for name in order]
        driver = conn.connection.dbapi_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            cursor.execute(sql, values)
        except conn.dialect.loaded_dbapi.Error as error:
            cursor.close()
            disconnected = conn.dialect.is_disconnect(error, driver, cursor)
            if disconnected:
                conn.invalidate(error)
            raise sa_exc.DBAPIError.instance(
                sql,
                values,
                error,
                conn.dialect.loaded_dbapi.Error,
                connection_invalidated=disconnected,
                dialect=conn.dialect,
            ) from error
        return cursor

    def row(self, conn: Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The row (the statement selects by a unique key) by column name, or None."""
        cursor = self.execute(conn, params)
        try:
            row: Row | None = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else dict(zip(self.columns, row, strict=True))

    def run(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Run a statement that returns nothing."""
        self.execute(conn, params).close()
