"""The statements of every turn, run straight on the driver inside the unit of work's transaction.

SQLAlchemy's execution path (the session, the execution context, the compiled cache lookup, the result
objects, a greenlet switch per statement) costs about 100 µs of Python per statement; asyncpg itself
costs a third of that. A chat turn is a handful of small statements, so on PostgreSQL that path was
about a third of a turn's CPU (benchmarks/burst.py, profiled). `FastStatements.run` takes a Core
statement built once at import (module level, with bind parameters), compiles it once for the
connection's dialect and the lengths of its expanding ("IN") parameters, and sends the SQL with the
values in order to the asyncpg connection that holds the session's transaction. Bind and result
processors of the column types (UTCDateTime) are applied as SQLAlchemy would; errors come out as
SQLAlchemy's exceptions (IntegrityError, DBAPIError), so callers and the unit of work see no difference.

SQLite (aiosqlite) the same way, for another reason: aiosqlite runs each call in its own thread, and
SQLAlchemy's adapter makes four such calls per statement (open a cursor, execute, fetch, close), each a hop
between threads. Here a statement is one call (`execute`, or `execute_fetchall` when rows come back):
an ordinary turn went from 15 hops to 5 (BEGIN IMMEDIATE, see meldbot.storage.db, and COMMIT included).

Any other dialect, and any statement built per call, go through the session as before.

An optimistic turn on PostgreSQL (ConversationRepository.lock with optimistic=True) is two round trips:
`begin_later` keeps the conversation's lock (and then the check that what the turn read is unchanged,
between a savepoint and its release) to go with the transaction's BEGIN; `read_before_begin` reads before
that, outside a transaction; whatever first needs the transaction (`run`, a session's first query through
the unit of work's hooks, or `commit_with`, which then sends BEGIN, lock, check, write and COMMIT at once)
sends them. `_checked` turns a failed check into ConversationChanged after rolling back to the savepoint,
so the lock stays; until the turn starts over (`restarted`) nothing more is sent in that transaction.
When the process remembers what the read would give (TurnMemory: its last turn of the conversation), there is
no read: one round trip.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite3

import asyncpg
import sqlalchemy as sa
from asyncpg.transaction import TransactionState

from meldbot.core.ports import ConversationChanged

_CONSTANT = ""   # the parameter name of a value fixed in the statement (its value stands in the plan)
_ROWCOUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


@dataclass(frozen=True)
class _Plan:
    sql: str
    # (parameter, list index, processor), or (_CONSTANT, value, None)
    args: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]
    results: tuple[Callable[[Any], Any] | None, ...] | None                   # one per column; None: no processing


class Rows:
    """The part of SQLAlchemy's Result the repositories use, over rows already fetched."""

    def __init__(self, rows: list[tuple], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def first(self) -> tuple | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[tuple]:
        return self._rows

    def scalar_one(self) -> Any:
        if len(self._rows) != 1:
            raise sa.exc.NoResultFound("no row") if not self._rows else sa.exc.MultipleResultsFound("rows")
        return self._rows[0][0]


def _plan(stmt: sa.sql.ClauseElement, dialect: sa.engine.Dialect, params: Mapping[str, Any]) -> _Plan:
    # An INSERT without values names its columns by the parameters given, as SQLAlchemy's execute does.
    insert = isinstance(stmt, sa.sql.dml.Insert) and not stmt._values and not stmt._multi_values
    compiled = stmt.compile(dialect=dialect, column_keys=list(params) if insert else None)
    state = compiled.construct_expanded_state(dict(params))
    # The processors of the parameters as compiled (`state.processors` holds only those of expanded lists).
    processors = {**compiled._bind_processors, **state.processors}
    # Columns left out of an INSERT get their Python-side default, as SQLAlchemy's execution context gives them.
    defaults = {}
    for column in [*getattr(compiled, "insert_prefetch", ()), *getattr(compiled, "update_prefetch", ())]:
        if column.key in params:
            continue
        if column.default is None or not column.default.is_scalar:
            raise ValueError(f"fast statement: column {column.key} needs a default computed per row")
        defaults[column.key] = column.default.arg
    # Each element of a list parameter, by the name SQLAlchemy gave it (never guessed from the name).
    expanded = {name: (param, index) for param, names in state.parameter_expansion.items()
                for index, name in enumerate(names)}
    args = []
    for name in state.positiontup or ():
        processor = processors.get(name)
        if name in expanded:
            param, index = expanded[name]
            if param not in params:
                raise ValueError(f"fast statement: list parameter {param} has no value")
            args.append((param, index, processor))
        elif name in params:
            args.append((name, None, processor))
        else:
            # A value fixed in the statement (a literal, a LIMIT): processed once, kept in the plan. Anything
            # else (a value computed per call, a parameter left out) is refused rather than frozen.
            if name in defaults:
                value = defaults[name]
            else:
                bind = compiled.binds.get(name)
                if bind is None or bind.callable is not None or bind.required:
                    raise ValueError(f"fast statement: parameter {name} has no value")
                value = bind.value
            args.append((_CONSTANT, value if processor is None else processor(value), None))
    results = None
    columns = getattr(compiled, "_result_columns", None) or ()
    if columns:
        processors = tuple(c.type._cached_result_processor(dialect, None) for c in columns)
        results = processors if any(processors) else None
    return _Plan(state.statement, tuple(args), results)


# Called with the SQL of every statement sent here (SQLAlchemy's before_cursor_execute does not see them):
# tests count a turn's round trips with it.
listeners: list[Callable[[str], None]] = []


class FastStatements:
    """One per unit of work. `run(stmt, params)` on PostgreSQL with asyncpg, on SQLite with aiosqlite;
    elsewhere the session."""

    # Plans by driver, statement and its parameters (names, and the length of each list); the statements are
    # module constants, so this stays as small as the set of turn statements (twice, with both databases).
    _plans: dict[tuple[str | None, Any, tuple[Any, ...]], _Plan] = {}

    def __init__(self, uow, dialect: sa.engine.Dialect) -> None:
        self._uow = uow   # its connection, transaction and (for anything but a fast statement) session
        self._dialect = dialect
        self._driver = {("postgresql", "asyncpg"): "asyncpg", ("sqlite", "aiosqlite"): "aiosqlite"}.get(
            (dialect.name, dialect.driver))
        self._adapter = None
        self._transaction = None   # the session's transaction the adapter belongs to
        # Literal statements that wait for the transaction's BEGIN and go with it (begin_later): the
        # conversation's lock and the check that it did not change since the turn read it.
        self._first: list[str] = []
        # The check failed (ConversationChanged): nothing more may be sent in this transaction until the turn
        # starts over (restarted), or the writes would rest on what the turn read before.
        self._changed = False

    def released(self) -> None:
        """The session's transaction ended (commit, rollback): the next statement asks for its connection again.
        What waited for a BEGIN that never came is dropped: nothing was written under it."""
        self._adapter = self._transaction = None
        self._first = []

    def begin_later(self, sql: str) -> bool:
        """On PostgreSQL, before this unit of work's transaction has begun: `sql` (literal, no parameters) goes
        with the BEGIN whenever the transaction begins (the next statement that needs it, a session's first
        query, or the COMMIT of its only write) and never before; True. Otherwise False, nothing kept (the
        caller sends it now)."""
        if self._driver != "asyncpg" or self._adapter is not None:
            return False
        self._first.append(sql)
        return True

    def restarted(self) -> None:
        """The turn starts over after ConversationChanged, in the same transaction (SqlUnitOfWork.restart)."""
        self._changed = False

    @property
    def changed(self) -> bool:
        return self._changed

    @property
    def waiting_for_begin(self) -> bool:
        return bool(self._first)

    async def begin_now(self) -> None:
        """Begin the transaction, with what waits for its BEGIN, if that has not happened yet."""
        if self._first:
            await self._connection()

    async def read_before_begin(self, stmt, params: Mapping[str, Any], timeout: float) -> Rows | None:
        """While statements wait for the BEGIN (begin_later): a read sent before the transaction begins, in a
        statement of its own (a snapshot of what was committed when it ran). None when that cannot be (a
        transaction already open, or one this module cannot begin itself): the caller runs it as usual."""
        if not self._first or self._adapter is not None:
            return None
        adapter = await self._uow._adapter()
        if _begin_sql(adapter) is None:
            return None
        plan = self._plan_for(stmt, params, False)
        for listener in listeners:
            listener(plan.sql)
        try:
            async with adapter._execute_mutex:
                # Outside a transaction the turn's lock_timeout is not set yet: bounded here by `timeout`
                # seconds (a table held by a migration or a VACUUM FULL would otherwise keep the turn waiting);
                # past it asyncpg cancels the statement and the turn fails as StorageUnavailable, as a lock
                # wait does.
                records = await adapter._connection.fetch(plan.sql, *_values(plan, params), timeout=timeout)
        except Exception as error:
            raise _translated(self._dialect.loaded_dbapi, adapter, plan.sql, error) from error
        return _rows(plan, records)

    async def _begin(self, adapter, then: str | None = None) -> None:
        """BEGIN on asyncpg, in one round trip with what waits for it and `then` (literal statements)."""
        for listener in listeners:   # `then` was told by the caller
            for waiting in self._first:
                listener(waiting)
        statements = "; ".join([*self._first, then] if then else self._first)
        self._first = []
        begin = _begin_sql(adapter) if statements else None
        try:
            if begin is None:
                if adapter._transaction is None:
                    await adapter._start_transaction()
                if statements:
                    async with adapter._execute_mutex:
                        await _checked(adapter._connection, adapter._connection.execute(statements))
                return
            async with adapter._execute_mutex:
                _mark_begun(adapter)
                await _checked(adapter._connection, adapter._connection.execute(f"{begin}; {statements}"))
        except ConversationChanged:
            self._changed = True
            raise
        except Exception as error:
            raise _translated(self._dialect.loaded_dbapi, adapter, statements or "BEGIN", error) from error

    async def _connection(self):
        if self._changed:
            raise ConversationChanged(holds_lock=True)
        adapter = self._adapter
        if adapter is not None:
            # Still the session's transaction, and still open? A transaction ended behind our back (a failed
            # flush rolled it back) must not be continued here in a new one: SQLAlchemy would refuse too.
            if self._uow.transaction() is not self._transaction or not self._transaction.is_active:
                raise sa.exc.PendingRollbackError("the unit of work's transaction has ended")
            if not _in_transaction(adapter):
                raise sa.exc.PendingRollbackError("the unit of work's database transaction has ended")
            return adapter
        adapter = await self._uow._adapter()
        if self._driver == "aiosqlite":
            # BEGIN IMMEDIATE was sent as the session took its connection (meldbot.storage.db, "begin").
            if not adapter._connection.in_transaction:
                raise sa.exc.PendingRollbackError("the unit of work's database transaction has ended")
        elif adapter._transaction is None or self._first:
            # SQLAlchemy's asyncpg adapter sends BEGIN with its first statement; here that is ours, with what
            # waits for it (or, when a session's statement began the transaction already, what waits at once).
            self._adapter, self._transaction = adapter, self._uow.transaction()
            try:
                await self._begin(adapter)
            except BaseException:
                if adapter._transaction is None:
                    self._adapter = self._transaction = None
                raise
        self._adapter, self._transaction = adapter, self._uow.transaction()
        return adapter

    async def begin_with(self, sql: str) -> None:
        """Run `sql`, a literal statement without parameters (values written into it, never from outside). On
        PostgreSQL, when this unit of work's transaction has not begun, it goes in one round trip with the BEGIN
        (a simple query of two statements): a turn's first statement, the conversation's lock, costs no round
        trip of its own. The transaction is then asyncpg's and SQLAlchemy's as if they had begun it, so COMMIT,
        ROLLBACK and the pool's reset work as always; a BEGIN that failed is rolled back by the same path."""
        for listener in listeners:
            listener(sql)
        if self._driver != "asyncpg":
            await self._uow.session.exec(sa.text(sql))
            return
        adapter = self._adapter
        try:
            if adapter is None:
                adapter = await self._uow._adapter()
                if adapter._transaction is None:
                    self._adapter, self._transaction = adapter, self._uow.transaction()
                    await self._begin(adapter, sql)
                    return
            adapter = await self._connection()
            async with adapter._execute_mutex:
                await adapter._connection.execute(sql)
        except ConversationChanged:
            raise
        except Exception as error:
            raise _translated(self._dialect.loaded_dbapi, adapter, sql, error) from error

    def _plan_for(self, stmt, sample: Mapping[str, Any], many: bool) -> _Plan:
        shape = tuple((k, len(v)) if isinstance(v, (list, tuple)) else k for k, v in sample.items())
        key = (self._driver, stmt, shape)
        plan = self._plans.get(key)
        if plan is None:
            if many and (_returns(stmt) or isinstance(stmt, sa.sql.expression.Select)):
                raise ValueError("fast statement: an executemany gives no rows back")
            plan = self._plans[key] = _plan(stmt, self._dialect, sample)
        return plan

    async def commit_with(self, stmt, params: Mapping[str, Any]) -> bool:
        """On PostgreSQL, a last write and the transaction's COMMIT in one round trip: a simple query of two
        statements, the write's values written into it as literals. Only values that cannot carry SQL go that
        way: numbers, datetimes, NULL, and text of letters, digits and `_.:=-` (sealed values, keyed
        hashes, meldpunt ids); anything else, or a transaction this unit of work did not begin on asyncpg:
        False, nothing sent (the caller writes and commits as usual). Errors name the statement with its
        placeholders, never the values. After it, asyncpg's and SQLAlchemy's transaction objects hold the
        transaction as committed, so the session's commit sends nothing more."""
        adapter = self._adapter
        if (self._driver != "asyncpg" or (adapter is None and not self._first) or not isinstance(params, Mapping)
                or _returns(stmt) or isinstance(stmt, sa.sql.expression.Select)):
            return False
        plan = self._plan_for(stmt, params, False)
        literals = [_literal(v) for v in _values(plan, params)]
        if any(v is None for v in literals):
            return False
        sql = _PLACEHOLDER.sub(lambda m: literals[int(m.group(1)) - 1], plan.sql)
        if adapter is None:
            # Not begun yet: BEGIN, what waits for it (the conversation's lock and check), the write and the
            # COMMIT, all in one round trip.
            adapter = await self._uow._adapter()
            begin = _begin_sql(adapter)
            if begin is None:
                return False
            for listener in listeners:
                for waiting in self._first:
                    listener(waiting)
            sql = "; ".join([begin, *self._first, sql])
            self._first = []
            _mark_begun(adapter)
            self._adapter, self._transaction = adapter, self._uow.transaction()
        for listener in listeners:
            listener(plan.sql)
        try:
            adapter = await self._connection()
            async with adapter._execute_mutex:
                await _checked(adapter._connection, adapter._connection.execute(f"{sql}; COMMIT"))
        except ConversationChanged:
            self._changed = True
            raise
        except Exception as error:
            raise _translated(self._dialect.loaded_dbapi, adapter, plan.sql, error) from error
        _mark_committed(adapter)
        return True

    async def run(self, stmt, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None):
        """Execute a prebuilt Core statement; `params` a dict, or a list of dicts for an executemany (no
        rows come back from that: an executemany with RETURNING is refused)."""
        if self._driver is None:
            return await self._uow.session.exec(stmt, params=params)
        many = isinstance(params, (list, tuple))
        if many and not params:
            return Rows([], 0)
        sample = params[0] if many else (params or {})
        plan = self._plan_for(stmt, sample, many)
        for listener in listeners:
            listener(plan.sql)
        adapter = self._adapter
        try:
            adapter = await self._connection()
            driver = adapter._connection
            async with adapter._execute_mutex:   # as SQLAlchemy's own statements on this connection
                if self._driver == "aiosqlite":
                    return await _on_aiosqlite(driver, stmt, plan, params, many)
                if many:
                    await driver.executemany(plan.sql, [_values(plan, p) for p in params])
                    return Rows([], -1)    # asyncpg tells no row count of an executemany
                values = _values(plan, sample)
                if plan.results is None and not isinstance(stmt, sa.sql.expression.Select) and not _returns(stmt):
                    status = await driver.execute(plan.sql, *values)
                    found = _ROWCOUNT.match(status or "")
                    return Rows([], int(found.group(1)) if found else -1)
                records = await driver.fetch(plan.sql, *values)
        except ConversationChanged:
            raise
        except Exception as error:
            raise _translated(self._dialect.loaded_dbapi, adapter, plan.sql, error) from error
        return _rows(plan, records)


def _rows(plan: _Plan, records) -> Rows:
    if plan.results is None:
        rows = [tuple(r) for r in records]
    else:
        rows = [tuple(p(v) if p else v for p, v in zip(plan.results, r)) for r in records]
    return Rows(rows, len(rows))


# The check that a conversation is as a turn read it (ConversationRepository.prefetch) fails with this text
# in an error of its own (a text cast to a number: plain SQL has no RAISE); _checked turns it into
# ConversationChanged. The check follows this savepoint, right after the conversation's lock.
CHANGED_MARK = "meldbot: conversation changed"
CHECK_SAVEPOINT = "meldbot_turn"


async def _checked(driver, sent):
    """Await a simple query that may hold the check of begin_later. When the check failed: back to the savepoint
    before it, so the transaction goes on with the conversation's lock (the turn is handled again in it,
    ahead of the turns that wait for the lock), and ConversationChanged(holds_lock=True); if even that fails,
    the transaction is lost (holds_lock=False: the turn is handled again in a new one)."""
    try:
        return await sent
    except asyncpg.InvalidTextRepresentationError as error:
        if CHANGED_MARK not in str(error):
            raise
        try:
            await driver.execute(f"ROLLBACK TO SAVEPOINT {CHECK_SAVEPOINT}")
        except Exception as failed:
            raise ConversationChanged(holds_lock=False) from failed
        raise ConversationChanged(holds_lock=True) from error


def _table(stmt):
    """The table a write changes (an INSERT's, UPDATE's or DELETE's), else None."""
    return getattr(stmt, "table", None)


# Combined statements by what they combine (each write's statement and the shape of its values): built once.
_COMBINED: dict[tuple, sa.sql.ClauseElement] = {}
_COMBINED_KEPT = 1000
_MOST_PARAMETERS = 30_000   # PostgreSQL takes at most 32,767 in one statement


def combined_writes(writes: Sequence[tuple[Any, Any]]) -> tuple[Any, dict[str, Any]] | None:
    """Several writes (statement, values: a dict, or a list of dicts for an INSERT of several rows) as one
    statement and its values: the last write with the others in a WITH before it (PostgreSQL runs every
    data-modifying statement in a WITH, read or not). Each write's parameters get a prefix of their own, and
    an INSERT of several rows becomes one INSERT with a row of VALUES for each. None when one of them cannot
    be combined (an UPDATE or DELETE with several sets of values, rows with different columns, a column
    whose default is computed per row): then they are sent one by one."""
    key, params, shapes = [], {}, []
    for j, (stmt, values) in enumerate(writes):
        prefix = f"w{j}_"
        if getattr(stmt, "_independent_ctes", None):   # a WITH of its own: PostgreSQL allows none inside a WITH
            return None
        if isinstance(stmt, sa.sql.dml.Insert) and not stmt._values and not stmt._multi_values:
            rows = list(values) if isinstance(values, (list, tuple)) else [values]
            columns = tuple(rows[0]) if rows else ()
            if not rows or any(tuple(r) != columns for r in rows):
                return None
            for i, row in enumerate(rows):
                for name, value in row.items():
                    params[f"{prefix}{i}_{name}"] = value
            shapes.append(("insert", len(rows), columns))
        else:
            if isinstance(values, (list, tuple)):
                return None
            for name, value in (values or {}).items():
                params[prefix + name] = value
            shapes.append(tuple((k, len(v)) if isinstance(v, (list, tuple)) else k for k, v in (values or {}).items()))
        key.append((stmt, shapes[-1]))
    key = tuple(key)
    stmt = _COMBINED.get(key)
    if stmt is None and (len(_COMBINED) >= _COMBINED_KEPT or len(params) > _MOST_PARAMETERS):
        return None   # one by one: the plans stay few, and a statement stays under PostgreSQL's limit
    if stmt is None:
        parts = [_prefixed(s, shape, f"w{j}_") for j, ((s, _), shape) in enumerate(zip(writes, shapes))]
        if any(p is None for p in parts):
            return None
        stmt = parts[-1].add_cte(*(part.cte(f"w{j}") for j, part in enumerate(parts[:-1])))
        _COMBINED[key] = stmt
    return stmt, params


def _prefixed(stmt, shape, prefix: str):
    """`stmt` with its parameters renamed `prefix` + name; an INSERT with a row of VALUES per row of `shape`."""
    if shape and shape[0] == "insert":
        _, count, columns = shape
        table = stmt.table
        fixed = {}
        for column in table.columns:   # a Python-side default of a column left out, as the ORM would give it
            if column.key in columns or column.default is None:
                continue
            if not column.default.is_scalar:
                return None
            fixed[column.key] = column.default.arg
        rows = [{**{c: sa.bindparam(f"{prefix}{i}_{c}", type_=table.c[c].type) for c in columns},
                 **{c: sa.bindparam(f"{prefix}{i}_{c}", value=v, type_=table.c[c].type) for c, v in fixed.items()}}
                for i in range(count)]
        return stmt.values(rows) if count > 1 else stmt.values(rows[0])

    def renamed(element):
        if isinstance(element, sa.sql.elements.BindParameter):
            clone = element._clone()
            clone.key = clone._orig_key = prefix + element.key
            return clone
        return None

    return sa.sql.visitors.replacement_traverse(stmt, {}, renamed)


async def _on_aiosqlite(driver, stmt, plan: _Plan, params, many: bool) -> Rows:
    """One call into aiosqlite's thread per statement."""
    if many:
        cursor = await driver.executemany(plan.sql, [_values(plan, p) for p in params])
        return Rows([], cursor.rowcount)
    values = _values(plan, params or {})
    if plan.results is None and not isinstance(stmt, sa.sql.expression.Select) and not _returns(stmt):
        cursor = await driver.execute(plan.sql, values)
        return Rows([], cursor.rowcount)
    records = await driver.execute_fetchall(plan.sql, values)
    if plan.results is None:
        return Rows([tuple(r) for r in records], len(records))
    return Rows([tuple(p(v) if p else v for p, v in zip(plan.results, r)) for r in records], len(records))


def _begin_sql(adapter) -> str | None:
    """The BEGIN asyncpg would send for SQLAlchemy's adapter, when this connection has no transaction yet and it
    is a plain one (read committed, the default, read-write); None: let the adapter begin as usual."""
    driver = adapter._connection
    try:   # attributes of asyncpg and SQLAlchemy's adapter (asyncpg 0.29-0.32, SQLAlchemy 2.1); else as usual
        if adapter._transaction is not None or driver._top_xact is not None or driver.is_in_transaction():
            return None
        if adapter.readonly or adapter.deferrable or not hasattr(TransactionState, "STARTED"):
            return None
        isolation = adapter.isolation_level
    except AttributeError:
        return None
    return {None: "BEGIN", "read_committed": "BEGIN ISOLATION LEVEL READ COMMITTED"}.get(isolation)


def _mark_begun(adapter) -> None:
    """Make asyncpg's transaction object and SQLAlchemy's adapter hold the transaction a BEGIN of ours starts,
    before it is sent: whatever then fails, the unit of work's rollback goes through them (ROLLBACK)."""
    transaction = adapter._connection.transaction(
        isolation=adapter.isolation_level, readonly=adapter.readonly, deferrable=adapter.deferrable)
    transaction._state = TransactionState.STARTED
    adapter._connection._top_xact = transaction
    adapter._transaction = transaction


def _mark_committed(adapter) -> None:
    """After a COMMIT of ours: asyncpg's transaction object and SQLAlchemy's adapter as after their own."""
    transaction = adapter._transaction
    if transaction is not None:
        transaction._state = TransactionState.COMMITTED
    if adapter._connection._top_xact is transaction:
        adapter._connection._top_xact = None
    adapter._transaction = None


# A value written into SQL as a literal (FastStatements.commit_with): only what cannot carry SQL.
_PLACEHOLDER = re.compile(r"\$(\d+)")
_SAFE_TEXT = re.compile(r"[A-Za-z0-9_.:=\-]*")


def _literal(value: Any) -> str | None:
    """Exact types only: a subclass (an Enum member, a str with its own __str__) writes out as something else."""
    kind = type(value)
    if value is None:
        return "NULL"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value) if value >= 0 else f"({value:d})"   # "--5" would start a comment
    if kind is datetime:   # naive: a `timestamp` (UTCDateTime stores UTC so); aware: an instant
        return f"'{value.isoformat()}'::{'timestamptz' if value.utcoffset() is not None else 'timestamp'}"
    if kind is str and _SAFE_TEXT.fullmatch(value):
        return f"'{value}'"
    return None


