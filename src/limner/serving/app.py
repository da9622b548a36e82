"""The limner HTTP server: the OpenAI Images API (and chat, for captioners) over limner models.

    app = create_app({"shapes": TextToImagePipeline.from_pretrained("outputs/shapes")}, ServeConfig())
    uvicorn.run(app)

The app factory checks what it is given, builds the shared state (limner.serving.state),
starts a batcher per model for the app's lifetime, and mounts the routers
(limner.serving.routes) behind the key and request-guard middleware. Every error leaves in
the OpenAI envelope with the right status (limner.serving.error_handlers).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from limner.errors import ConfigError
from limner.pipelines import TextToImagePipeline
from limner.pipelines.image_to_text import ImageToTextPipeline
from limner.serving.auth import Authenticator
from limner.serving.batching import DynamicBatcher
from limner.serving.config import ServeConfig
from limner.serving.error_handlers import install_error_handlers
from limner.serving.guard import RequestGuard
from limner.serving.image_store import ImageStore
from limner.serving.keys import KeyStore
from limner.serving.metrics import ServerMetrics
from limner.serving.rate_limit import RateLimiter
from limner.serving.routes import ROUTERS
from limner.serving.routes.chat import caption_runner
from limner.serving.routes.images import batch_runner
from limner.serving.state import ServedModel, ServingState

log = logging.getLogger("limner.serve")


def create_app(models: dict[str, TextToImagePipeline], config: ServeConfig | None = None, *, keys: KeyStore | None = None) -> FastAPI:
    config = config or ServeConfig()
    keys = _checked(models, config, keys)
    state = ServingState(
        served={name: ServedModel(name, pipe) for name, pipe in models.items()}, config=config, metrics=ServerMetrics(),
        store=ImageStore(config.stored_images, config.stored_image_ttl_s),
        limiter=RateLimiter(config.rate_limit_per_minute, config.rate_limit_burst), concept_policy=_concept_policy(config),
    )
    app = FastAPI(title="limner", version="1", lifespan=_lifespan(state), docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serving = state
    app.state.config = config  # what BackgroundServer and uvicorn_config read the limits from
    install_error_handlers(app, config)
    for router in ROUTERS:  # the routes themselves, flat in app.routes (include_router would nest them lazily)
        app.router.routes.extend(router.routes)
    app.add_middleware(Authenticator, keys=keys, limiter=state.limiter, per_minute=config.rate_limit_per_minute)
    app.add_middleware(RequestGuard, max_body_bytes=config.max_body_bytes, body_timeout_s=config.body_timeout_s, metrics=state.metrics)
    return app


def _checked(models: dict, config: ServeConfig, keys: KeyStore | None) -> KeyStore | None:
    """ConfigError for what cannot be served; the key store to use."""
    if not models:
        raise ConfigError("serve needs at least one model")
    if keys is None and config.api_keys_file:
        keys = KeyStore(config.api_keys_file)
    if keys is None and not config.loopback_only:
        raise ConfigError(f"listening on {config.host} (beyond loopback) needs API keys: pass --api-keys FILE (create one with `limner keys create`)")
    for name, pipe in models.items():
        if not isinstance(pipe, (TextToImagePipeline, ImageToTextPipeline)) and not hasattr(pipe, "generate_batch"):
            raise ConfigError(f"model {name!r} is a {type(pipe).__name__}; serve takes text-to-image generators and captioners")
    return keys


def _concept_policy(config: ServeConfig):
    """The denied-concept policy (loads its language model once, at start-up), or None without concepts."""
    if not config.denied_concepts:
        return None
    from limner.text import HuggingFaceTextEncoder
    from limner.text.policy import ConceptPolicy

    encoder = HuggingFaceTextEncoder(config.denied_concept_encoder)
    return ConceptPolicy(config.denied_concepts, encoder, threshold=config.denied_concept_threshold)


def _lifespan(state: ServingState):
    """A batcher per model while the app runs; ready only between their start and stop."""
    config = state.config

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for model in state.served.values():
            runner = caption_runner(model) if model.task == "image-to-text" else batch_runner(model, state.metrics)
            model.batcher = DynamicBatcher(
                runner, max_batch_size=config.max_batch_size, wait_timeout_s=config.batch_wait_timeout_s,
                max_queue_size=config.max_queue_size, batching=config.batching, on_batch=state.metrics.batch_images.observe,
            )
            model.batcher.start()
        state.ready = True
        log.info("serving %s", ", ".join(state.served))
        yield
        state.ready = False
        await asyncio.gather(*(m.batcher.stop() for m in state.served.values() if m.batcher))

    return lifespan
