"""Every setting's one documented default.

Precedence, lowest first: this module, then ``CONSOLE_*`` environment variables
(``CONSOLE_JOBS_WORKER_THREADS=16``; values are parsed as JSON when they can be), then
``DATABASE_URL``, then the mapping passed to ``create_app``.
"""

# The database. None: an SQLite file in Flask's instance folder (instance/console.sqlite3).
SQLALCHEMY_DATABASE_URI = None
# Seconds to wait for a database server to accept a connection before the call fails (a 503
# over HTTP, "retry later"), instead of the operating system's minutes. PostgreSQL only.
DATABASE_CONNECT_TIMEOUT = 5
# Seconds a writer waits for SQLite's write lock (held by another process or thread) before the
# call fails as busy (a 503 over HTTP). SQLite only.
SQLITE_BUSY_TIMEOUT = 30.0
# Apply pending migrations when the app starts (a file lock / advisory lock makes concurrent
# starts safe). Set False to run `flask --app console db upgrade` yourself.
AUTO_MIGRATE = True

# The in-process runner (APScheduler + a dispatcher thread). Tests and `flask db …` turn it off.
JOBS_RUN_SCHEDULER = True
# Handler threads per process: how many jobs one process runs at once.
JOBS_WORKER_THREADS = 8
# Seconds between looks for due work when nothing woke the runner earlier. Runners are woken at
# once by work queued anywhere, so this is only a safety net.
JOBS_POLL_INTERVAL = 5.0
# Retry backoff: base · 2^(attempt-1) seconds with jitter, capped at the maximum.
JOBS_RETRY_BASE_SECONDS = 2.0
JOBS_RETRY_MAX_SECONDS = 3600.0
# A claimed job stays owned this long without a heartbeat; then another process recovers it.
JOBS_LEASE_SECONDS = 30.0
# On SIGTERM, running attempts get this long to finish before they are handed back.
JOBS_SHUTDOWN_GRACE_SECONDS = 20.0
# Seconds between tenant_metrics_updates / system_metrics_updates events (while subscribed).
JOBS_METRICS_INTERVAL = 5.0
# Bounded waits: within a tenant, a waiting job competes one priority step higher for every
# this many seconds it has waited (its stored priority is unchanged), so a low job behind a
# steady stream of critical ones starts within 4 steps. 0 turns aging off.
JOBS_PRIORITY_AGING_SECONDS = 60.0
# Attempt logs: each attempt keeps the first this many lines its handler logs (context.logger,
# or any logging call on its thread); past it, one line says how many were not kept. Its
# failure's traceback is kept whatever the cap. 0 keeps no lines but the failure's.
JOBS_ATTEMPT_LOG_LINES = 200
# ... and each line's first this many characters (at least 80).
JOBS_ATTEMPT_LOG_LINE_CHARS = 2000
# Extra handlers to register in every process: "package.module:ClassOrInstance" strings.
JOBS_HANDLERS: list[str] = []

# /metrics lists every tenant with its volumes: it answers a scraper that sends
# `Authorization: Bearer <METRICS_TOKEN>` (when set) and signed-in admins, nobody else.
METRICS_TOKEN = None
# True: /metrics answers anyone (a scraper on a private network with no token to give). Under
# gunicorn the log and admins' dashboard warn while it is on.
METRICS_PUBLIC = False
# The log and admins' dashboard warn about settings unsafe in production (SESSION_COOKIE_SECURE
# off, WEBHOOK_CATCH_ALL or METRICS_PUBLIC on). gunicorn.conf.py turns it on in every worker;
# set it for another production server.
PRODUCTION_WARNINGS = False

# Requests a minute each API token may send (a sliding minute, counted across processes in
# the database), unless the token has a rate of its own; past it, 429 with Retry-After. None:
# no limit. High enough for a busy integration (100 a second), low enough that one runaway
# client cannot take every server thread.
API_RATE_LIMIT = 6000

# Live-update streams (server-sent events): each open page holds one, and with it one server
# thread. A new one past either cap closes the oldest first (of the browser session, or of the
# process), and that page polls every few seconds instead. gunicorn.conf.py lowers the process
# cap to half the worker's threads, so pages and the API always keep the other half.
STREAMS_PER_SESSION = 3
STREAMS_PER_PROCESS = 4

# Sessions and CSRF. None: a random key created once and kept in instance/secret_key.
SECRET_KEY = None
# The session cookie: not readable by scripts, not sent with cross-site requests. Set
# SESSION_COOKIE_SECURE = True when the console is served over HTTPS (it should be).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = False
# Signed-in sessions last this many seconds without a visit (Flask's permanent sessions).
PERMANENT_SESSION_LIFETIME = 12 * 3600
# Sign-in throttling (console/web/auth/throttle.py), per username and per client address, kept
# in the database so it holds across processes: this many failed tries cost nothing; each
# further one blocks that username or address for the first delay, doubled per failure up to
# the maximum (seconds). Failures are forgotten after this long without one.
SIGN_IN_FREE_TRIES = 5
SIGN_IN_FIRST_DELAY_SECONDS = 30.0
SIGN_IN_MAX_DELAY_SECONDS = 15 * 60.0
SIGN_IN_FORGET_SECONDS = 3600.0
# How many proxies in front of the console set X-Forwarded-For and X-Forwarded-Proto
# (Werkzeug's ProxyFix). 0: the client address is the connection's, and those headers are
# ignored, since anyone could send them. Behind one reverse proxy (nginx, a load balancer), 1.
PROXY_FIX = 0
# False: htmx and plotly.js from static/ (works offline). True: pinned CDN copies.
ASSETS_FROM_CDN = False

