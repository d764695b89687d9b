"""Whole model rows read with plain SQL, for the statements every request runs.

Building and compiling a queryset costs more CPU than PostgreSQL spends answering it: reading
a case with its queue and agent took 1.2 ms of Python through the ORM and 0.3 ms as SQL. The
SQL here names its columns from the models' own metadata, and the values go through the same
converters the ORM applies (JSON, UUIDs, times), so the instances are what a queryset returns.
Plain reads that are not on a hot path stay querysets.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
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


def update(instance: models.Model, fields: Sequence[str]) -> None:
    """instance.save(update_fields=fields) as one plain UPDATE, for models with no save() or
    save signals of their own (the case row: every transition writes it)."""
    model = type(instance)
    sql, targets = _update_sql(model, tuple(fields), connection.vendor)
    params = [
        field.get_db_prep_save(getattr(instance, field.attname), connection) for field in targets
    ]
    params.append(model._meta.pk.get_db_prep_value(instance.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount != 1:
            raise models.ObjectDoesNotExist(f"{model.__name__} {instance.pk} was not updated")


@functools.cache
def _update_sql(
    model: type[models.Model], fields: tuple[str, ...], vendor: str
) -> tuple[str, list]:
    quote = connection.ops.quote_name
    targets = [model._meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in targets)
    pk = quote(model._meta.pk.column)
    return f"UPDATE {table(model)} SET {assignments} WHERE {pk} = %s", targets  # noqa: S608


def compiled(build: Callable[..., models.QuerySet]) -> Callable[..., list[tuple]]:
    """`build(*ids)` returns a queryset whose SQL depends on how many integer ids it is given,
    not on their values; the wrapper runs that queryset's rows for new ids, compiling its SQL
    once per database and count instead of on every call. The ids reach the SQL as parameters
    in the places marker values took on the first build."""
    cache: dict[tuple[str, int], tuple[str, list, list[tuple[int, int]]]] = {}

    @functools.wraps(build)
    def run(*ids: int) -> list[tuple]:
        key = (connection.vendor, len(ids))
        if key not in cache:
            markers = [_MARKER - n for n in range(len(ids))]
            sql, params = build(*markers).query.sql_with_params()
            slots = [
                (position, markers.index(value))
                for position, value in enumerate(params)
                if type(value) is int and value in markers
            ]
            if len(slots) != len(ids):
                raise ValueError(f"{build.__name__}: each id must be one parameter of the SQL")
            cache[key] = (sql, list(params), slots)
        sql, params, slots = cache[key]
        params = list(params)
        for position, n in slots:
            params[position] = ids[n]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return run


# No real id is this small: where it shows up in a compiled query's parameters, an id goes.
_MARKER = -(2**62)
