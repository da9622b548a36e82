"""Run an app on a real socket in a background thread (tests, benchmarks, notebooks).

    with BackgroundServer(app) as server:
        httpx.get(server.url + "/healthz")
"""

from __future__ import annotations

import threading
import time

import uvicorn

from limner.serving.config import ServeConfig
from limner.serving.connections import uvicorn_config


class BackgroundServer:
    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 30.0) -> None:
        serve_config = getattr(getattr(app, "state", None), "config", None) or ServeConfig()  # the limits create_app was given
        config = uvicorn_config(app, serve_config, host=host, port=port, timeout_graceful_shutdown=10)
        self.server = uvicorn.Server(config)
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self.startup_timeout_s = startup_timeout_s
        self.thread = threading.Thread(target=self.server.run, name="limner-server", daemon=True)
        self.url = ""

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
