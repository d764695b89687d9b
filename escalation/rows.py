"""Whole model rows read with plain SQL, for the statements every request runs.

Building and compiling a queryset costs more CPU than PostgreSQL spends answering it: reading
a case with its queue and agent took 1.2 ms of Python through the ORM and 0.3 ms as SQL. The
SQL here names its columns from the models' own metadata, and the values go through the same
converters the ORM applies (JSON, UUIDs, times), so the instances are what a queryset returns.
Plain reads that are not on a hot path stay querysets.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
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


def key(model: type[models.Model], value) -> object:
    """A primary key as a SQL parameter (a UUID key as the database stores it); ValueError
    for a value that is not one."""
    field = model._meta.pk
    try:
        value = field.to_python(value)
    except ValidationError as exc:
        raise ValueError(f"not a {model.__name__} key: {value!r}") from exc
    return field.get_db_prep_value(value, connection)


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


def select(sql: str, params: Sequence, *models_in_row: type[models.Model]) -> list[tuple]:
    """Run a SELECT whose columns are columns() of each model in turn; each row as one
    instance per model."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    widths = [len(model._meta.concrete_fields) for model in models_in_row]
    result = []
    for row in found:
        instances, start = [], 0
        for model, width in zip(models_in_row, widths, strict=True):
            instances.append(instance(model, row[start : start + width]))
            start += width
        result.append(tuple(instances))
    return result


def fetch(sql: str, params: Sequence, *models_in_row: type[models.Model]) -> tuple | None:
    """select()'s first row, or None when there is none."""
    found = select(sql, params, *models_in_row)
    return found[0] if found else None


def update(instance: models.Model, fields: Sequence[str]) -> None:
    """instance.save(update_fields=fields) as one plain UPDATE, for models with no save() or
    save signals of their own (the case row: every transition writes it)."""
    model = type(instance)
    sql, targets = _update_sql(model, tuple(fields), connection.vendor)
    params = [
        field.get_db_prep_save(getattr(instance, field.attname), connection) for field in targets
    ]
    params.append(key(model, instance.pk))
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


def insert(
    objs: Sequence[models.Model],
    *,
    unique_fields: Sequence[str] = (),
    update_fields: Sequence[str] = (),
) -> None:
    """bulk_create(objs) as one plain multi-row INSERT, for models with no save() or signals
    of their own; an auto-incremented key is read back into each object, in order. With
    unique_fields and update_fields, a row that conflicts on the former gets the latter
    overwritten (bulk_create's update_conflicts)."""
    if not objs:
        return
    model = type(objs[0])
    auto = model._meta.pk if model._meta.pk.db_returning else None
    targets = [f for f in model._meta.concrete_fields if f is not auto]
    quote = connection.ops.quote_name
    db = connections[DEFAULT_DB_ALIAS]  # not the proxy: it is asked once per value here
    savers = _savers(model, auto, connection.vendor)
    values = [[save(obj, db) for save in savers] for obj in objs]
    if len(objs) > 1 and connection.vendor == "postgresql":
        # One array per column: a VALUES list of every row's placeholders is a new query for
        # each number of rows, and psycopg parses a long query again on every run (it keeps
        # only short ones): a tenth of a batch create's CPU. Binary (%b), so no element is
        # escaped into an array literal (a client-side cursor quotes them itself).
        # In the arrays' order, which the returned keys are matched to.
        arrays = [f"%b::{field.db_type(connection)}[]" for field in targets]
        names = ", ".join(f"c{n}" for n in range(len(targets)))
        rows_sql = (
            f"SELECT {names} FROM unnest({', '.join(arrays)})"  # noqa: S608
            f" WITH ORDINALITY AS r({names}, n) ORDER BY n"
        )
        params = [list(column) for column in zip(*values, strict=True)]
    else:
        one_row = f"({', '.join(['%s'] * len(targets))})"
        rows_sql = f"VALUES {', '.join([one_row] * len(objs))}"
        params = [value for row in values for value in row]
    sql = f"INSERT INTO {table(model)} ({', '.join(quote(f.column) for f in targets)}) {rows_sql}"  # noqa: S608
    if update_fields:
        column = [quote(model._meta.get_field(name).column) for name in update_fields]
        conflict = ", ".join(quote(model._meta.get_field(name).column) for name in unique_fields)
        sql += f" ON CONFLICT ({conflict}) DO UPDATE SET " + ", ".join(
            f"{c} = EXCLUDED.{c}" for c in column
        )
    if auto is not None:
        sql += f" RETURNING {quote(auto.column)}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if auto is not None:
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                setattr(obj, auto.attname, pk)
    for obj in objs:
        obj._state.adding, obj._state.db = False, connection.alias


