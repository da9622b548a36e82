"""Prometheus metrics, on a registry of the app's own (two apps in one process never mix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("limner_requests", "Requests answered, by endpoint and status", ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("limner_request_seconds", "Time to answer, by endpoint", ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_images = Histogram("limner_batch_images", "Images per generator call", buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("limner_queue_depth", "Requests waiting for the generator", ["model"], registry=self.registry)
        self.queue_limit = Gauge("limner_queue_limit", "Requests that may wait before the server answers 503", ["model"], registry=self.registry)
        self.ready = Gauge("limner_ready", "1 while the server takes requests, 0 while loading or shutting down", registry=self.registry)
        self.images = Counter("limner_images_generated", "Images generated", ["model"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
