"""What the routes share: the served models, the server's limits and stores, readiness, and
the two things every route does (pick a model, run a job through its batcher)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from limner.pipelines import GenerationRequest
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.serving.batching import DynamicBatcher, QueueFullError
from limner.serving.config import ServeConfig
from limner.serving.errors import APIError
from limner.serving.image_store import ImageStore
from limner.serving.metrics import ServerMetrics
from limner.serving.rate_limit import RateLimiter

STANDARD_SIZES = ("256x256", "512x512", "1024x1024")


@dataclass
class ServedModel:
    name: str
    pipeline: Any  # TextToImagePipeline or ImageToTextPipeline
    created: int = field(default_factory=lambda: int(time.time()))
    batcher: DynamicBatcher | None = None

    @property
    def task(self) -> str:
        return "image-to-text" if isinstance(self.pipeline, ImageToTextPipeline) else "text-to-image"

    def sizes(self, config: ServeConfig) -> tuple[str, ...]:
        native = f"{self.pipeline.resolution}x{self.pipeline.resolution}"
        return tuple(config.allowed_sizes) or (native, *(s for s in STANDARD_SIZES if s != native))

    def card(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "limner",
                "resolution": self.pipeline.resolution, "task": self.task}


@dataclass
class Job:
    request: GenerationRequest
    size: tuple[int, int]
    model: str


@dataclass
class ServingState:
    served: dict[str, ServedModel]
    config: ServeConfig
    metrics: ServerMetrics
    store: ImageStore
    limiter: RateLimiter
    ready: bool = False
    concept_policy: Any = None  # limner.text.policy.ConceptPolicy when config.denied_concepts are set
    schema: dict | None = None  # the OpenAPI schema with this server's limits, built on first request

    def pick_model(self, name: str | None, task: str | None = None, param: str = "model") -> ServedModel:
        served = self.served
        if name is None:
            fitting = [m for m in served.values() if task is None or m.task == task]
            if not fitting:
                raise APIError(404, f"no {task} model is served here", code="model_not_found", param=param)
            return fitting[0]
        if name not in served:
            raise APIError(404, f"model {name!r} is not served here; GET /v1/models lists the ones that are", code="model_not_found", param=param)
        if task is not None and served[name].task != task:
            raise APIError(400, f"model {name!r} is a {served[name].task} model; this endpoint needs a {task} model", code="wrong_model_type", param=param)
        return served[name]

    async def run_job(self, model: ServedModel, job: Any, size: int) -> Any:
        timeout = self.config.request_timeout_s
        if not self.ready or model.batcher is None:
            raise APIError(503, "the server is not ready", code="not_ready", retry_after=1)
        try:
            return await asyncio.wait_for(model.batcher.submit(job, size), timeout=timeout)
        except QueueFullError:
            raise APIError(503, "the server is at capacity; retry shortly", code="server_overloaded", retry_after=model.batcher.retry_after()) from None
        except asyncio.TimeoutError:
            raise APIError(503, f"the model took longer than {timeout:g}s; retry shortly", code="timeout", retry_after=model.batcher.retry_after()) from None


def serving_state(request: Request) -> ServingState:
    """The FastAPI dependency through which every route reaches the shared state."""
    return request.app.state.serving
