"""Django settings for agentsite, driven by the environment (see `.env.example`).

Embedded defaults: SQLite, the in-memory channel layer, the `builtin` model and
the demo `eras` database. Real deployments set DATABASE_URL, REDIS_URL,
LLM_BASE_URL / LLM_API_KEY / LLM_MODEL and ERAS_DATABASE_URL.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from agentsite import env

BASE_DIR = Path(__file__).resolve().parent.parent
env.load_dotenv(BASE_DIR / ".env")

DEBUG = env.flag("DEBUG", True)
VAR_DIR = Path(env.text("AGENTSITE_VAR_DIR", str(BASE_DIR / "var")))
# The default SQLite files live here; a fresh clone has no such folder yet.
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env.text("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env.items("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

# --- HTTPS -------------------------------------------------------------------
# Outside DEBUG the site is taken to be served over HTTPS, by daphne itself or by a
# TLS-terminating proxy (deploy/nginx.conf): plain HTTP is redirected, cookies are
# sent over TLS only and browsers are told (HSTS) to come back over HTTPS only.
# AGENTSITE_HTTPS=false turns all of it off at once (a DEBUG=false trial on plain
# http://127.0.0.1); each setting below can also be set on its own.
AGENTSITE_HTTPS = env.flag("AGENTSITE_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = env.flag("SECURE_SSL_REDIRECT", AGENTSITE_HTTPS)
SESSION_COOKIE_SECURE = env.flag("SESSION_COOKIE_SECURE", AGENTSITE_HTTPS)
CSRF_COOKIE_SECURE = env.flag("CSRF_COOKIE_SECURE", AGENTSITE_HTTPS)
# HSTS is a promise browsers keep for this long even if the site later drops HTTPS:
# lower it (e.g. 3600) while trying TLS out. SecurityMiddleware sends it on HTTPS only.
SECURE_HSTS_SECONDS = int(env.number("SECURE_HSTS_SECONDS", 31_536_000 if AGENTSITE_HTTPS else 0))
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must be 0 (off) or more.")
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", AGENTSITE_HTTPS)
# Only announces consent: nothing is preloaded until someone submits the domain to the
# browsers' preload list. SECURE_HSTS_PRELOAD=false withholds that consent.
SECURE_HSTS_PRELOAD = env.flag("SECURE_HSTS_PRELOAD", AGENTSITE_HTTPS)
# Behind a proxy that terminates TLS, Django sees plain HTTP: name the header the proxy
# sets to `https` (deploy/nginx.conf: X-Forwarded-Proto) so that the redirect does not
# loop and secure requests are known as such. Only when the proxy always sets or
# overwrites that header: a client could send it otherwise.
_PROXY_SSL_HEADER = env.text("SECURE_PROXY_SSL_HEADER")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https") if _PROXY_SSL_HEADER
    else None)
# A few pages and sockets are all the site is: the browser may load what comes from here
# (scripts and styles only from files, never inline) and open sockets back to it.
# agentsite.middleware sends it on every response.
AGENTSITE_CONTENT_SECURITY_POLICY = env.text(
    "CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "graphs",
    "traces",
    "runtime",  # before channels: its `runworker` is the pipeline worker
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "agentsite.middleware.content_security_policy",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "agentsite.urls"
ASGI_APPLICATION = "agentsite.asgi.application"

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
            ],
        },
    },
]

DATABASE_URL = env.text("DATABASE_URL", f"sqlite:///{VAR_DIR / 'agentsite.sqlite3'}")
# Connections are kept (each database thread keeps its own, runtime.conversations.dbcalls)
# and checked before reuse, so a message does not open one per query.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600,
                                              conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Messages are answered concurrently, each from its own thread and connection. SQLite
    # lets one writer at a time: in WAL mode readers never wait for it, IMMEDIATE makes a
    # transaction take the write lock when it begins (a deferred one that reads first and
    # then writes fails at once with "database is locked", never waiting), and the busy
    # timeout makes a writer wait its turn. synchronous=NORMAL is safe in WAL mode (a power
    # cut may lose the last commits, never corrupt the file) and fsyncs far less.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    })
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.text("REDIS_URL")
# A message no pipeline worker has taken after this long is stored as failed; it is also the
# channel layer's message expiry.
AGENTSITE_QUEUE_TIMEOUT_S = env.number("AGENTSITE_QUEUE_TIMEOUT_S", 60.0)
if AGENTSITE_QUEUE_TIMEOUT_S < 1:
    raise ImproperlyConfigured("AGENTSITE_QUEUE_TIMEOUT_S must be at least 1 (seconds)")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, which races the
                # layer's own blocking 5 s BZPOPMIN and fails idle consumers with "Timeout
                # reading from ..." (django/channels_redis#422): the layer times itself.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                # Room for a burst of streamed deltas; a socket that still falls behind
                # fills the gap from the conversation's event log (runtime.realtime.consumers).
                "capacity": 1000,
                "expiry": int(AGENTSITE_QUEUE_TIMEOUT_S),
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Production serves cache-busted names (chat.3f2a91c.js) from STATIC_ROOT, so a
# deploy never leaves a browser on a stale script. The manifest storage needs
# `collectstatic` (`make setup` runs it) and raises for any file missing from
# the manifest, so DEBUG and the tests keep the plain storage, which serves the
# files as they are from static/ (nginx.conf sends no-cache for them then).
# STATIC_MANIFEST=true forces the manifest storage, e.g. to try a production build.
STATIC_MANIFEST = env.flag("STATIC_MANIFEST", not DEBUG)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": (
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage" if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage")},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "agentsite": {"handlers": ["console"], "level": env.text("LOG_LEVEL", "INFO")},
        "runtime": {"handlers": ["console"], "level": env.text("LOG_LEVEL", "INFO")},
    },
}

# --- the agent -------------------------------------------------------------

# LLM: `builtin` is the deterministic, rule-based offline model (the default);
# `openai` speaks to any OpenAI-compatible endpoint at LLM_BASE_URL.
LLM_BASE_URL = env.text("LLM_BASE_URL")
LLM_PROVIDER = env.text("LLM_PROVIDER", "openai" if LLM_BASE_URL else "builtin")
LLM_API_KEY = env.text("LLM_API_KEY")
LLM_MODEL = env.text("LLM_MODEL", "builtin" if LLM_PROVIDER == "builtin" else "gpt-4o-mini")
LLM_TIMEOUT = env.number("LLM_TIMEOUT", 60.0)
LLM_CONNECT_TIMEOUT = env.number("LLM_CONNECT_TIMEOUT", 10.0)
LLM_MAX_RETRIES = int(env.number("LLM_MAX_RETRIES", 3))
LLM_RETRY_BACKOFF = env.number("LLM_RETRY_BACKOFF", 0.5)
# What the endpoint understands beyond plain chat: how structured answers are asked for
# (`json_schema` strict structured output, `json_object` JSON mode, `off` plain text; the
# schema is always checked here) and whether native tool calls are sent. Per model:
# LLM_MODEL_CAPABILITIES='{"my-model": {"structured": "json_object", "tools": false}}'.
LLM_STRUCTURED_OUTPUT = env.text("LLM_STRUCTURED_OUTPUT", "json_schema")
LLM_NATIVE_TOOLS = env.flag("LLM_NATIVE_TOOLS", True)
try:
    LLM_MODEL_CAPABILITIES = json.loads(env.text("LLM_MODEL_CAPABILITIES") or "{}")
except ValueError as exc:
    raise ImproperlyConfigured(f"LLM_MODEL_CAPABILITIES is not JSON: {exc}") from None
if LLM_STRUCTURED_OUTPUT not in {"json_schema", "json_object", "off"}:
    raise ImproperlyConfigured("LLM_STRUCTURED_OUTPUT must be json_schema, json_object or off, "
                               f"got {LLM_STRUCTURED_OUTPUT!r}")
if not isinstance(LLM_MODEL_CAPABILITIES, dict) or not all(
        isinstance(v, dict) and set(v) <= {"structured", "tools"}
        and v.get("structured", "json_schema") in {"json_schema", "json_object", "off"}
        for v in LLM_MODEL_CAPABILITIES.values()):
    raise ImproperlyConfigured('LLM_MODEL_CAPABILITIES must map model names to '
                               '{"structured": "json_schema|json_object|off", "tools": true|false}')
# What a model costs, in USD per million tokens, for the traces (each call, frame, message;
# the admin sums them per day, conversation and user):
# AGENTSITE_LLM_PRICES='{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}}'. The prices
# are the builder's to set: a model not in the table (the builtin one) costs 0.
try:
    AGENTSITE_LLM_PRICES = json.loads(env.text("AGENTSITE_LLM_PRICES") or "{}")
except ValueError as exc:
    raise ImproperlyConfigured(f"AGENTSITE_LLM_PRICES is not JSON: {exc}") from None
if not isinstance(AGENTSITE_LLM_PRICES, dict):
    raise ImproperlyConfigured('AGENTSITE_LLM_PRICES must be a JSON object: '
                               '{"<model>": {"prompt": USD, "completion": USD}}')
for _model, _price in AGENTSITE_LLM_PRICES.items():
    if not (isinstance(_price, dict) and set(_price) == {"prompt", "completion"} and all(
            isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p)
            and p >= 0 for p in _price.values())):
        raise ImproperlyConfigured(
            f'AGENTSITE_LLM_PRICES[{_model!r}] must be {{"prompt": USD, "completion": USD}} '
            f"per million tokens, both numbers of 0 or more; got {_price!r}")
# Seconds one message may take, every model call and retry included; past it nodes take
# their fallbacks and the user gets a clear answer.
AGENTSITE_MESSAGE_DEADLINE_S = env.number("AGENTSITE_MESSAGE_DEADLINE_S", 60.0)
if AGENTSITE_MESSAGE_DEADLINE_S <= 0:
    raise ImproperlyConfigured("AGENTSITE_MESSAGE_DEADLINE_S must be positive.")
# Milliseconds the builtin model waits per call, to imitate a real model's latency.
BUILTIN_LLM_LATENCY_MS = env.number("BUILTIN_LLM_LATENCY_MS", 0.0)
if LLM_PROVIDER not in {"builtin", "openai"}:
    raise ImproperlyConfigured(f"LLM_PROVIDER must be 'builtin' or 'openai', got {LLM_PROVIDER!r}")
if LLM_PROVIDER == "openai" and not LLM_BASE_URL:
    raise ImproperlyConfigured("LLM_PROVIDER=openai needs LLM_BASE_URL.")

AGENTSITE_LLM_PROVIDERS = {
    "builtin": "runtime.agent.builtin.BuiltinProvider",
    "openai": "runtime.llm.openai.OpenAIProvider",
}

AGENTSITE_NODE_TYPES = {
    "input": "runtime.agent.nodes.input.InputNode",
    "director": "runtime.agent.nodes.director.DirectorNode",
    "thinker": "runtime.agent.nodes.thinker.ThinkerNode",
    "interpreter": "runtime.agent.nodes.interpreter.InterpreterNode",
    "memorizer": "runtime.agent.nodes.memorizer.MemorizerNode",
    "ui": "runtime.agent.nodes.ui.UINode",
    "output": "runtime.agent.nodes.output.OutputNode",
    "pa": "runtime.agent.nodes.pa.PANode",
    "eras_expert": "runtime.agent.experts.eras.ErasExpert",
}

# The graph a new conversation starts on.
AGENTSITE_DEFAULT_GRAPH = env.text("AGENTSITE_DEFAULT_GRAPH", "v3-framed")
# A message whose graph runs more frames than this is stopped with an error.
AGENTSITE_FRAME_LIMIT = int(env.number("AGENTSITE_FRAME_LIMIT", 12))
# A message's budget (runtime.engine.budget): at most this many model calls, and tokens
# (prompt + completion) spent before a call; 0 means no limit. A message over it is
# stopped with a clear answer naming the limit; its trace says which one.
AGENTSITE_MESSAGE_MAX_LLM_CALLS = int(env.number("AGENTSITE_MESSAGE_MAX_LLM_CALLS", 40))
# Candidate queries a planner writes for one data question (runtime.agent.linking): each is
# run, and the result most of them agree on is answered. 1 for a capable model; the local
# small model's lane uses 3 (a node's config `candidates` overrides it; 1 to 5).
AGENTSITE_QUERY_CANDIDATES = int(env.number("AGENTSITE_QUERY_CANDIDATES", 1))
if not 1 <= AGENTSITE_QUERY_CANDIDATES <= 5:
    raise ImproperlyConfigured("AGENTSITE_QUERY_CANDIDATES must be from 1 to 5.")
AGENTSITE_MESSAGE_MAX_TOKENS = int(env.number("AGENTSITE_MESSAGE_MAX_TOKENS", 0))
# Each user's quotas (runtime.conversations.quotas), across all their chats and processes
# (an anonymous visitor's session counts as a user): messages admitted per minute,
# messages being answered at once, and tokens of their stored traces per UTC day; 0 means
# no limit. The admin's user quotas override them per user. With all three 0 quotas are
# off: a message costs no database call for them, and the overrides are not read.
AGENTSITE_USER_MESSAGES_PER_MINUTE = int(env.number("AGENTSITE_USER_MESSAGES_PER_MINUTE", 30))
AGENTSITE_USER_CONCURRENT_MESSAGES = int(env.number("AGENTSITE_USER_CONCURRENT_MESSAGES", 4))
AGENTSITE_USER_TOKENS_PER_DAY = int(env.number("AGENTSITE_USER_TOKENS_PER_DAY", 0))
for _name in ("AGENTSITE_MESSAGE_MAX_LLM_CALLS", "AGENTSITE_MESSAGE_MAX_TOKENS",
              "AGENTSITE_USER_MESSAGES_PER_MINUTE", "AGENTSITE_USER_CONCURRENT_MESSAGES",
              "AGENTSITE_USER_TOKENS_PER_DAY"):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (no limit) or more.")
# A running message's process beats every fifth of this; silent this long, it is presumed
# dead and the message is stored as failed (the user can send again).
# Threads per process that run database calls from the event loop (PostgreSQL; SQLite
# keeps one): runtime.conversations.dbcalls. On 2 cores with PostgreSQL on loopback the
# work is Python under one GIL, so 2 did as well as 1 and 8 worse (README); more pay off
# when the database is on another machine and each round trip is a wait.
AGENTSITE_DB_THREADS = int(env.number("AGENTSITE_DB_THREADS", 2))
if AGENTSITE_DB_THREADS < 1:
    raise ImproperlyConfigured("AGENTSITE_DB_THREADS must be at least 1")
AGENTSITE_BUSY_TIMEOUT_S = env.number("AGENTSITE_BUSY_TIMEOUT_S", 15.0)
if AGENTSITE_BUSY_TIMEOUT_S <= 0:
    raise ImproperlyConfigured("AGENTSITE_BUSY_TIMEOUT_S must be more than 0 (seconds)")
# Where pipelines run: in `manage.py runworker pipeline` processes (on with REDIS_URL) or in
# the web process that received the message.
AGENTSITE_PIPELINE_WORKERS = env.flag("AGENTSITE_PIPELINE_WORKERS", bool(REDIS_URL))
# How many messages one worker process answers at once (it takes no more from the queue).
AGENTSITE_WORKER_CONCURRENCY = int(env.number("AGENTSITE_WORKER_CONCURRENCY", 20))
# How many past messages the input node summarises as context.
AGENTSITE_HISTORY_WINDOW = int(env.number("AGENTSITE_HISTORY_WINDOW", 12))
# Retention (`manage.py prune`, and every pipeline worker each AGENTSITE_RETENTION_INTERVAL_S):
# traces and stored chat events older than this many days are deleted...
AGENTSITE_TRACE_RETENTION_DAYS = env.number("AGENTSITE_TRACE_RETENTION_DAYS", 30.0)
# ... and conversations nobody touched for this many days, with their messages.
AGENTSITE_CONVERSATION_RETENTION_DAYS = env.number("AGENTSITE_CONVERSATION_RETENTION_DAYS", 90.0)
if AGENTSITE_TRACE_RETENTION_DAYS <= 0:
    raise ImproperlyConfigured("AGENTSITE_TRACE_RETENTION_DAYS must be more than 0 (days).")
if AGENTSITE_CONVERSATION_RETENTION_DAYS <= 0:
    raise ImproperlyConfigured("AGENTSITE_CONVERSATION_RETENTION_DAYS must be more than 0 (days).")
# Seconds between a pipeline worker's retention passes; 0: none (run `manage.py prune`
# from cron instead).
AGENTSITE_RETENTION_INTERVAL_S = env.number("AGENTSITE_RETENTION_INTERVAL_S", 3600.0)
if AGENTSITE_RETENTION_INTERVAL_S < 0:
    raise ImproperlyConfigured("AGENTSITE_RETENTION_INTERVAL_S must be 0 (off) or more.")

# Anonymous visitors may chat (keyed by their session) only when this is on.
AGENTSITE_ALLOW_ANONYMOUS = env.flag("AGENTSITE_ALLOW_ANONYMOUS", DEBUG)
# A message still running after this long is stopped (its partial trace is kept).
AGENTSITE_PIPELINE_TIMEOUT_S = env.number("AGENTSITE_PIPELINE_TIMEOUT_S", 300.0)
# How long a tool call that waits for a person's approval (graph config `approval`) waits:
# then it is declined and the message answered without it.
AGENTSITE_APPROVAL_TIMEOUT_S = env.number("AGENTSITE_APPROVAL_TIMEOUT_S", 600.0)
if AGENTSITE_APPROVAL_TIMEOUT_S <= 0:
    raise ImproperlyConfigured("AGENTSITE_APPROVAL_TIMEOUT_S must be more than 0 (seconds).")
# How often a chat socket checks that its session is still signed in.
AGENTSITE_SESSION_CHECK_S = env.number("AGENTSITE_SESSION_CHECK_S", 30.0)

# The demo domain database: a generated SQLite file unless ERAS_DATABASE_URL is set.
ERAS_DATABASE_URL = env.text("ERAS_DATABASE_URL", f"sqlite:///{VAR_DIR / 'eras.sqlite3'}")
ERAS_ROW_LIMIT = int(env.number("ERAS_ROW_LIMIT", 200))
ERAS_TIME_LIMIT_S = env.number("ERAS_TIME_LIMIT_S", 5.0)
# No value a query builds may be longer than this (SQLite); a result's rows stop when their
# values reach ERAS_RESULT_LIMIT_BYTES (both databases; the result says it was cut).
ERAS_VALUE_LIMIT_BYTES = int(env.number("ERAS_VALUE_LIMIT_BYTES", 1_000_000))
ERAS_RESULT_LIMIT_BYTES = int(env.number("ERAS_RESULT_LIMIT_BYTES", 2_000_000))
if min(ERAS_VALUE_LIMIT_BYTES, ERAS_RESULT_LIMIT_BYTES) < 1000:
    raise ImproperlyConfigured("ERAS_VALUE_LIMIT_BYTES and ERAS_RESULT_LIMIT_BYTES must be at "
                               "least 1000")

# --- Auth --------------------------------------------------------------------

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "runtime.api.oidc.SubjectOIDCBackend",  # does nothing unless OIDC is configured
]
# The sign-in page (agentsite.views.SignInView: password, and OIDC when configured);
# the admin keeps its own staff-only login.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# OIDC (any OpenID Connect provider): on when the discovery URL and client id are set.
OIDC_DISCOVERY_URL = env.text("OIDC_DISCOVERY_URL")
OIDC_RP_CLIENT_ID = env.text("OIDC_RP_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env.text("OIDC_RP_CLIENT_SECRET")
# Explicit endpoints override what discovery says (all four, or none).
OIDC_OP_AUTHORIZATION_ENDPOINT = env.text("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env.text("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env.text("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env.text("OIDC_OP_JWKS_ENDPOINT")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_PKCE = True
OIDC_ALLOW_UNSECURED_JWT = False
OIDC_RP_SCOPES = env.text("OIDC_RP_SCOPES", "openid email profile")
OIDC_TIMEOUT = env.number("OIDC_TIMEOUT", 10.0)
# The provider's name on the sign-in page's "Sign in with …" link.
OIDC_PROVIDER_NAME = env.text("OIDC_PROVIDER_NAME", "single sign-on")
# Where a failed OIDC login lands: the sign-in page, which says so.
LOGIN_REDIRECT_URL_FAILURE = "/login/?oidc=failed"
