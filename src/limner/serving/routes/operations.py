"""Health, readiness, Prometheus metrics, the browser page and the OpenAPI schema."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from limner.serving.config import ServeConfig
from limner.serving.errors import envelope
from limner.serving.routes.images import MAX_SEED
from limner.serving.state import ServedModel, ServingState, serving_state

router = APIRouter()
State = Annotated[ServingState, Depends(serving_state)]


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: State) -> JSONResponse:
    if not state.ready:
        return envelope(503, "models are still loading or the server is shutting down", code="not_ready", retry_after=1)
    return JSONResponse({"status": "ready", "models": list(state.served)})


@router.get("/metrics")
async def metrics_route(state: State) -> Response:
    for model in state.served.values():
        state.metrics.queue_depth.labels(model.name).set(model.batcher.depth if model.batcher else 0)
        state.metrics.queue_limit.labels(model.name).set(state.config.max_queue_size)
    state.metrics.ready.set(1 if state.ready else 0)
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/openapi.json", include_in_schema=False)
async def openapi_schema(state: State, request: Request) -> JSONResponse:
    if state.schema is None:
        state.schema = schema_with_limits(request.app.openapi(), state.served, state.config)
    return JSONResponse(state.schema)


@router.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse(resources.files("limner.serving").joinpath("static/index.html").read_text())


def schema_with_limits(schema: dict, served: dict[str, ServedModel], config: ServeConfig) -> dict:
    """The OpenAPI schema, stating this server's models and limits: the names each body's `model`
    takes, and the ranges of n, prompt, size, seed and truncation that _validated_job enforces."""
    bodies = schema.get("components", {}).get("schemas", {})
    for body, task in (("ImageGenerationBody", "text-to-image"), ("ChatCompletionBody", "image-to-text")):
        properties = bodies.get(body, {}).get("properties", {})
        names = [name for name, model in served.items() if model.task == task]
        if "model" in properties and names:
            properties["model"] = {"anyOf": [{"type": "string", "enum": names}, {"type": "null"}], "title": "Model"}
    generation = bodies.get("ImageGenerationBody", {}).get("properties", {})
    sizes = sorted({size for model in served.values() if model.task == "text-to-image" for size in model.sizes(config)})
    limits = {
        "prompt": {"type": "string", "minLength": 1, "maxLength": config.max_prompt_chars, "pattern": r"\S"},
        "n": {"type": "integer", "minimum": 1, "maximum": config.max_images_per_request, "default": 1},
        "size": {"anyOf": [{"type": "string", "enum": sizes}, {"type": "null"}]},
        "seed": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": MAX_SEED}, {"type": "null"}]},
        "truncation": {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": 10}, {"type": "null"}]},
    }
    for name, limit in limits.items():
        if name in generation:
            generation[name] = {**limit, "title": generation[name].get("title", name)}
    return schema
