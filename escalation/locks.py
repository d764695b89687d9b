"""Row locks taken in one short raw statement, for the hot paths (a create, an audit write):
the ORM's select_for_update() builds and compiles a query and a model instance each time,
which under a lock every other writer waits for is the cost that counts."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection


def lock_row(model, pk, columns: Sequence[str] = (), *, no_key: bool = True) -> tuple | None:
    """Lock one row until the transaction ends and return the given columns (an empty tuple
    when none are asked for), or None when there is no such row.

    FOR NO KEY UPDATE by default, like every row lock here (a plain FOR UPDATE also blocks the
    foreign-key checks of rows pointing at it). SQLite has no row locks; its IMMEDIATE
    transactions already serialize writers."""
    quote = connection.ops.quote_name
    suffix = lock_clause(no_key=no_key)
    fields = ", ".join(quote(model._meta.get_field(name).column) for name in columns) or "1"
    # Only quoted names from the model's own metadata are formatted in; the key is a parameter.
    sql = (
        f"SELECT {fields} FROM {quote(model._meta.db_table)}"  # noqa: S608
        f" WHERE {quote(model._meta.pk.column)} = %s{suffix}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [pk])
        row = cursor.fetchone()
    if row is None:
        return None
    return tuple(row) if columns else ()


def lock_clause(*, no_key: bool = True) -> str:
    """ " FOR NO KEY UPDATE" (or " FOR UPDATE") where the database has row locks, else ""."""
    features = connection.features
    if not features.has_select_for_update:
        return ""
    no_key = no_key and features.has_select_for_no_key_update
    return " FOR NO KEY UPDATE" if no_key else " FOR UPDATE"
