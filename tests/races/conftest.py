"""Race tests: real transactions on PostgreSQL, from threads that start together.

Each thread has its own database connection (and so its own transaction), which is what a
row lock, SKIP LOCKED or an advisory lock is about; inside one test transaction they would
prove nothing. Every thread is joined with a bound, and an exception in a thread is returned
as its result so the test can name it.
"""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture(autouse=True)
def _postgresql_only(transactional_db):
    if connection.vendor != "postgresql":
        pytest.skip("races are decided by PostgreSQL's locks")
