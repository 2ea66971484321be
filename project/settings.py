"""Vireo settings, read from the environment (django-environ) with embedded defaults for a first run.

Every default can be replaced by an environment variable; README.md lists them. Secrets that are not
given (SECRET_KEY, the Fernet keys for secrets at rest) are generated once into the data folder.
"""

import os
import secrets
from pathlib import Path

import environ
from cryptography.fernet import Fernet
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
DATA_DIR = Path(env.str("VIREO_DATA_DIR", default=str(BASE_DIR / "data")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _persistent_secret(filename: str, make) -> str:
    """Read a generated secret from the data folder, creating it (mode 0600) on first use."""
    path = DATA_DIR / filename
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(make())
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _persistent_secret(
    "secret_key", lambda: secrets.token_urlsafe(50)
)
# Fernet keys for secrets at rest (SSH and TLS keys): comma-separated, newest first (MultiFernet rotation).
VIREO_FERNET_KEYS = env.list("VIREO_FERNET_KEYS", default=[]) or [
    _persistent_secret("fernet_key", lambda: Fernet.generate_key().decode())
]
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "channels",
    "apps.core",
    "apps.accounts",
    "apps.audit",
    "apps.hosts",
    "apps.vms",
    "apps.networks",
    "apps.storage",
    "apps.console",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apps.core.permissions.PermissionCacheMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

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
                "apps.core.context_processors.sidebar",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'vireo.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes share the file (daphne, hostd, workers): wait for locks instead of failing, use
    # WAL, and take the write lock when a transaction begins (IMMEDIATE), so that two writers never both
    # hold read locks and fail at once with "database is locked" instead of waiting.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so that the test web server (another process) shares the test database.
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Front-end packages come from npm (package.json), never copied into the repository.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/bootstrap", BASE_DIR / "node_modules/bootstrap/dist"),
    ("vendor/bootstrap-icons", BASE_DIR / "node_modules/bootstrap-icons/font"),
    ("vendor/htmx", BASE_DIR / "node_modules/htmx.org/dist"),
    ("vendor/novnc", BASE_DIR / "node_modules/@novnc/novnc"),
    ("vendor/xterm", BASE_DIR / "node_modules/@xterm/xterm"),
    ("vendor/xterm-addon-fit", BASE_DIR / "node_modules/@xterm/addon-fit"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = {
    "default": {
        # The list-based layer: group membership lives in Redis, so a consumer can join again after a
        # Redis restart (LiveConsumer does). The pub/sub layer was faster in benchmarks/events.py but did
        # not resubscribe after a Redis restart (channels-redis 4.3).
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py >= 8 times reads out after 5 s by default, which would kill the layer's blocking
            # receive (5 s) and with it every idle consumer: read longer than that.
            # After a Redis restart the pool still holds connections to the old server: a command on one
            # fails with ConnectionError once; retrying it (on a new connection) hides the restart.
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 15,
                    "retry_on_error": [RedisConnectionError],
                    "retry": RedisRetry(ExponentialBackoff(cap=1.0, base=0.05), 3),
                }
            ],
            "prefix": env.str("VIREO_CHANNEL_PREFIX", default="vireo"),
            "capacity": 1000,
        },
    }
}

# Seconds between a live socket's checks that it has missed nothing (see LiveConsumer).
VIREO_LIVE_CHECK_SECONDS = 5.0

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
VIREO_RECONCILE_INTERVAL = env.int("VIREO_RECONCILE_INTERVAL", default=60)
# Days the dashboard's feed of inventory changes is kept (the audit trail is kept for ever).
VIREO_CHANGE_RETENTION_DAYS = env.int("VIREO_CHANGE_RETENTION_DAYS", default=30)
VIREO_JOB_RETENTION_DAYS = env.int("VIREO_JOB_RETENTION_DAYS", default=30)
CELERY_BEAT_SCHEDULE = {
    "reconcile-all-hosts": {
        "task": "apps.hosts.tasks.reconcile_all_hosts",
        "schedule": float(VIREO_RECONCILE_INTERVAL),
    },
    "prune-inventory-changes": {"task": "apps.core.tasks.prune_inventory_changes", "schedule": 3600.0},
    "prune-finished-jobs": {"task": "apps.core.tasks.prune_finished_jobs", "schedule": 3600.0},
    # Jobs whose worker died (killed, crashed, machine lost) end failed, and their leftovers are removed.
    "fail-orphaned-jobs": {"task": "apps.core.tasks.fail_orphaned_jobs", "schedule": 60.0},
    # Snapshots taken or removed outside Vireo (virsh, another manager) reach the mirror.
    "sync-snapshots": {"task": "apps.vms.job_tasks.sync_all_snapshots", "schedule": 300.0},
}

# The local libvirt registered as the first host by `make run`.
VIREO_LOCAL_URI = env.str("VIREO_LOCAL_URI", default="qemu:///system")
# Seconds a quick VM action (start, pause, ...) may take inside a web request.
VIREO_ACTION_TIMEOUT = env.float("VIREO_ACTION_TIMEOUT", default=30.0)
# hostd: how long a host lease lasts without renewal, and the reconnect backoff cap.
VIREO_HOSTD_LEASE_SECONDS = env.int("VIREO_HOSTD_LEASE_SECONDS", default=15)
VIREO_HOSTD_MAX_BACKOFF = env.int("VIREO_HOSTD_MAX_BACKOFF", default=30)
VIREO_INTERFACE_POLL_SECONDS = env.float("VIREO_INTERFACE_POLL_SECONDS", default=5.0)
# hostd: seconds between samples of the running VMs' CPU and memory use (the sparklines); 0 turns it off.
VIREO_STATS_SECONDS = env.float("VIREO_STATS_SECONDS", default=10.0)
# Consoles: websockify's public URL (empty: the page's host, port VIREO_CONSOLE_PORT, ws/wss as the page),
# and the seconds a single-use console token lives.
VIREO_CONSOLE_URL = env.str("VIREO_CONSOLE_URL", default="")
VIREO_CONSOLE_PORT = env.int("VIREO_CONSOLE_PORT", default=6080)
VIREO_CONSOLE_TOKEN_TTL = env.int("VIREO_CONSOLE_TOKEN_TTL", default=30)
# Open consoles: the most one user may have open at once (0: no cap), how often the process holding a
# console checks that its user still may (seconds; a logout or a lost permission closes it within that),
# how often it checks the database anyway, and how long a crashed holder's console still counts.
VIREO_CONSOLE_MAX_PER_USER = env.int("VIREO_CONSOLE_MAX_PER_USER", default=10)
VIREO_CONSOLE_CHECK_SECONDS = env.float("VIREO_CONSOLE_CHECK_SECONDS", default=2.0)
VIREO_CONSOLE_RECHECK_SECONDS = env.float("VIREO_CONSOLE_RECHECK_SECONDS", default=30.0)
VIREO_CONSOLE_SESSION_TTL = env.int("VIREO_CONSOLE_SESSION_TTL", default=15)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.PageNumberPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Vireo API",
    "DESCRIPTION": "Manage libvirt hosts, virtual machines, networks and storage. "
    "Authenticate with `Authorization: Token <key>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `state`: each choice set gets its own schema name.
    "ENUM_NAME_OVERRIDES": {
        "HostStateEnum": "apps.hosts.choices.HostState",
        "VmStateEnum": "apps.vms.choices.VmState",
        "JobStateEnum": "apps.core.choices.JobState",
    },
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "SAMEORIGIN"
if env.bool("VIREO_HTTPS", default=False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
