"""POST /v1/images/generations (OpenAI's Images API) and the stored images its `url` answers link to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import secrets
import time
from typing import Annotated, Sequence

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from limner.pipelines import GenerationRequest
from limner.serving.bodies import ImageGenerationBody
from limner.serving.config import ServeConfig, parse_size
from limner.serving.errors import APIError
from limner.serving.metrics import ServerMetrics
from limner.serving.state import Job, ServedModel, ServingState, serving_state
from limner.utils.images import to_pil

MAX_SEED = 2**63 - 1
prompt_log = logging.getLogger("limner.prompts")
router = APIRouter()
State = Annotated[ServingState, Depends(serving_state)]


@router.post("/v1/images/generations")
async def generate(body: ImageGenerationBody, request: Request, response: Response, state: State) -> dict:
    model = state.pick_model(body.model, "text-to-image")
    job = validated_job(body, model, state.config)
    if state.concept_policy is not None and state.concept_policy.match(job.request.prompt) is not None:
        # the same answer as the exact blocklist's: which concept matched is not told
        raise APIError(400, "the prompt was refused by this server's content policy", param="prompt", code="content_policy_violation")
    warnings = [code for code, _ in model.pipeline.prompt_warnings(job.request.prompt)]
    if warnings:  # the client should know the model may not understand the prompt (codes: limner.text.prompts)
        response.headers["X-Limner-Warning"] = ", ".join(warnings)
    log_prompt(state.config, job, request.scope.get("state", {}).get("caller"))
    pngs = await state.run_job(model, job, job.request.num_images)
    if pngs is FLAGGED:  # the model's safety checker flagged one of its images: none is sent
        raise APIError(400, "the generated image was refused by this server's content policy", param="prompt",
                       code="content_policy_violation")
    if (body.response_format or "b64_json") == "url":
        base = str(request.base_url).rstrip("/")
        data = [{"url": f"{base}/v1/images/files/{state.store.put(png)}.png"} for png in pngs]
    else:
        data = [{"b64_json": base64.b64encode(png).decode("ascii")} for png in pngs]
    return {"created": int(time.time()), "data": data}


@router.get("/v1/images/files/{image_name}")
async def stored_image(image_name: str, state: State) -> Response:
    png = state.store.get(image_name.removesuffix(".png"))
    if png is None:
        raise APIError(404, "no such image (image links expire)", code="image_not_found")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def validated_job(body: ImageGenerationBody, model: ServedModel, config: ServeConfig) -> Job:
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
    return Job(GenerationRequest(prompt, body.n, seed, body.truncation), parse_size(size), model.name)


def log_prompt(config: ServeConfig, job: Job, caller: str | None) -> None:
    """One line to "limner.prompts" per accepted request, only when the operator asked for it
    (ServeConfig.log_prompts): the prompt itself, or its keyed hash."""
    if config.log_prompts == "off":
        return
    record = {"model": job.model, "n": job.request.num_images, "caller": caller}
    if config.log_prompts == "hashed":
        digest = hmac.new(config.prompt_log_salt.encode(), job.request.prompt.encode(), hashlib.sha256)
        record["prompt_hmac_sha256"] = digest.hexdigest()
    else:
        record["prompt"] = job.request.prompt
    prompt_log.info(json.dumps(record))


FLAGGED = object()  # a job's result when the safety checker flagged any of its images


def batch_runner(model: ServedModel, metrics: ServerMetrics):
    checker = getattr(model.pipeline, "safety_checker", None)

    def run(jobs: Sequence[Job]) -> list[list[bytes] | object]:
        images = model.pipeline.generate_batch([job.request for job in jobs])
        metrics.images.labels(model.name).inc(sum(len(t) for t in images))
        return [FLAGGED if checker is not None and checker(tensor).any() else [_png(image, job) for image in to_pil(tensor)]
                for job, tensor in zip(jobs, images)]
    return run


def _png(image: Image.Image, job: Job) -> bytes:
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
