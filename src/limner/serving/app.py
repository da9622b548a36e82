"""The limner HTTP server: the OpenAI Images API (and chat, for captioners) over limner models.

    app = create_app({"shapes": TextToImagePipeline.from_pretrained("outputs/shapes")}, ServeConfig())
    uvicorn.run(app)

Every error leaves in the OpenAI envelope with the right status; nothing a client
sends should produce a 500.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import re
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any, Literal, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from pydantic import AfterValidator, BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from limner.errors import ConfigError
from limner.pipelines import GenerationRequest, TextToImagePipeline
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.serving.auth import Authenticator
from limner.serving.batching import DynamicBatcher, QueueFullError
from limner.serving.config import ServeConfig, parse_size
from limner.serving.errors import APIError, envelope, error_response
from limner.serving.guard import BodyTooLarge, BodyTooSlow, RequestGuard
from limner.serving.image_store import ImageStore
from limner.serving.keys import KeyStore
from limner.serving.metrics import ServerMetrics
from limner.serving.rate_limit import RateLimiter
from limner.utils.images import to_pil

log = logging.getLogger("limner.serve")
MAX_SEED = 2**63 - 1
STANDARD_SIZES = ("256x256", "512x512", "1024x1024")


def _encodable(value: str) -> str:
    """JSON may carry lone UTF-16 surrogates ("\\ud800") that no UTF-8 output can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_encodable)]


class ImageGenerationBody(BaseModel):
    """OpenAI's fields, then limner's extensions; unknown fields (quality, style) are ignored."""

    model_config = ConfigDict(extra="ignore", protected_namespaces=())
    prompt: Text
    model: Text | None = None
    n: int = 1
    size: Text | None = None
    response_format: Literal["b64_json", "url"] | None = None
    user: Text | None = None
    seed: int | None = None
    truncation: float | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Text
    content: Text | list[dict[str, Any]] | None = None


class ChatCompletionBody(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())
    messages: list[ChatMessage]
    model: Text | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    user: Text | None = None


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


@dataclass
class _Job:
    request: GenerationRequest
    size: tuple[int, int]
    model: str


