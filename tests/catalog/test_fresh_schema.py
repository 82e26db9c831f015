"""A brand-new database made from the models (create_all + stamp) is exactly Alembic's head.

``migrate_engine(engine, schema=...)`` skips Alembic on an empty SQLite file and creates every
table from the models in one transaction. That is only right while the models and the migration
scripts describe the same schema, so these tests build one database each way on real servers
(SQLite files; MariaDB when installed) and compare what the database itself reports through
SQLAlchemy's inspector: tables, columns (type, nullability, server default), primary keys,
indexes, unique, foreign key and check constraints, and on SQLite which tables use AUTOINCREMENT.
"""

from __future__ import annotations

import importlib
import io
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, create_engine, inspect, text
from sqlalchemy.orm import DeclarativeBase

import bizcloud
from bizcloud.authz import mariadb
from bizcloud.catalog.db import (
    VERSION_TABLE,
    alembic_config,
    at_head,
    create_fresh,
    make_engine,
    migrate_engine,
)
from bizcloud.daemons import database_schema

MARIADB_MASTER_PORT, MARIADB_REPLICA_PORT = 23220, 23230  # apart from tests/authz (23160-23190)


def snapshot(engine: Engine) -> dict[str, dict[str, Any]]:
    """The schema as the database reports it, in plain values that compare with ``==``."""
    inspector = inspect(engine)
    dialect = engine.dialect
    tables: dict[str, dict[str, Any]] = {}
    for table in sorted(inspector.get_table_names()):
        tables[table] = {
            "columns": {c["name"]: {"type": str(c["type"].compile(dialect=dialect)),
                                    "nullable": c["nullable"], "default": c.get("default"),
                                    "autoincrement": c.get("autoincrement")}
                        for c in inspector.get_columns(table)},
            "primary_key": inspector.get_pk_constraint(table),
            "indexes": sorted((i["name"] or "", tuple(i["column_names"]), bool(i["unique"]))
                              for i in inspector.get_indexes(table)),
            "unique": sorted((u["name"] or "", tuple(u["column_names"]))
                             for u in inspector.get_unique_constraints(table)),
            "foreign_keys": sorted((f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"],
                                    tuple(f["referred_columns"]), tuple(sorted(f["options"].items())))
                                   for f in inspector.get_foreign_keys(table)),
            "checks": sorted((c["name"] or "", " ".join(c["sqltext"].split()))
                             for c in inspector.get_check_constraints(table)),
        }
    if dialect.name == "sqlite":
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
            for name, sql in rows:
                if name in tables:
                    tables[name]["autoincrement_table"] = "AUTOINCREMENT" in sql.upper()
    return tables


def differences(left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]]) -> list[str]:
    """What differs, table by table and aspect by aspect (readable in an assertion message)."""
    found = [f"table {t}: only on one side" for t in sorted(set(left) ^ set(right))]
    for table in sorted(set(left) & set(right)):
        for aspect in sorted(set(left[table]) | set(right[table])):
            if left[table].get(aspect) != right[table].get(aspect):
                found.append(f"{table}.{aspect}: {left[table].get(aspect)!r} != {right[table].get(aspect)!r}")
    return found


def upgraded_by_alembic(engine: Engine) -> None:
    command.upgrade(alembic_config(engine), "head")


def made_from_models(engine: Engine, schema: Any = database_schema) -> None:
    """The models' create_all and the stamp, on any database (``create_fresh`` itself is SQLite only)."""
    with engine.begin() as connection:
        for metadata in schema():
            metadata.create_all(connection, checkfirst=False)
        VERSION_TABLE.create(connection)
        connection.execute(VERSION_TABLE.insert().values(version_num=_head(engine)))


