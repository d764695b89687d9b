# One image for every process: web (the default command), migrate, worker and beat differ only
# in their command (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    WEB_CONCURRENCY=2

WORKDIR /app

# Exactly what the lock says, every hash checked (psycopg-binary brings its own libpq).
COPY requirements/base.lock requirements/base.lock
RUN pip install --require-hashes --no-deps -r requirements/base.lock

RUN groupadd --system --gid 10001 handoff \
    && useradd --system --uid 10001 --gid handoff --home-dir /app --shell /usr/sbin/nologin handoff

# The code stays root-owned and read-only to the app; only var/ is writable (the default beat
# schedule, or the SQLite file if someone runs the image without DATABASE_URL).
COPY . .
RUN DJANGO_SECRET_KEY=collectstatic-only HANDOFF_VAR_DIR=/tmp/build-var \
        python manage.py collectstatic --noinput -v 0 \
    && rm -rf /tmp/build-var \
    && mkdir -p var \
    && chown handoff:handoff var

USER handoff
EXPOSE 8000

# Gunicorn reads WEB_CONCURRENCY for its worker count. ASGI under uvicorn workers, so the
# long-poll waits without holding a worker or a database connection.
CMD ["gunicorn", "handoff.asgi:application", "-k", "uvicorn_worker.UvicornWorker", \
     "-b", "0.0.0.0:8000", "--access-logfile", "-", "--graceful-timeout", "30"]