def create_app(models: dict[str, TextToImagePipeline], config: ServeConfig | None = None, *, keys: KeyStore | None = None) -> FastAPI:
    config = config or ServeConfig()
    if not models:
        raise ConfigError("serve needs at least one model")
    if keys is None and config.api_keys_file:
        keys = KeyStore(config.api_keys_file)
    if keys is None and not config.loopback_only:
        raise ConfigError(f"listening on {config.host} (beyond loopback) needs API keys: pass --api-keys FILE (create one with `limner keys create`)")
    for name, pipe in models.items():
        if not isinstance(pipe, (TextToImagePipeline, ImageToTextPipeline)) and not hasattr(pipe, "generate_batch"):
            raise ConfigError(f"model {name!r} is a {type(pipe).__name__}; serve takes text-to-image generators and captioners")
    served = {name: ServedModel(name, pipe) for name, pipe in models.items()}
    metrics = ServerMetrics()
    store = ImageStore(config.stored_images, config.stored_image_ttl_s)
    limiter = RateLimiter(config.rate_limit_per_minute, config.rate_limit_burst)
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for model in served.values():
            runner = _caption_runner(model) if model.task == "image-to-text" else _batch_runner(model, metrics)
            model.batcher = DynamicBatcher(
                runner, max_batch_size=config.max_batch_size, wait_timeout_s=config.batch_wait_timeout_s,
                max_queue_size=config.max_queue_size, batching=config.batching,
                on_batch=metrics.batch_images.observe,
            )
            model.batcher.start()
        state["ready"] = True
        log.info("serving %s", ", ".join(served))
        yield
        state["ready"] = False
        await asyncio.gather(*(m.batcher.stop() for m in served.values() if m.batcher))

    app = FastAPI(title="limner", version="1", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.served = served
    app.state.metrics = metrics
    app.state.config = config

    # ---- errors: always the envelope -------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return error_response(err)

    def _body_problem(err: BaseException | None) -> JSONResponse | None:
        """What went wrong while the body was read (FastAPI wraps it in a 400), said plainly."""
        if isinstance(err, BodyTooLarge):
            return envelope(413, f"request body is larger than the limit of {config.max_body_bytes} bytes", code="request_too_large")
        if isinstance(err, BodyTooSlow):
            response = envelope(408, f"the request body did not arrive within {config.body_timeout_s:g}s", code="request_timeout")
            response.headers["connection"] = "close"
            return response
        if isinstance(err, RecursionError):
            return envelope(400, "request body is JSON nested too deeply", code="invalid_json")
        if isinstance(err, ValueError):  # e.g. a number of more digits than Python converts
            return envelope(400, f"request body is not valid JSON: {str(err)[:200]}", code="invalid_json")
        return None

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, err: BodyTooLarge) -> JSONResponse:
        return _body_problem(err)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problem = err.errors()[0] if err.errors() else {}
        location = [str(part) for part in problem.get("loc", ()) if part != "body"]
        param = ".".join(location) or None
        if problem.get("type") == "json_invalid":
            return envelope(400, "request body is not valid JSON", code="invalid_json")
        message = f"{param}: {problem.get('msg', 'invalid value')}" if param else str(problem.get("msg", "invalid request body"))
        return envelope(400, message, param=param, code="invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        body_problem = _body_problem(err.__cause__)
        if body_problem is not None:
            return body_problem
        message = "no such route" if err.status_code == 404 else str(err.detail)
        return envelope(err.status_code, message, code="unknown_url" if err.status_code == 404 else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return envelope(500, "internal error; the server log has the details", code="internal_error")

    # ---- models ------------------------------------------------------------------------
    def pick_model(name: str | None, task: str | None = None, param: str = "model") -> ServedModel:
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

    async def run_job(model: ServedModel, job: Any, size: int) -> Any:
        if not state["ready"] or model.batcher is None:
            raise APIError(503, "the server is not ready", code="not_ready", retry_after=1)
        try:
            return await asyncio.wait_for(model.batcher.submit(job, size), timeout=config.request_timeout_s)
        except QueueFullError:
            raise APIError(503, "the server is at capacity; retry shortly", code="server_overloaded", retry_after=model.batcher.retry_after()) from None
        except asyncio.TimeoutError:
            raise APIError(503, f"the model took longer than {config.request_timeout_s:g}s; retry shortly", code="timeout", retry_after=model.batcher.retry_after()) from None

    # ---- routes -----------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if not state["ready"]:
            return envelope(503, "models are still loading or the server is shutting down", code="not_ready", retry_after=1)
        return JSONResponse({"status": "ready", "models": list(served)})

    @app.get("/metrics")
    async def metrics_route() -> Response:
        for model in served.values():
            metrics.queue_depth.labels(model.name).set(model.batcher.depth if model.batcher else 0)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [_model_card(m) for m in served.values()]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> dict:
        return _model_card(pick_model(model_id, param="model_id"))

    @app.post("/v1/images/generations")
    async def generate(body: ImageGenerationBody, request: Request) -> dict:
        model = pick_model(body.model, "text-to-image")
        job = _validated_job(body, model, config)
        pngs = await run_job(model, job, job.request.num_images)
        fmt = body.response_format or "b64_json"
        if fmt == "url":
            base = str(request.base_url).rstrip("/")
            data = [{"url": f"{base}/v1/images/files/{store.put(png)}.png"} for png in pngs]
        else:
            data = [{"b64_json": base64.b64encode(png).decode("ascii")} for png in pngs]
        return {"created": int(time.time()), "data": data}

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionBody) -> dict:
        model = pick_model(body.model, "image-to-text")
        image, prompt_text = _image_from_messages(body.messages, config)
        limit = body.max_completion_tokens or body.max_tokens
        if limit is not None and limit < 1:
            raise APIError(400, "max_tokens must be at least 1", param="max_tokens", code="invalid_value")
        text = await run_job(model, (image, limit), 1)
        tokenizer = model.pipeline.vocabulary.tokenizer
        prompt_tokens = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"]) + 16  # + the image's 4x4 grid
        completion_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()), "model": model.name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
        }

    @app.get("/v1/images/files/{image_name}")
    async def stored_image(image_name: str) -> Response:
        png = store.get(image_name.removesuffix(".png"))
        if png is None:
            raise APIError(404, "no such image (image links expire)", code="image_not_found")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_schema() -> JSONResponse:
        if "schema" not in state:
            state["schema"] = _schema_with_limits(app.openapi(), served, config)
        return JSONResponse(state["schema"])

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("limner.serving").joinpath("static/index.html").read_text())

    app.add_middleware(Authenticator, keys=keys, limiter=limiter, per_minute=config.rate_limit_per_minute)
    app.add_middleware(RequestGuard, max_body_bytes=config.max_body_bytes, body_timeout_s=config.body_timeout_s, metrics=metrics)
    return app


def _schema_with_limits(schema: dict, served: dict[str, ServedModel], config: ServeConfig) -> dict:
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


def _model_card(model: ServedModel) -> dict:
    return {"id": model.name, "object": "model", "created": model.created, "owned_by": "limner",
            "resolution": model.pipeline.resolution, "task": model.task}


DATA_URL = re.compile(r"data:image/[a-zA-Z0-9.+-]+;base64,(.*)", re.DOTALL)


