"""The server's routes, one router per concern: operations (health, readiness, metrics, the
page and the schema), models, images (OpenAI Images API) and chat (captioners)."""

from limner.serving.routes import chat, images, models, operations

ROUTERS = (operations.router, models.router, images.router, chat.router)

__all__ = ["ROUTERS"]
