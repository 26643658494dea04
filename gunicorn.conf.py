"""gunicorn settings for the console: ``gunicorn wsgi:app`` reads this file from the working folder.

Every gunicorn worker is a whole console: it serves pages and the API on its threads and runs
its own job runner (APScheduler dispatcher + a pool of ``JOBS_WORKER_THREADS`` handler threads).
The database coordinates them, so adding workers — or ``flask --app console worker`` processes on
other machines — adds capacity without any other set-up. Command-line flags win over this file
(``gunicorn -w 4 --threads 16 wsgi:app``); the environment variables below are read here.
"""
import os

# Where to listen. Behind a reverse proxy keep the loopback; `-b 0.0.0.0:8000` to expose it.
bind = os.environ.get("CONSOLE_BIND", "127.0.0.1:8000")

# Processes. On SQLite, 2–4 (one machine, one file: more processes only queue for its write lock);
# on PostgreSQL, about one per core, plus `flask worker` processes wherever there is room.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# Threads per process serve requests. An open console page holds one thread for its live event
# stream, so size threads for the pages you expect open at once plus API traffic.
worker_class = "gthread"
threads = int(os.environ.get("CONSOLE_WEB_THREADS", "8"))

# A worker whose main loop is stuck this long is restarted (handlers run on the runner's own
# threads, so a slow job never trips it).
timeout = 30

# On SIGTERM a worker stops taking requests, closes its event streams, and its runner lets running
# attempts finish for JOBS_SHUTDOWN_GRACE_SECONDS before handing the rest back to the queue.
# gunicorn must wait longer than that before it kills the worker, or those attempts would only come
# back when their lease expires.
_job_grace = float(os.environ.get("CONSOLE_JOBS_SHUTDOWN_GRACE_SECONDS", "20"))
graceful_timeout = int(_job_grace) + 10

keepalive = 5

# Each worker builds the app after the fork: the runner's threads and the database connections must
# belong to the process that uses them (threads do not survive a fork).
preload_app = False

# gunicorn's worker heartbeat file; on tmpfs so a busy disk never makes a worker look dead.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

errorlog = "-"
accesslog = os.environ.get("CONSOLE_ACCESS_LOG") or None   # e.g. "-" for stdout


def worker_exit(server, worker):
    """Stop this worker's runner before the process ends: attempts still running after the grace
    are handed back to the queue at once instead of waiting for their lease to expire."""
    app = getattr(worker, "wsgi", None)
    runner = getattr(app, "extensions", {}).get("jobs_runner") if app is not None else None
    if runner is not None:
        runner.stop()


def post_worker_init(worker):
    """Once the app is loaded: tell it that it serves production, then move everything it
    allocated (modules, the app, SQLAlchemy's tables and compiled statements, templates) out of
    the garbage collector's sight. A full collection walks every tracked object with every
    thread stopped, and over the app's few hundred thousand start-up objects those stalls were
    the worst latencies under API load. They are never freed anyway."""
    import gc

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "config"):
        serving_production(app, worker)
    gc.collect()
    gc.freeze()


def serving_production(app, worker):
    """Warn in the log (and on admins' dashboards) about settings unsafe in production, and
    bound the event streams by this worker's threads."""
    from console.web.production import production_warnings

    app.config["PRODUCTION_WARNINGS"] = True
    # Event streams hold a thread each: leave at least half of them to pages and the API.
    app.config["STREAMS_PER_PROCESS"] = max(1, min(int(app.config["STREAMS_PER_PROCESS"]),
                                                   worker.cfg.threads // 2))
    for warning in production_warnings(app.config):
        worker.log.warning("worker %s: %s", worker.pid, warning)
