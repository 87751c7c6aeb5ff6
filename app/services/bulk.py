"""Many rows in one statement: the notifications' bulk INSERT, and records from many rows read.

An INSERT of one VALUES per row costs SQLAlchemy a rendering and the database a parse at
every call, and executemany costs the driver a bind per value of every row. Here the rows
travel as one parameter of JSON text, which the database reads in C (SQLite's `json_each`,
PostgreSQL's `json_array_elements`): psycopg2 would send a Python list as an `ARRAY[...]`
of one literal per value, for PostgreSQL to parse and plan one by one. The statement text
depends only on which columns vary between rows, so it is built once.
"""

from functools import lru_cache
from itertools import repeat
from operator import attrgetter, is_

import orjson
from sqlalchemy import JSON, String, text, type_coerce
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import NullType

from app.models import RECORD_COLUMNS, MutedCategory, Notification, NotificationRecord

_TABLE = Notification.__table__
_MUTED = MutedCategory.__tablename__
_BY_ID = attrgetter("id")
_NAMES = [f"raw_{column.key}" for column in RECORD_COLUMNS]
ROWS = "raw_rows"  # the JSON array of the rows' varying values
_PG = postgresql.dialect()
# A value's type in PostgreSQL, text for text columns: an explicit cast to VARCHAR(n) would
# cut a longer value short, where storing it into the column refuses it.
_PG_TYPES = {
    column.key: "TEXT" if isinstance(column.type, String) else column.type.compile(dialect=_PG)
    for column in RECORD_COLUMNS
}


# The record columns for a RETURNING or SELECT whose values come back as the driver gives
# them, for `records` to convert.
RAW_RECORD_COLUMNS = tuple(type_coerce(column, NullType()).label(column.key) for column in RECORD_COLUMNS)


def records(rows: list, dialect) -> list[NotificationRecord]:
    """Records of rows read through RAW_RECORD_COLUMNS, converting each distinct value once.

    SQLAlchemy converts every value of every row as it is fetched (on SQLite, parsing four
    timestamps per row); the rows a connect claims share their delivery time, and the rows
    of one send their creation time. JSON values are parsed row by row: each record gets a
    dict of its own.
    """
    if not rows:
        return []
    columns = [
        _each_converted(values, process, once)
        for values, (process, once) in zip(zip(*rows, strict=True), _result_processors(dialect), strict=True)
    ]
    return list(map(NotificationRecord, *columns))


def _each_converted(values: tuple, process, once: bool):
    if process is None:
        return values
    if not once:
        return [None if value is None else process(value) for value in values]
    done: dict = {}
    return [done[value] if value in done else done.setdefault(value, process(value)) for value in values]


@lru_cache(maxsize=8)
def _result_processors(dialect) -> list[tuple]:
    """(the column's result processor for `dialect` or None, whether one result may serve equal values)."""
    return [
        (column.type.dialect_impl(dialect).result_processor(dialect, None), not isinstance(column.type, JSON))
        for column in RECORD_COLUMNS
    ]


def insert_notifications(records: list[NotificationRecord], dialect, processors: list, driver: bool = False):
    """(statement, parameters) writing `records` in one INSERT, each value converted for `dialect`,
    but not a row whose user muted its category: one round trip for both, and the test and the
    write see the same muted categories.

    The statement is SQLAlchemy's, or with `driver` the SQL text in the driver's style.

    `processors`: each record column's bind processor for the dialect (or None). A value
    every row shares (a fan-out's message, status, timestamps, data) is bound once and
    converted once; the others go in one JSON array of rows, converting each distinct
    value once.
    """
    records = sorted(records, key=_BY_ID)  # in key order: each index page is visited once (records.py)
    columns = [
        _column_values(records, column.key, process)
        for column, process in zip(RECORD_COLUMNS, processors, strict=True)
    ]
    shared = tuple(is_shared for is_shared, _ in columns)
    params = {name: value for name, (is_shared, value) in zip(_NAMES, columns, strict=True)}
    varying = [params.pop(name) for name, is_shared in zip(_NAMES, shared, strict=True) if not is_shared]
    if varying:
        # Values are text, None or (PostgreSQL) aware datetimes, which orjson writes in RFC 3339.
        params[ROWS] = orjson.dumps(list(zip(*varying, strict=True))).decode()
    sql = _json_rows_sql(shared, dialect.name, driver)
    return (sql if driver else text(sql)), params


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


@lru_cache(maxsize=128)
def _json_rows_sql(shared: tuple[bool, ...], dialect_name: str, driver: bool) -> str:
    """INSERT ... SELECT FROM the JSON array of the rows' varying values, WHERE the row's user did
    not mute its category; shared values as binds (SQLAlchemy's `:name`, or with `driver`
    psycopg2's `%(name)s`; sqlite3 takes `:name`).

    SQLite: each varying value is text or null (timestamps, the status and `data` are
    converted to their stored text first), which `json_extract` gives back as that text or
    NULL. PostgreSQL: `->>` gives the value's text (or NULL), cast to the column's type, as
    the shared binds are.
    """
    postgres = dialect_name == "postgresql"

    def bind(name: str) -> str:
        return f"%({name})s" if postgres and driver else f":{name}"

    values, varying = [], 0
    for column, name, is_shared in zip(RECORD_COLUMNS, _NAMES, shared, strict=True):
        if is_shared:
            value = bind(name)
        else:
            value = f"value->>{varying}" if postgres else f"json_extract(value, '$[{varying}]')"
            varying += 1
        values.append(f"CAST({value} AS {_PG_TYPES[column.key]})" if postgres else value)
    rows = f"json_array_elements(CAST({bind(ROWS)} AS JSON))" if postgres else f"json_each({bind(ROWS)})"
    source = f" FROM {rows}" if varying else ""  # else: one row
    value_of = dict(zip((column.key for column in RECORD_COLUMNS), values, strict=True))
    wanted = (
        f"NOT EXISTS (SELECT 1 FROM {_MUTED} AS m "
        f"WHERE m.user_id = {value_of['user_id']} AND m.category = {value_of['category']})"
    )
    names = ", ".join(column.name for column in RECORD_COLUMNS)
    return f"INSERT INTO {_TABLE.name} ({names}) SELECT {', '.join(values)}{source} WHERE {wanted}"
