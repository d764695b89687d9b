"""Handoff settings: one module, every knob read from the environment.

The defaults run the embedded set-up (SQLite in WAL mode, kombu's filesystem broker, a file
cache) so a newcomer needs no services; DATABASE_URL, CELERY_BROKER_URL and REDIS_URL switch to
PostgreSQL and Redis for production.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
import dj_email_url
from django.core.exceptions import ImproperlyConfigured

from handoff.env import env_bool, env_durations, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state of the embedded default only (SQLite file, broker folders, cache, beat schedule).
VAR_DIR = Path(env_str("HANDOFF_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off (make run generates one)."
        )
    SECRET_KEY = "insecure-debug-only-key"  # noqa: S105 - only ever used with DEBUG on
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "template_partials",
    "axes",
    "accounts",
    "escalation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Turns a locked-out login into its 429 page (see AXES_* below).
    "axes.middleware.AxesMiddleware",
    "escalation.api.errors.ApiErrorMiddleware",
]

ROOT_URLCONF = "handoff.urls"
WSGI_APPLICATION = "handoff.wsgi.application"
ASGI_APPLICATION = "handoff.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.roles",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)
    if _db["ENGINE"] == "django.db.backends.postgresql":
        # A sized pool per process: hundreds of waiting long-polls hold no connection, and
        # every request borrows one only for the queries it makes.
        _db.setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1, minimum=0),
            "max_size": env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=1),
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 10, minimum=1),
        }
        # Parameters bound by PostgreSQL and statements prepared on their second run in a
        # connection: the same few statements run on every request, and planning each anew
        # was about 40% of PostgreSQL's CPU for a claim and its decision (docs/operations.md).
        # Off (0) behind a pooler in transaction mode, which cannot keep prepared statements.
        if env_bool("DATABASE_PREPARED_STATEMENTS", True):
            _db["OPTIONS"].update(server_side_binding=True, prepare_threshold=2)
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "handoff.sqlite3",
        "OPTIONS": {
            # WAL + IMMEDIATE transactions let the web, worker and beat processes share one file
            # without "database is locked": writers queue on the busy timeout instead of failing.
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
            ),
        },
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits, long-poll wake-ups) --------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("HANDOFF_CACHE_PREFIX", "handoff"),
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- Content-Security-Policy: no inline scripts or styles, no eval, nothing from elsewhere ------
from csp.constants import NONE, SELF  # noqa: E402

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- Auth ------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/inbox/"
LOGOUT_REDIRECT_URL = "/accounts/login/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Login brute force: after HANDOFF_LOGIN_FAILURE_LIMIT wrong passwords for one username from one
# address, that pair is refused (429) for HANDOFF_LOGIN_COOLOFF_SECONDS. The address is
# REMOTE_ADDR (a client cannot spoof it with X-Forwarded-For); behind a proxy every login comes
# from the proxy's address, so the lock is then per username.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("HANDOFF_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("HANDOFF_LOGIN_COOLOFF_SECONDS", 900, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Production behind TLS: secure cookies, redirect to HTTPS (health probes exempt), HSTS.
HTTPS = env_bool("DJANGO_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
# __Host- cookies are Secure, host-only and Path=/: no sibling (sub)domain can set or shadow them.
if HTTPS:
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
# Off when the proxy itself redirects plain HTTP (the redirect is then not Django's to make).
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
# Set these to 0 if any subdomain still serves plain HTTP.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", HTTPS)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", HTTPS)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- API -------------------------------------------------------------------------------------
# Django answers an oversized body with 400; ApiErrorMiddleware turns it into the spec's 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["escalation.api.authentication.AgentKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["escalation.api.authentication.IsAgent"],
    "DEFAULT_THROTTLE_CLASSES": ["escalation.api.authentication.AgentRateThrottle"],
    "DEFAULT_PARSER_CLASSES": ["escalation.api.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "escalation.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Handoff agent API",
    "DESCRIPTION": (
        "Escalate the cases your agent should not decide alone, and get the human decision "
        "back. Authenticate with `Authorization: Bearer <api key>`. Every error is "
        '`{"error": {"code", "message", "fields"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "escalation.api.schema.add_long_poll",
    ],
}

# --- Email -----------------------------------------------------------------------------------
EMAIL_URL = env_str("EMAIL_URL")
if EMAIL_URL:
    vars().update(dj_email_url.parse(EMAIL_URL))
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "handoff@localhost")

# --- Celery ----------------------------------------------------------------------------------
# (With a host in it, kombu does not warn about a missing one on every connection.)
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://localhost//"
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A publish from a web request must fail fast when Redis is down; the outbox re-drives it.
        "socket_connect_timeout": 1,
        "socket_timeout": 2,
        "max_retries": 0,
        # Tasks are idempotent and short; the DB leases recover killed workers, so this only
        # bounds how long an unacked message waits before redelivery.
        "visibility_timeout": 600,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = env_str("HANDOFF_TASK_QUEUE", "handoff")
# The clocks run on a queue (and worker) of their own: a flood of deliveries cannot delay them.
HANDOFF_SWEEP_QUEUE = env_str("HANDOFF_SWEEP_QUEUE", f"{CELERY_TASK_DEFAULT_QUEUE}-sweeps")
CELERY_TASK_ROUTES = {
    "escalation.tasks.sweep_*": {"queue": HANDOFF_SWEEP_QUEUE},
    "escalation.tasks.notify_breaches": {"queue": HANDOFF_SWEEP_QUEUE},
    "escalation.tasks.log_audit_checkpoint": {"queue": HANDOFF_SWEEP_QUEUE},
    "escalation.tasks.redrive_outbox": {"queue": HANDOFF_SWEEP_QUEUE},
    "escalation.tasks.forget_idempotency_keys": {"queue": HANDOFF_SWEEP_QUEUE},
    "escalation.tasks.refresh_stats": {"queue": HANDOFF_SWEEP_QUEUE},
}
# A task that outlives this is killed; sweeps set tighter limits of their own.
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 270
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Handoff ---------------------------------------------------------------------------------
HANDOFF_SLA_SWEEP_SECONDS = env_int("HANDOFF_SLA_SWEEP_SECONDS", 30, minimum=1)
HANDOFF_OUTBOX_REDRIVE_SECONDS = env_int("HANDOFF_OUTBOX_REDRIVE_SECONDS", 15, minimum=1)
# The learning loop's QA draw is an HMAC with this secret (default: derived from SECRET_KEY).
HANDOFF_QA_SECRET = env_str("HANDOFF_QA_SECRET", "")
# How often the manager console's day rollups are folded from the audit log (escalation.rollups).
HANDOFF_STATS_REFRESH_SECONDS = env_int("HANDOFF_STATS_REFRESH_SECONDS", 30, minimum=1)
# Threads per web process for sync views (handoff.asgi.SyncViewsHandler): a request beyond them
# waits for one, in order. As many as the process's database pool holds, so none waits for a
# connection while the database is well; while it is not, each holds its thread for up to
# DATABASE_POOL_TIMEOUT, and fewer threads would queue the requests behind that one by one.
# Fewer can serve faster: on the bench's 2 cores, 2 threads per process made as many cases a
# second as 4, with half the p99 at concurrency 8 (docs/operations.md, "Web threads").
HANDOFF_WEB_THREADS = env_int(
    "HANDOFF_WEB_THREADS", env_int("DATABASE_POOL_MAX_SIZE", 10, minimum=1), minimum=1
)
# After a commit, how long a process's outbox doorbell waits for other commits' items to send
# them in one message (escalation.outbox.Doorbell): routing starts at most this much later.
HANDOFF_OUTBOX_RING_LINGER_MS = env_int("HANDOFF_OUTBOX_RING_LINGER_MS", 20, minimum=0)
# Outbox rows younger than this are left to their after-commit send before being re-driven.
HANDOFF_OUTBOX_GRACE_SECONDS = env_int("HANDOFF_OUTBOX_GRACE_SECONDS", 10, minimum=0)
# An item the re-drive sent is sent again only after this, if still undone (its message was
# lost with the broker, or its worker died).
HANDOFF_OUTBOX_RESEND_SECONDS = env_int("HANDOFF_OUTBOX_RESEND_SECONDS", 60, minimum=1)
HANDOFF_WEBHOOK_ALLOWED_HOSTS = env_list("HANDOFF_WEBHOOK_ALLOWED_HOSTS", [])
# 30s, 2m, 10m, 30m, 1h, 2h, 4h, 6h, then every 6h: 26h40m in all, past the spec's 24 h.
HANDOFF_WEBHOOK_RETRY_SCHEDULE = env_durations(
    "HANDOFF_WEBHOOK_RETRY_SCHEDULE",
    [30, 120, 600, 1800, 3600, 7200, 14400, 21600, 21600, 21600, 21600],
)
# One attempt's lease: a worker killed mid-attempt leaves the delivery to the periodic task
# once this passes; it must outlast the connect and read timeouts.
HANDOFF_WEBHOOK_CONNECT_TIMEOUT = env_int("HANDOFF_WEBHOOK_CONNECT_TIMEOUT", 5, minimum=1)
HANDOFF_WEBHOOK_READ_TIMEOUT = env_int("HANDOFF_WEBHOOK_READ_TIMEOUT", 10, minimum=1)
HANDOFF_WEBHOOK_LEASE_SECONDS = env_int(
    "HANDOFF_WEBHOOK_LEASE_SECONDS",
    HANDOFF_WEBHOOK_CONNECT_TIMEOUT + HANDOFF_WEBHOOK_READ_TIMEOUT + 15,
    minimum=HANDOFF_WEBHOOK_CONNECT_TIMEOUT + HANDOFF_WEBHOOK_READ_TIMEOUT + 1,
)
HANDOFF_METRICS_TOKEN = env_str("HANDOFF_METRICS_TOKEN")
HANDOFF_PUBLIC_URL = env_str("HANDOFF_PUBLIC_URL", f"http://127.0.0.1:{env_int('PORT', 8000)}")

CELERY_BEAT_SCHEDULE = {
    "redrive-outbox": {
        "task": "escalation.tasks.redrive_outbox",
        "schedule": float(HANDOFF_OUTBOX_REDRIVE_SECONDS),
    },
    "forget-idempotency-keys": {
        "task": "escalation.tasks.forget_idempotency_keys",
        "schedule": 3600.0,
    },
    "sweep-leases": {
        "task": "escalation.tasks.sweep_leases",
        "schedule": float(HANDOFF_SLA_SWEEP_SECONDS),
    },
    "sweep-breaches": {
        "task": "escalation.tasks.sweep_breaches",
        "schedule": float(HANDOFF_SLA_SWEEP_SECONDS),
    },
    "sweep-expiry": {
        "task": "escalation.tasks.sweep_expiry",
        "schedule": float(HANDOFF_SLA_SWEEP_SECONDS),
    },
    "notify-breaches": {
        "task": "escalation.tasks.notify_breaches",
        "schedule": float(HANDOFF_SLA_SWEEP_SECONDS),
    },
    "sweep-deliveries": {
        "task": "escalation.tasks.sweep_deliveries",
        "schedule": float(HANDOFF_SLA_SWEEP_SECONDS),
    },
    # Scopes of queues that allow automatic promotion are promoted once they certify.
    "sweep-autonomy": {
        "task": "escalation.tasks.sweep_autonomy",
        "schedule": float(HANDOFF_SLA_SWEEP_SECONDS),
    },
    "refresh-stats": {
        "task": "escalation.tasks.refresh_stats",
        "schedule": float(HANDOFF_STATS_REFRESH_SECONDS),
    },
    "log-audit-checkpoint": {
        "task": "escalation.tasks.log_audit_checkpoint",
        "schedule": 3600.0,
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "handoff": {
            "handlers": ["console"],
            "level": env_str("HANDOFF_LOG_LEVEL", "INFO"),
            "propagate": False,
        },
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
