"""Database fixtures: every store test runs on SQLite, PostgreSQL and MariaDB alike.

``db_url`` is parametrized over ``sqlite`` plus each server named by
``RQJOBS_TEST_POSTGRES_URL`` / ``RQJOBS_TEST_MYSQL_URL``. A server whose variable is
unset gets no parameter at all (nothing is skipped inside a test body). Each test gets
its OWN database, created through an admin connection (``CREATE DATABASE
rqjobs_test_<random>``) and dropped afterwards, also when the test fails; the shared
servers themselves are never stopped or reconfigured.

The fixtures are registered once, by ``pytest_plugins`` in tests/conftest.py.
The variables are read at import time, i.e. at collection, before conftest's autouse
fixture clears every ``RQJOBS_*`` variable for the test itself.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

#: backend name -> the server URL from the environment (only servers that are configured)
SERVER_URLS: dict[str, str] = {
    name: os.environ[var]
    for name, var in (("postgresql", "RQJOBS_TEST_POSTGRES_URL"), ("mysql", "RQJOBS_TEST_MYSQL_URL"))
    if os.environ.get(var)
}
#: every backend the store tests run on here
BACKENDS: list[str] = ["sqlite", *SERVER_URLS]
#: the server-only tests' parameters; with no server configured, one that says why it is not run
SERVER_PARAMS: list[object] = list(SERVER_URLS) or [
    pytest.param(
        None,
        id="no-server",
        marks=pytest.mark.skip(
            reason="no database server configured: set RQJOBS_TEST_POSTGRES_URL and/or RQJOBS_TEST_MYSQL_URL"
        ),
    )
]


def _admin_engine(server_url: str):  # type: ignore[no-untyped-def]
    return create_engine(server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


class ServerDatabase:
    """A database of our own on a shared server; ``url`` points at it."""

    def __init__(self, backend: str, server_url: str) -> None:
        self.backend = backend
        self.server_url: URL = make_url(server_url)
        self.name = f"rqjobs_test_{secrets.token_hex(6)}"
        self.url: URL = self.server_url.set(database=self.name)

    def create(self, *, charset: str | None = None) -> None:
        engine = _admin_engine(str(self.server_url.render_as_string(hide_password=False)))
        try:
            with engine.connect() as conn:
                if self.backend == "mysql":
                    # latin1 on purpose unless asked otherwise: migration 0002 must make the
                    # table hold any Unicode whatever the server's or database's default is
                    conn.execute(text(f"CREATE DATABASE {self.name} CHARACTER SET {charset or 'latin1'}"))
                else:
                    conn.execute(text(f"CREATE DATABASE {self.name}"))
        finally:
            engine.dispose()

    def drop(self) -> None:
        from rqjobs.store.engine import forget_engines

        forget_engines()  # our own pooled connections would block the DROP
        engine = _admin_engine(str(self.server_url.render_as_string(hide_password=False)))
        try:
            with engine.connect() as conn:
                if self.backend == "postgresql":
                    # WITH (FORCE): a worker subprocess killed mid-test may leave a session
                    conn.execute(text(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)"))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS {self.name}"))
        finally:
            engine.dispose()

    def url_string(self) -> str:
        return self.url.render_as_string(hide_password=False)


def make_database(backend: str, tmp_path: Path) -> tuple[str, ServerDatabase | None]:
    """A fresh, empty database for ``backend``: its URL, and the server handle to drop."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}", None
    database = ServerDatabase(backend, SERVER_URLS[backend])
    database.create()
    return database.url_string(), database


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own for this test, on each configured backend."""
    url, database = make_database(request.param, tmp_path)
    try:
        yield url
    finally:
        if database is not None:
            database.drop()
        else:
            from rqjobs.store.engine import forget_engines

            forget_engines()


@pytest.fixture(params=SERVER_PARAMS)
def server_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerDatabase]:
    """An empty database on each configured server (PostgreSQL, MariaDB), not SQLite."""
    database = ServerDatabase(request.param, SERVER_URLS[request.param])
    database.create()
    try:
        yield database
    finally:
        database.drop()