# The email channel's SMTP server (the names Flask-Mail users know).
MAIL_SERVER = "localhost"
MAIL_PORT = 25
MAIL_USE_TLS = False
MAIL_USE_SSL = False
MAIL_USERNAME = None
MAIL_PASSWORD = None
MAIL_DEFAULT_SENDER = "console@localhost"
# Seconds to wait for the SMTP server (connect and each reply) before the attempt is retried.
MAIL_TIMEOUT_SECONDS = 30.0
# A PEM file of CA certificates to trust for the SMTP server's TLS certificate (STARTTLS or
# SSL), instead of the system's: for a server with a private or self-signed certificate.
MAIL_CA_FILE = None
# Tenants' email templates (subject, body, html) render in separate processes, each render
# bounded: past a bound the job fails for good, naming the setting. CPU seconds a render may use:
TEMPLATE_CPU_SECONDS = 1.0
# Bytes a message's rendered subject, body and html may have together.
TEMPLATE_MAX_OUTPUT_BYTES = 1024 * 1024
# Memory a render may take beyond what its process holds at rest.
TEMPLATE_MEMORY_BYTES = 256 * 1024 * 1024
# Render processes per app process (started when first needed): renders
# beyond this many at once wait for one to be free, within their job's deadline.
TEMPLATE_RENDER_PROCESSES = 2

# The webhook channel. Each request is signed with the tenant's custom_settings["webhookSecret"],
# else with this secret; with neither, webhooks fail (nothing is ever sent unsigned).
WEBHOOK_SIGNING_SECRET = None
# Seconds one webhook request may take in all (name lookup, connect, send, and the answer, of
# which at most 64 KiB are read) before the attempt is retried.
WEBHOOK_TIMEOUT_SECONDS = 10.0
# The webhook catch-all at POST /outbox/webhooks: keeps each webhook whose signature verifies
# (with the tenant's webhookSecret, else WEBHOOK_SIGNING_SECRET) in the outbox, for demos and
# end-to-end tests without the internet. Unsigned requests are refused. False: 404. Off by
# default: in production it would let anyone holding a tenant's webhook secret fill the outbox;
# the demo (README) and the tests turn it on.
WEBHOOK_CATCH_ALL = False
# Where outbound requests to addresses tenants give (webhooks, alert webhooks) may go: public
# addresses only. A host name is resolved once, every address it resolves to must be public,
# and the connection goes to that address. Refused: loopback, private (10/8, 172.16/12,
# 192.168/16, fc00::/7), link-local (169.254/16 — cloud metadata —, fe80::/10), multicast,
# reserved, unspecified and any other non-global address, also inside IPv4-mapped IPv6. Literal
# addresses and localhost are refused at queue time, names that resolve there at send time
# (the job fails without retrying). True lets private addresses through (demos, tests, a
# receiver on your own network).
WEBHOOK_ALLOW_PRIVATE = False
# Host names (or literal addresses) let through even when they are or resolve to a private
# address: a list, or a string with commas. WEBHOOK_DENIED_NETWORKS still applies to them.
WEBHOOK_ALLOWED_HOSTS: list[str] = []
# Extra networks (CIDRs, "203.0.113.0/24") refused even when public, and even with
# WEBHOOK_ALLOW_PRIVATE or WEBHOOK_ALLOWED_HOSTS: a list, or a string with commas.
WEBHOOK_DENIED_NETWORKS: list[str] = []

# Who delivers SMS and push messages: "outbox" (stored in the database and shown by the console,
# never sent) or "package.module:ClassName", a console.handlers.providers.MessageProvider subclass
# called with the app's config (see console/handlers/README.md).
SMS_PROVIDER = "outbox"
PUSH_PROVIDER = "outbox"

# Register the handlers that installed packages declare in the "console.handlers" entry-point
# group (console/handlers/plugins.py).
JOBS_LOAD_PLUGINS = True

# Alerts (console/alerts): rules evaluated by a recurring job of the operations tenant, which
# every runner sets up at start when this is True.
ALERTS_ENABLED = True
# When the evaluation job runs (cron, UTC; a sixth field counts seconds).
ALERTS_EVALUATION_CRON = "* * * * *"
# The reserved tenant the evaluation job and alert notifications run as (created, tier4).
ALERTS_TENANT_ID = "console"
# The operators' channel: email addresses and webhook URLs (a string, commas between several,
# or a list). Tenants' admins are told at their custom_settings "alertEmail"/"alertWebhookUrl".
ALERTS_EMAIL_TO = None
ALERTS_WEBHOOK_URL = None

# Days audit entries (who changed what; sign-ins) are kept: each tenant's daily "Prune finished
# jobs" maintenance job deletes its tenant's older entries, and the operations tenant's
# (ALERTS_TENANT_ID) also those of no tenant (sign-ins, users, tokens).
AUDIT_RETENTION_DAYS = 365

SQLALCHEMY_TRACK_MODIFICATIONS = False

# The largest request body (batch uploads included): larger ones get a 413 with advice.
MAX_CONTENT_LENGTH = 16 * 1024 * 1024
