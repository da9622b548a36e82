"""`limner serve`: the OpenAI Images API over limner models, with keys, limits, batching and metrics."""

from limner.serving.app import create_app
from limner.serving.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