def _image_from_messages(messages: list[ChatMessage], config: ServeConfig) -> tuple[Image.Image, str]:
    """The last image a user message carries (a base64 data URL), decoded and checked, and the text beside it."""
    for message in reversed(messages):
        if message.role != "user" or not isinstance(message.content, list):
            continue
        parts = message.content
        texts = [str(p.get("text", "")) for p in parts if p.get("type") == "text"]
        try:
            [_encodable(text) for text in texts]
        except ValueError as err:
            raise APIError(400, f"messages: a text part {err}", param="messages", code="invalid_value") from None
        for part in reversed(parts):
            if part.get("type") != "image_url":
                continue
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise APIError(400, "image_url must hold a url", param="messages", code="invalid_image_url")
            return _decode_data_url(url, config), " ".join(texts)
    raise APIError(400, "send a user message with an image_url part (a base64 data URL) to caption", param="messages", code="image_required")


def _decode_data_url(url: str, config: ServeConfig) -> Image.Image:
    match = DATA_URL.fullmatch(url.strip())
    if match is None:
        raise APIError(400, "image_url must be a base64 data URL (data:image/png;base64,...); the server fetches nothing remote",
                       param="messages", code="invalid_image_url")
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "image_url is not valid base64", param="messages", code="invalid_image") from None
    try:
        with Image.open(io.BytesIO(raw)) as image:
            width, height = image.size
            if width * height > config.max_image_pixels:
                raise APIError(413, f"image is {width}x{height}; the limit is {config.max_image_pixels} pixels", param="messages", code="image_too_large")
            image.load()
            return image.copy()
    except Image.DecompressionBombError:
        raise APIError(413, "image declares an absurd size", param="messages", code="image_too_large") from None
    except APIError:
        raise
    except Exception:  # Pillow raises many kinds on hostile bytes
        raise APIError(400, "image_url does not hold a readable image", param="messages", code="invalid_image") from None


def _validated_job(body: ImageGenerationBody, model: ServedModel, config: ServeConfig) -> _Job:
    prompt = body.prompt
    if not prompt.strip():
        raise APIError(400, "prompt must not be empty", param="prompt", code="invalid_value")
    if len(prompt) > config.max_prompt_chars:
        raise APIError(400, f"prompt is {len(prompt)} characters; the limit is {config.max_prompt_chars}", param="prompt", code="prompt_too_long")
    lowered = prompt.lower()
    if any(term.lower() in lowered for term in config.blocked_terms):
        raise APIError(400, "the prompt was refused by this server's content policy", param="prompt", code="content_policy_violation")
    if not 1 <= body.n <= config.max_images_per_request:
        raise APIError(400, f"n must be between 1 and {config.max_images_per_request}, got {body.n}", param="n", code="invalid_value")
    sizes = model.sizes(config)
    size = body.size or sizes[0]
    if size not in sizes:
        raise APIError(400, f"size {size!r} is not offered; choose one of {list(sizes)}", param="size", code="invalid_size")
    if body.seed is not None and not 0 <= body.seed <= MAX_SEED:
        raise APIError(400, f"seed must be between 0 and {MAX_SEED}", param="seed", code="invalid_value")
    if body.truncation is not None and not 0 < body.truncation <= 10:
        raise APIError(400, "truncation must be in (0, 10]", param="truncation", code="invalid_value")
    seed = body.seed if body.seed is not None else secrets.randbits(63)
    return _Job(GenerationRequest(prompt, body.n, seed, body.truncation), parse_size(size), model.name)


def _batch_runner(model: ServedModel, metrics: ServerMetrics):
    def run(jobs: Sequence[_Job]) -> list[list[bytes]]:
        images = model.pipeline.generate_batch([job.request for job in jobs])
        metrics.images.labels(model.name).inc(sum(len(t) for t in images))
        return [[_png(image, job) for image in to_pil(tensor)] for job, tensor in zip(jobs, images)]
    return run


def _caption_runner(model: ServedModel):
    def run(jobs: Sequence[tuple[Image.Image, int | None]]) -> list[str]:
        limits = {limit for _, limit in jobs}
        if len(limits) == 1:  # the usual case: one call for the whole batch
            return [r["generated_text"] for r in model.pipeline([image for image, _ in jobs], max_length=limits.pop())]
        return [model.pipeline([image], max_length=limit)[0]["generated_text"] for image, limit in jobs]
    return run


def _png(image: Image.Image, job: _Job) -> bytes:
    if image.size != job.size:
        image = image.resize(job.size, Image.Resampling.LANCZOS)
    info = PngInfo()
    info.add_text("prompt", job.request.prompt)
    info.add_text("seed", str(job.request.seed))
    info.add_text("model", job.model)
    if job.request.truncation is not None:
        info.add_text("truncation", str(job.request.truncation))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
