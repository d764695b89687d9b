"""Whole model rows read with plain SQL, for the statements every request runs.

Building and compiling a queryset costs more CPU than PostgreSQL spends answering it: reading
a case with its queue and agent took 1.2 ms of Python through the ORM and 0.3 ms as SQL. The
SQL here names its columns from the models' own metadata, and the values go through the same
converters the ORM applies (JSON, UUIDs, times), so the instances are what a queryset returns.
Plain reads that are not on a hot path stay querysets.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypeVar

from django.db import connection, models
from django.db.models.sql import Query

M = TypeVar("M", bound=models.Model)


@functools.cache
def _layout(model: type[models.Model], vendor: str) -> tuple[tuple[str, ...], tuple, str]:
    """(attribute names, the ORM's converters by position, quoted table) of `model`."""
    fields = model._meta.concrete_fields
    compiler = Query(model).get_compiler(connection=connection)
    converters = compiler.get_converters([field.get_col(model._meta.db_table) for field in fields])
    quote = connection.ops.quote_name
    return tuple(f.attname for f in fields), converters, quote(model._meta.db_table)


def columns(model: type[models.Model], alias: str) -> str:
    """The select list of every concrete column of `model`, as `alias`."""
    quote = connection.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


def table(model: type[models.Model]) -> str:
    return _layout(model, connection.vendor)[2]


def instance(model: type[M], values: Sequence) -> M:
    """The model instance of one row's values (in columns() order), converted as the ORM does."""
    names, converters, _ = _layout(model, connection.vendor)
    values = list(values)
    for position, (functions, expression) in converters.items():
        for convert in functions:
            values[position] = convert(values[position], expression, connection)
    return model.from_db(connection.alias, names, values)


def fetch(sql: str, params: Sequence, *models_in_row: type[models.Model]) -> tuple | None:
    """Run a SELECT whose columns are columns() of each model in turn; the first row as one
    instance per model, or None when there is no row."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    found, start = [], 0
    for model in models_in_row:
        width = len(model._meta.concrete_fields)
        found.append(instance(model, row[start : start + width]))
        start += width
    return tuple(found)
