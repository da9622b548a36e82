"""The request bodies the server reads (OpenAI's fields, then limner's extensions)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict


def encodable(value: str) -> str:
    """JSON may carry lone UTF-16 surrogates ("\\ud800") that no UTF-8 output can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode text (it holds a lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(encodable)]


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
