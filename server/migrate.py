"""Apply Alembic migrations from code (``mendwell db upgrade`` and test fixtures)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from server.db import create_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    return config


def _ensure_sqlite_dir(url: str) -> None:
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        path = Path(url[len(prefix):])
        path.parent.mkdir(parents=True, exist_ok=True)


async def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``."""
    _ensure_sqlite_dir(url)
    engine = create_engine(url, statement_timeout=None)  # a migration takes what it takes
    config = alembic_config(url)

    def run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    sqlite = url.startswith("sqlite")
    async with engine.connect() as connection:
        if sqlite:
            # SQLite changes a table by copying it to a new one and dropping the old
            # (Alembic's batch mode). With foreign keys enforced, dropping a table that
            # other rows point at fails, so they are checked after the migrations
            # instead. The pragma works only outside a transaction: it comes first.
            await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            await connection.commit()  # ends SQLAlchemy's autobegun (empty) transaction
        async with connection.begin():
            await connection.run_sync(run)
        if sqlite:
            broken = (await connection.exec_driver_sql("PRAGMA foreign_key_check")).all()
            await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            await connection.commit()
            if broken:
                raise RuntimeError(f"the migrations left rows with broken references: "
                                   f"{broken[:5]}")
    await engine.dispose()


def upgrade_sync(url: str, revision: str = "head") -> None:
    asyncio.run(upgrade(url, revision))
