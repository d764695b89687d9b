"""Operations several migrations build the same way. (The loader skips modules whose name
starts with an underscore, so this one is not a migration.)"""

from django.db import migrations


def postgresql_only(forward_sql: str, backward_sql: str) -> migrations.RunPython:
    """Run raw SQL on PostgreSQL only (triggers, functions); SQLite gets nothing."""

    def forward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(forward_sql, params=None)

    def backward(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(backward_sql, params=None)

    return migrations.RunPython(forward, backward)


def drop_index(table: str, name: str, columns: str) -> migrations.RunSQL:
    """Drop index `name` of `table`; reversed, create it again on `columns`."""
    return migrations.RunSQL(
        f'DROP INDEX IF EXISTS "{name}"',
        f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" {columns}',
    )
