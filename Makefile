# Two commands: `make run` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# make test talks to the real services at their local default addresses unless overridden.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/handoff
TEST_REDIS_URL ?= redis://127.0.0.1:6379/11
TEST_BROKER_URL ?= redis://127.0.0.1:6379/12

.PHONY: run test soak chromium install install-dev lock lint migrate seed clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Installs exactly what the lock says (hashes checked); re-runs only when the lock changes.
$(VENV)/.installed-base: requirements/base.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/base.lock
	touch $@

$(VENV)/.installed-dev: requirements/dev.lock | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements/dev.lock
	touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-base
install-dev: $(VENV)/.installed-dev

# Re-lock after editing pyproject.toml (needs uv: `pip install uv`).
lock:
	uv pip compile pyproject.toml --python-version 3.11 --generate-hashes -q -o requirements/base.lock
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -q -o requirements/dev.lock

# The embedded set-up runs with DJANGO_DEBUG off, so it needs a secret key: made once in
# var/secret_key, used unless DJANGO_SECRET_KEY is already set.
var/secret_key: | $(BIN)/python
	@mkdir -p var
	@umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(50))" > $@
WITH_KEY = export DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(cat var/secret_key)}"

migrate: install var/secret_key
	@$(WITH_KEY); $(BIN)/python manage.py migrate --noinput

seed: migrate
	@$(WITH_KEY); $(BIN)/python manage.py seed_demo

# One shell, so migrate, seed_demo, collectstatic and every process honcho starts see the same
# key. The seed output (logins and a fresh agent key) is held back and printed last, right
# above the server's own log.
run: install var/secret_key
	@set -e; \
	$(WITH_KEY) PORT=$(PORT); \
	$(BIN)/python manage.py migrate --noinput -v 0; \
	seed_output="$$($(BIN)/python manage.py seed_demo)"; \
	$(BIN)/python manage.py collectstatic --noinput -v 0; \
	echo ""; printf '%s\n' "$$seed_output"; echo ""; \
	echo "Handoff is starting on http://127.0.0.1:$(PORT)/  (inbox: /inbox/, API docs: /api/v1/docs)"; \
	echo ""; \
	exec $(BIN)/honcho start -f Procfile.local

# The browser tests drive Debian's Chromium (Playwright's own download needs the internet).
# A fresh machine has none: install it (these machines run as root).
chromium:
	@command -v chromium >/dev/null 2>&1 || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

test: install-dev chromium
	DJANGO_SECRET_KEY=test-only-secret DJANGO_DEBUG=0 \
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
	HANDOFF_CHROMIUM="$$(command -v chromium)" \
		$(BIN)/pytest -p no:cacheprovider -n 2 $(PYTEST_ARGS)

# Not part of `make test`: ten minutes of steady load under faults (a worker killed every
# minute, a flaky webhook receiver), then the invariants, printed; non-zero if one fails.
# Needs the local PostgreSQL (database handoff_soak, re-created) and redis-server on PATH.
soak: install-dev
	$(BIN)/python bench/soak.py

# Not part of `make test`: the benchmark suite on the local PostgreSQL (its own database) and a
# redis-server of its own; rewrites its section of bench/RESULTS.md. BENCH_ARGS=--quick is small.
bench: install-dev
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var/ staticfiles/
