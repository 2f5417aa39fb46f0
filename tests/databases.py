"""Real databases for tests: a migrated SQLite template, and PostgreSQL when present.

PostgreSQL is used when MENDWELL_TEST_DATABASE_URL names a server (or one answers on
127.0.0.1:5432); each run creates its own fresh database there and drops it at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from server.db import Base, create_engine
from server.migrate import upgrade

DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def require_services() -> bool:
    return os.environ.get("MENDWELL_REQUIRE_SERVICES") == "1"


def postgres_server_url() -> str:
    return os.environ.get("MENDWELL_TEST_DATABASE_URL") or DEFAULT_PG


async def _pg_reachable(url: str) -> str | None:
    """None when the server answers, else the reason."""
    u = make_url(url)
    try:
        conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username,
                                     password=u.password, database=u.database or "postgres",
                                     timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"PostgreSQL not reachable at {u.host}:{u.port or 5432} ({type(exc).__name__})"
    await conn.close()
    return None


def postgres_unavailable() -> str | None:
    return asyncio.run(_pg_reachable(postgres_server_url()))


class SqliteTemplate:
    """Migrate once, then hand each test its own copy of the file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.template = directory / "template.db"
        asyncio.run(upgrade(self.url(self.template)))
        self.count = 0

    @staticmethod
    def url(path: Path) -> str:
        return f"sqlite+aiosqlite:///{path}"

    def fresh(self) -> str:
        self.count += 1
        path = self.directory / f"test-{self.count}.db"
        shutil.copyfile(self.template, path)
        return self.url(path)


class PostgresDatabase:
    """One database for the run, emptied between tests."""

    def __init__(self, server_url: str) -> None:
        u = make_url(server_url)
        self.admin_url = u
        self.name = f"mendwell_test_{uuid.uuid4().hex[:10]}"
        self.url = u.set(database=self.name).render_as_string(hide_password=False)
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        asyncio.run(upgrade(self.url))
        tables = [t.name for t in Base.metadata.sorted_tables]
        self.truncate = f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"

    async def _admin(self, statement: str) -> None:
        u = self.admin_url
        conn = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username,
                                     password=u.password, database=u.database or "postgres")
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    def fresh(self) -> str:
        async def empty() -> None:
            engine = create_engine(self.url)
            async with engine.begin() as connection:
                await connection.execute(text(self.truncate))
            await engine.dispose()

        asyncio.run(empty())
        return self.url

    def drop(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
