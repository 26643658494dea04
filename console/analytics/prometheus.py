"""Prometheus metrics read from the database at scrape time.

Every figure comes from the shared database (live job counts and ``job_totals``, a few hundred
rows kept by every writer), so any process of a gunicorn pool, or any machine, answers a scrape
with the same numbers: no per-process counters to merge, no multiprocess directory. Counters
are totals since the first job (pruning leaves them alone), so they only grow.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import Engine, func, select

from ..jobs.models import rejections_table, totals_table
from ..jobs.rollups import NO_DURATION, bucket_bounds
from ..jobs.runners import LIVE_RUNNER_SILENCE_SECONDS, count_live
from ..jobs.usage import live_job_counts

# Histogram bounds in seconds; each fine duration bucket is counted under the first bound at or
# above its upper edge, so a reported "≤ le" never undercounts.
LE_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
              900.0, 3600.0)


class DatabaseCollector:
    def __init__(self, engine: Engine):
        self._engine = engine

    def collect(self):
        t = totals_table.c
        with self._engine.connect() as conn:
            depth = live_job_counts(conn)
            by_handler = conn.execute(select(
                t.handler, t.job_type, t.duration_bucket, t.attempts, t.attempts_failed,
                t.attempts_timed_out, t.duration_ms_sum, t.jobs_created)).all()
            rejections = conn.execute(select(
                rejections_table.c.tenant_id, rejections_table.c.limit_type,
                func.sum(rejections_table.c.count))
                .group_by(rejections_table.c.tenant_id, rejections_table.c.limit_type)).all()
            runners = count_live(conn, datetime.now(timezone.utc), LIVE_RUNNER_SILENCE_SECONDS)

        queue = GaugeMetricFamily("console_jobs", "Jobs waiting or running now",
                                  labels=["tenant", "status"])
        for (tenant, status), count in depth.items():
            queue.add_metric([tenant, status], count)
        yield queue

        attempts = CounterMetricFamily("console_job_attempts", "Attempts finished",
                                       labels=["handler", "type"])
        failures = CounterMetricFamily("console_job_attempt_failures", "Attempts that failed",
                                       labels=["handler", "type"])
        timeouts = CounterMetricFamily("console_job_attempt_timeouts",
                                       "Attempts failed for passing max_job_duration",
                                       labels=["handler", "type"])
        created = CounterMetricFamily("console_jobs_created", "Jobs queued",
                                      labels=["handler", "type"])
        totals = defaultdict(lambda: [0, 0, 0, 0])
        histograms: dict[tuple, dict] = defaultdict(lambda: {"buckets": [0] * len(LE_SECONDS),
                                                             "inf": 0, "sum": 0.0})
        for handler, job_type, bucket, n, failed, timed_out, duration, new in by_handler:
            total = totals[(handler, job_type)]
            total[0] += n or 0
            total[1] += failed or 0
            total[2] += timed_out or 0
            total[3] += new or 0
            if bucket == NO_DURATION or not n:
                continue
            histogram = histograms[(handler, job_type)]
            histogram["sum"] += (duration or 0.0) / 1000.0
            high = bucket_bounds(bucket)[1] / 1000.0
            for index, le in enumerate(LE_SECONDS):
                if high <= le:
                    histogram["buckets"][index] += n
                    break
            else:
                histogram["inf"] += n
        for (handler, job_type), (n, failed, timed_out, new) in sorted(totals.items()):
            attempts.add_metric([handler, job_type], n)
            failures.add_metric([handler, job_type], failed)
            timeouts.add_metric([handler, job_type], timed_out)
            created.add_metric([handler, job_type], new)
        yield attempts
        yield failures
        yield timeouts
        yield created

        durations = HistogramMetricFamily("console_job_attempt_duration_seconds",
                                          "How long attempts ran", labels=["handler", "type"])
        for (handler, job_type), histogram in sorted(histograms.items()):
            cumulative, buckets = 0, []
            for le, count in zip(LE_SECONDS, histogram["buckets"], strict=True):
                cumulative += count
                buckets.append((repr(le), cumulative))
            buckets.append(("+Inf", cumulative + histogram["inf"]))
            durations.add_metric([handler, job_type], buckets, histogram["sum"])
        yield durations

        refused = CounterMetricFamily(
            "console_limit_rejections", "Work refused by a tenant limit (for max_concurrent_jobs "
            "and rate_limit, which never refuse: claims that held the tenant's due work back)",
            labels=["tenant", "limit_type"])
        for tenant, limit_type, count in rejections:
            refused.add_metric([tenant, limit_type], count)
        yield refused

        yield GaugeMetricFamily("console_runners", "Runners beating now",
                                value=runners)


def render_metrics(engine: Engine) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(engine))
    return generate_latest(registry)
