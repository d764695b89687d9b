from __future__ import annotations

import io

import pytest
from django.core.management import call_command


@pytest.fixture
def run():
    """Run a management command; returns its stdout."""

    def run_command(command: str, /, *args: str, **options) -> str:
        out = io.StringIO()
        call_command(command, *args, stdout=out, **options)
        return out.getvalue()

    return run_command