def _in_transaction(adapter) -> bool:
    """Is the driver connection still inside the transaction this unit of work began?"""
    if hasattr(adapter, "_transaction"):       # SQLAlchemy's asyncpg adapter
        return adapter._transaction is not None
    return adapter._connection.in_transaction  # aiosqlite: sqlite3's own flag


def _returns(stmt) -> bool:
    return bool(getattr(stmt, "_returning", None))


def _values(plan: _Plan, params: Mapping[str, Any]) -> list[Any]:
    values = []
    for name, index, processor in plan.args:
        if name is _CONSTANT:
            values.append(index)
            continue
        value = params[name] if index is None else params[name][index]
        values.append(processor(value) if processor else value)
    return values


def _translated(dbapi, adapter, sql: str, error: Exception) -> Exception:
    """The error as SQLAlchemy raises it (IntegrityError, OperationalError, ... under DBAPIError): an asyncpg
    error is first adapted as SQLAlchemy's asyncpg adapter does, then wrapped like any DBAPI error. A driver
    error that cannot be adapted is still a database error (OperationalError): the person is asked to resend.
    Parameters are never part of the message (hide_parameters)."""
    if isinstance(error, sa.exc.SQLAlchemyError) or not _from_driver(error, dbapi):
        return error   # ours (a naive datetime refused by UTCDateTime) or SQLAlchemy's already
    adapted = error
    if not isinstance(error, dbapi.Error) and adapter is not None:
        try:
            adapter._handle_exception(error)   # raises the adapter's DBAPI-style error
        except Exception as raised:
            adapted = raised
    if isinstance(adapted, dbapi.Error):
        return sa.exc.DBAPIError.instance(sql, None, adapted, dbapi.Error, hide_parameters=True)
    return sa.exc.OperationalError(sql, None, error, hide_parameters=True)


def _from_driver(error: Exception, dbapi) -> bool:
    # aiosqlite raises ValueError("no active connection") once its connection is closed; SQLAlchemy's adapter
    # makes that an OperationalError (adapter._handle_exception), and so does _translated.
    closed = isinstance(error, ValueError) and str(error).lower() in ("no active connection", "connection closed")
    return closed or isinstance(error, (dbapi.Error, sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError,
                                        asyncpg.exceptions.InternalClientError))