def _head(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


@pytest.fixture
def two_sqlite(tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    old = make_engine(f"sqlite:///{tmp_path / 'alembic.db'}")
    new = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    yield old, new
    old.dispose()
    new.dispose()


def test_a_fresh_sqlite_file_made_from_the_models_is_alembics_head(two_sqlite: tuple[Engine, Engine]) -> None:
    by_alembic, by_models = two_sqlite
    upgraded_by_alembic(by_alembic)
    assert create_fresh(by_models, database_schema)
    assert differences(snapshot(by_alembic), snapshot(by_models)) == []
    assert len(snapshot(by_models)) == 17  # 16 tables of five layers + alembic_version
    with by_models.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == _head(by_models)
        assert compare_metadata(context, database_schema()) == []  # type: ignore[arg-type]


def test_the_comparison_sees_a_model_that_drifted(two_sqlite: tuple[Engine, Engine]) -> None:
    """A guard for the guard: one column's nullability, one index and one column added, each noticed."""
    by_alembic, by_models = two_sqlite
    upgraded_by_alembic(by_alembic)
    drifted = MetaData(naming_convention=database_schema()[0].naming_convention)
    for metadata in database_schema():
        for table in metadata.sorted_tables:
            table.to_metadata(drifted)
    drifted.tables["instances"].c.pod.nullable = True
    drifted.tables["journal"].indexes.clear()
    drifted.tables["routes"].append_column(Column("weight", Integer, nullable=False))
    made_from_models(by_models, schema=lambda: [drifted])
    found = differences(snapshot(by_alembic), snapshot(by_models))
    assert [d.split(":")[0] for d in found] == ["instances.columns", "journal.indexes", "routes.columns"]


def test_the_schema_holds_every_models_module() -> None:
    """A new table owner (a ``DeclarativeBase`` anywhere in the package) must be in ``database_schema``,
    or a fresh database would lack its tables while Alembic's would have them."""
    root = Path(bizcloud.__file__).parent
    owners: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        if re.search(r"^class \w+\(DeclarativeBase\):", path.read_text(encoding="utf-8"), re.MULTILINE):
            module = importlib.import_module(".".join(path.relative_to(root.parent).with_suffix("").parts))
            owners |= {table for value in vars(module).values()
                       if isinstance(value, type) and issubclass(value, DeclarativeBase)
                       and value is not DeclarativeBase for table in value.metadata.tables}
    assert owners == {table for metadata in database_schema() for table in metadata.tables}


def test_a_database_made_fresh_is_at_head_and_alembic_moves_it(tmp_path: Path) -> None:
    """After the fast path, Alembic (``current``, a downgrade, an upgrade) treats the file as its own."""
    url = f"sqlite:///{tmp_path / 'then.db'}"
    engine = make_engine(url)
    try:
        migrate_engine(engine, schema=database_schema)
        assert at_head(engine)
        config = alembic_config(engine)
        config.stdout = io.StringIO()
        command.current(config)  # what `alembic current` prints
        assert config.stdout.getvalue().split() == [_head(engine), "(head)"]
        command.downgrade(config, "-1")
        assert not at_head(engine)
        migrate_engine(engine, schema=database_schema)  # a table exists: Alembic's upgrade, not create_all
        assert at_head(engine)
        reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
        upgraded_by_alembic(reference)
        assert differences(snapshot(reference), snapshot(engine)) == []
        reference.dispose()
    finally:
        engine.dispose()


def test_the_fast_path_never_imports_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'quick.db'}"
    code = ("import sys; from bizcloud.catalog.db import make_engine, migrate_engine; "
            "from bizcloud.daemons import database_schema; "
            f"migrate_engine(make_engine({url!r}), schema=database_schema); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_a_failure_half_way_leaves_the_file_empty(tmp_path: Path) -> None:
    """The tables and the stamp commit together or not at all (SQLite's DDL is transactional)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'half.db'}")

    def breaks_after_the_first_metadata() -> Iterator[MetaData]:
        yield database_schema()[0]
        raise RuntimeError("killed half way")

    try:
        with pytest.raises(RuntimeError, match="half way"):
            create_fresh(engine, breaks_after_the_first_metadata)
        assert inspect(engine).get_table_names() == []
        assert create_fresh(engine, database_schema)  # still empty: the next start makes it whole
        assert not create_fresh(engine, database_schema)  # and only once
        assert at_head(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize("attempt", range(3))
def test_processes_preparing_one_empty_file_together_make_one_schema(tmp_path: Path, attempt: int) -> None:
    """Monitors (the fast path) and servers (Alembic) starting together on an empty file: the first
    writer makes the whole schema, the others wait on the write lock and find it made."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    fast = ("from bizcloud.catalog.db import make_engine, migrate_engine; "
            "from bizcloud.daemons import database_schema; "
            f"migrate_engine(make_engine({url!r}), schema=database_schema)")
    slow = f"from bizcloud.catalog.db import migrate; migrate({url!r})"
    procs = [subprocess.Popen([sys.executable, "-c", fast if i % 4 else slow], stderr=subprocess.PIPE,
                              text=True) for i in range(8)]
    failures = [p.communicate(timeout=60)[1] for p in procs if p.wait(timeout=60) != 0]
    assert failures == []
    engine = make_engine(url)
    reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    try:
        upgraded_by_alembic(reference)
        assert differences(snapshot(reference), snapshot(engine)) == []
        with engine.connect() as connection:
            stamps = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        assert stamps == [_head(engine)]
    finally:
        engine.dispose()
        reference.dispose()


@pytest.fixture(scope="module")
def mariadb_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mariadb.MariaDbPair]:
    if shutil.which("mariadbd", path="/usr/sbin:/usr/bin:/usr/local/sbin") is None:
        pytest.skip("MariaDB is not installed (mariadbd): run `make setup`")
    directory = Path(tmp_path_factory.mktemp("mariadb"))
    pair = mariadb.start_pair(directory, master_port=MARIADB_MASTER_PORT, replica_port=MARIADB_REPLICA_PORT,
                              bind=["127.0.0.1"])
    yield pair
    mariadb.stop_pair(directory)


def test_on_mariadb_the_models_are_alembics_head_too(mariadb_pair: mariadb.MariaDbPair) -> None:
    """MariaDB keeps Alembic (its DDL commits statement by statement, so create_all could be seen
    half made), but the models must still match the scripts there: types, defaults and constraints
    are rendered per dialect."""
    engines = []
    for name in ("by_alembic", "by_models"):
        mariadb.create_database(mariadb_pair, name)
        engines.append(create_engine(f"mysql+pymysql://{mariadb_pair.admin_user}:{mariadb_pair.admin_password}"
                                     f"@127.0.0.1:{mariadb_pair.master_port}/{name}"))
    by_alembic, by_models = engines
    try:
        migrate_engine(by_alembic, schema=database_schema)  # not SQLite: Alembic's path
        assert not create_fresh(by_models, database_schema)
        made_from_models(by_models)
        assert differences(snapshot(by_alembic), snapshot(by_models)) == []
        assert len(snapshot(by_models)) == 17
    finally:
        for engine in engines:
            engine.dispose()
