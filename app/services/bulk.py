"""Many rows in one statement: the notifications' bulk INSERT.

A statement whose size follows the data (one bind per value of an `IN (...)`, one VALUES
per row) costs SQLAlchemy a rendering and the database a parse at every call, and the
driver a bind per value. Here the data travels as one parameter instead: a PostgreSQL
array, or JSON text that SQLite's `json_each` reads in C. The statement text depends only
on which columns vary between rows, so it is built once.
"""

from functools import lru_cache
from itertools import repeat
from operator import attrgetter, is_

import orjson
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from app.models import RECORD_COLUMNS, Notification, NotificationRecord

_TABLE = Notification.__table__
_NAMES = [f"raw_{column.key}" for column in RECORD_COLUMNS]
ROWS = "raw_rows"  # SQLite: the JSON array of the rows' varying values


def insert_notifications(records: list[NotificationRecord], dialect, processors: list):
    """(statement, parameters) writing `records` in one INSERT, each value converted for `dialect`.

    `processors`: each record column's bind processor for the dialect (or None). A value
    every row shares (a fan-out's message, status, timestamps, data) is bound once and
    converted once; the others go as one array per column (PostgreSQL) or one JSON array
    of rows (SQLite), converting each distinct value once.
    """
    columns = [
        _column_values(records, column.key, process)
        for column, process in zip(RECORD_COLUMNS, processors, strict=True)
    ]
    shared = tuple(is_shared for is_shared, _ in columns)
    params = {name: value for name, (is_shared, value) in zip(_NAMES, columns, strict=True)}
    if dialect.name == "postgresql":
        return _unnest_statement(shared), params
    varying = [params.pop(name) for name, is_shared in zip(_NAMES, shared, strict=True) if not is_shared]
    if varying:
        params[ROWS] = orjson.dumps(list(zip(*varying, strict=True))).decode()
    return _json_rows_statement(shared), params


def _column_values(records: list[NotificationRecord], key: str, process) -> tuple[bool, object]:
    """(True, the converted value) when every record holds the same object; else (False, the list)."""
    getter = attrgetter(key)
    raw = list(map(getter, records))
    first = raw[0]
    if all(map(is_, raw, repeat(first))):
        return True, first if process is None else process(first)
    return False, raw if process is None else _converted(raw, process)


def _converted(values: list, process) -> list:
    """`values` through the column's bind processor, called once per distinct value."""
    done: dict = {}

    def convert(value):
        # A fan-out's rows share one `data` dict: unhashable, so known by identity.
        key = id(value) if isinstance(value, dict) else value
        if key not in done:
            done[key] = process(value)
        return done[key]

    return list(map(convert, values))


@lru_cache(maxsize=64)
def _unnest_statement(shared: tuple[bool, ...]):
    """PostgreSQL: INSERT ... SELECT FROM unnest(arrays of the varying columns), shared ones as scalars."""
    dialect = postgresql.dialect()
    arrays, values = [], []
    for column, name, is_shared in zip(RECORD_COLUMNS, _NAMES, shared, strict=True):
        sql_type = column.type.dialect_impl(dialect).compile(dialect=dialect)
        if is_shared:
            values.append(f"CAST(:{name} AS {sql_type})")
        else:
            arrays.append(f"CAST(:{name} AS {sql_type}[])")
            values.append(f"v.c{len(arrays)}")
    aliases = ", ".join(f"c{i}" for i in range(1, len(arrays) + 1))
    source = f" FROM unnest({', '.join(arrays)}) AS v({aliases})" if arrays else ""  # else: one row
    return _insert_select(values, source)


@lru_cache(maxsize=64)
def _json_rows_statement(shared: tuple[bool, ...]):
    """SQLite: INSERT ... SELECT FROM json_each(the rows' varying values), shared ones as binds.

    Every varying value is text or null (timestamps, the status and `data` are converted to
    their stored text first), which `json_extract` gives back as the same text or NULL.
    """
    values, varying = [], 0
    for name, is_shared in zip(_NAMES, shared, strict=True):
        if is_shared:
            values.append(f":{name}")
        else:
            values.append(f"json_extract(value, '$[{varying}]')")
            varying += 1
    source = f" FROM json_each(:{ROWS})" if varying else ""  # else: one row
    return _insert_select(values, source)


def _insert_select(values: list[str], source: str):
    names = ", ".join(column.name for column in RECORD_COLUMNS)
    return text(f"INSERT INTO {_TABLE.name} ({names}) SELECT {', '.join(values)}{source}")
