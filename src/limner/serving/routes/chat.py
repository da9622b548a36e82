"""POST /v1/chat/completions for captioners: the image a user message carries, captioned."""

from __future__ import annotations

import base64
import binascii
import io
import re
import secrets
import time
from typing import Annotated, Sequence

from fastapi import APIRouter, Depends
from PIL import Image

from limner.serving.bodies import ChatCompletionBody, ChatMessage, encodable
from limner.serving.config import ServeConfig
from limner.serving.errors import APIError
from limner.serving.state import ServedModel, ServingState, serving_state

router = APIRouter()
State = Annotated[ServingState, Depends(serving_state)]


@router.post("/v1/chat/completions")
async def chat(body: ChatCompletionBody, state: State) -> dict:
    model = state.pick_model(body.model, "image-to-text")
    image, prompt_text = image_from_messages(body.messages, state.config)
    limit = body.max_completion_tokens or body.max_tokens
    if limit is not None and limit < 1:
        raise APIError(400, "max_tokens must be at least 1", param="max_tokens", code="invalid_value")
    text = await state.run_job(model, (image, limit), 1)
    tokenizer = model.pipeline.vocabulary.tokenizer
    prompt_tokens = len(tokenizer(prompt_text, add_special_tokens=False)["input_ids"]) + 16  # + the image's 4x4 grid
    completion_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}", "object": "chat.completion", "created": int(time.time()), "model": model.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }


DATA_URL = re.compile(r"data:image/[a-zA-Z0-9.+-]+;base64,(.*)", re.DOTALL)


def image_from_messages(messages: list[ChatMessage], config: ServeConfig) -> tuple[Image.Image, str]:
    """The last image a user message carries (a base64 data URL), decoded and checked, and the text beside it."""
    for message in reversed(messages):
        if message.role != "user" or not isinstance(message.content, list):
            continue
        parts = message.content
        texts = [str(p.get("text", "")) for p in parts if p.get("type") == "text"]
        try:
            [encodable(text) for text in texts]
        except ValueError as err:
            raise APIError(400, f"messages: a text part {err}", param="messages", code="invalid_value") from None
        for part in reversed(parts):
            if part.get("type") != "image_url":
                continue
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise APIError(400, "image_url must hold a url", param="messages", code="invalid_image_url")
            return decode_data_url(url, config), " ".join(texts)
    raise APIError(400, "send a user message with an image_url part (a base64 data URL) to caption", param="messages", code="image_required")


def decode_data_url(url: str, config: ServeConfig) -> Image.Image:
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


def caption_runner(model: ServedModel):
    def run(jobs: Sequence[tuple[Image.Image, int | None]]) -> list[str]:
        limits = {limit for _, limit in jobs}
        if len(limits) == 1:  # the usual case: one call for the whole batch
            return [r["generated_text"] for r in model.pipeline([image for image, _ in jobs], max_length=limits.pop())]
        return [model.pipeline([image], max_length=limit)[0]["generated_text"] for image, limit in jobs]
    return run