# Django's own fields whose database value is the Python value itself (or, for integers, the
# backend's typed wrapper of it) when it has exactly this type: the full get_db_prep_save()
# costs a dozen calls per value, a third of a batch item's insert.
_PLAIN_TYPES: dict[type[models.Field], type] = {
    **dict.fromkeys(
        (models.CharField, models.TextField, models.SlugField, models.URLField, models.EmailField),
        str,
    ),
    **dict.fromkeys(
        (
            models.IntegerField,
            models.PositiveIntegerField,
            models.PositiveSmallIntegerField,
            models.SmallIntegerField,
            models.BigIntegerField,
            models.AutoField,
            models.BigAutoField,
        ),
        int,
    ),
    models.FloatField: float,
    models.BooleanField: bool,
}


@functools.cache
def _savers(model: type[models.Model], auto, vendor: str) -> tuple[Callable, ...]:
    """For each column insert() writes, a function (obj, db) -> its database value: what
    field.get_db_prep_save(field.pre_save(obj, True), db) returns, by a short way where the
    value's type makes it certain."""
    return tuple(_saver(field) for field in model._meta.concrete_fields if field is not auto)


def _saver(field: models.Field) -> Callable:
    attname = field.attname

    def full(obj, db):
        return field.get_db_prep_save(field.pre_save(obj, True), db)

    target = field.target_field if isinstance(field, models.ForeignKey) else field
    if type(field) not in (models.ForeignKey, type(target)) or type(target) not in (
        *_PLAIN_TYPES,
        models.UUIDField,
        models.DateTimeField,
    ):
        return full
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return full  # pre_save sets it
    if type(target) is models.UUIDField:
        if not connection.features.has_native_uuid_field:
            return full

        def uuid_value(obj, db):
            value = getattr(obj, attname)
            return value if value is None or type(value) is uuid.UUID else full(obj, db)

        return uuid_value
    if type(target) is models.DateTimeField:

        def aware_time(obj, db):
            value = getattr(obj, attname)
            if value is None:
                return None
            if type(value) is datetime and value.utcoffset() is not None:
                return db.ops.adapt_datetimefield_value(value)
            return full(obj, db)  # a naive time: Django warns and makes it aware

        return aware_time
    kind, internal_type = _PLAIN_TYPES[type(target)], target.get_internal_type()
    if kind is int:
        automatic = type(target) in (models.AutoField, models.BigAutoField)

        def integer(obj, db):
            value = getattr(obj, attname)
            if value is None:
                return None
            if type(value) is not int:
                return full(obj, db)
            if automatic:  # an auto key is checked, not wrapped
                return db.ops.validate_autopk_value(value)
            return db.ops.adapt_integerfield_value(value, internal_type)

        return integer

    def plain(obj, db):
        value = getattr(obj, attname)
        return value if value is None or type(value) is kind else full(obj, db)

    return plain


def compiled(build: Callable[..., models.QuerySet]) -> Callable[..., list[tuple]]:
    """`build(*values)` returns a queryset whose SQL depends on how many values (integer ids or
    strings) it is given, not on what they are; the wrapper runs that queryset for new values
    and returns its rows as the database sends them (no converters: ask for plain columns, or
    pass the rows to instance()). Its SQL is compiled once per database and kinds of value
    instead of on every call: each value reaches the SQL as the parameter that a marker value
    took on the first build."""
    cache: dict[tuple, tuple[str, list, list[tuple[int, int]]]] = {}

    @functools.wraps(build)
    def run(*values: int | str) -> list[tuple]:
        key = (connection.vendor, *(type(value) for value in values))
        if key not in cache:
            markers = [_marker(type(value), n) for n, value in enumerate(values)]
            sql, params = build(*markers).query.sql_with_params()
            slots = [
                (position, markers.index(value))
                for position, value in enumerate(params)
                if type(value) in (int, str) and value in markers
            ]
            if sorted(n for _, n in slots) != list(range(len(values))):
                raise ValueError(f"{build.__name__}: each value must be one parameter of the SQL")
            cache[key] = (sql, list(params), slots)
        sql, params, slots = cache[key]
        params = list(params)
        for position, n in slots:
            params[position] = values[n]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    return run


def _marker(kind: type, n: int) -> int | str:
    """A value no real id or name is: where it shows up in a compiled query's parameters, the
    n-th value goes."""
    if kind is int:
        return -(2**62) - n
    if kind is str:
        return f"\x00rows-marker-{n}\x00"
    raise TypeError(f"compiled queries take integer ids and strings, not {kind.__name__}")
