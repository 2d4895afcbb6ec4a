"""A new SQLite database is made from the declared schema (no Alembic): it must equal what the migrations build."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from bot.store import make_engine, migrate
from bot.store.engine import _MIGRATIONS, HEAD_REVISION


def _schema(path: Path) -> dict[str, Any]:
    """Every table's columns (in order), foreign keys and indexes (with their SQL), as SQLite reports them."""
    db = sqlite3.connect(path)
    try:
        out: dict[str, Any] = {}
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        for (name,) in tables:
            indexes = []
            for row in db.execute(f"PRAGMA index_list('{name}')").fetchall():
                sql = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (row[1],)).fetchone()
                columns = db.execute(f"PRAGMA index_info('{row[1]}')").fetchall()
                indexes.append((row[1], row[2], row[3], columns, sql[0] if sql else None))
            out[name] = {
                "columns": db.execute(f"PRAGMA table_xinfo('{name}')").fetchall(),
                "foreign_keys": sorted(db.execute(f"PRAGMA foreign_key_list('{name}')").fetchall()),
                "indexes": sorted(indexes),
            }
        out["revision"] = db.execute("SELECT version_num FROM alembic_version").fetchall()
        return out
    finally:
        db.close()


def test_a_new_sqlite_file_gets_the_migrations_schema(tmp_path: Path) -> None:
    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    replayed = make_engine(f"sqlite:///{tmp_path / 'replayed.db'}")
    try:
        assert migrate(fresh) is True
        assert migrate(fresh) is False  # stamped at head: nothing more to apply
        with replayed.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(_MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        fresh.dispose()
        replayed.dispose()
    made, migrated = _schema(tmp_path / "fresh.db"), _schema(tmp_path / "replayed.db")
    assert made["revision"] == [(HEAD_REVISION,)]
    assert made == migrated


def test_a_new_sqlite_file_does_not_load_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = f"import sys\nfrom bot.store import Store\nStore.open({url!r}).close()\nprint('alembic' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
