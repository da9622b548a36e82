"""limner's server on Ray Serve: the same app (`create_app`) in every replica, and Ray Serve's
autoscaler adding and removing replicas with the traffic.

    limner serve outputs/shapes --engine ray --min-replicas 1 --max-replicas 4
    limner serve outputs/shapes --engine ray --ray-address 10.0.0.5:6379   # an existing cluster

Each replica loads the models itself (from folders every node can read) and builds the app with
its keys, limits, batching and error envelope, so a client sees the same API as from one
process. What changes with replicas: rate limits and the stored images behind `url` responses
are per replica (ask for `b64_json`, or keep one replica, where that matters), `/metrics` is the
answering replica's, and connection limits and timeouts are the Ray proxy's, not uvicorn's.
Ray is an optional extra: `pip install 'limner[ray]'`.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from dataclasses import dataclass

from limner.errors import ConfigError

RAY_MISSING = "--engine ray needs Ray Serve, which is not installed: pip install 'limner[ray]' (or pip install 'ray[serve]')"
APP_NAME = "limner"
DEPLOYMENT_NAME = "limner"


@dataclass
class RayServeConfig:
    address: str | None = None           # None: start a local cluster; "auto", "HOST:PORT" or "ray://HOST:PORT": join one
    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 2.0  # per replica: the autoscaler adds replicas above it, removes them below
    max_ongoing_requests: int = 16       # per replica; beyond it requests wait in the proxy
    # requests that may wait in the proxy for a replica; beyond it Ray answers 503 at once (backpressure)
    # instead of letting every client wait (an overload of 10x the clients otherwise waits 20-30 s each)
    max_queued_requests: int = 64
    replica_cpus: float = 1.0            # CPUs Ray reserves for each replica (and torch threads in it)
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 30.0
    look_back_period_s: float = 30.0     # the window the autoscaler averages ongoing requests over
    connect_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ConfigError(f"min_replicas must be 0 or more, got {self.min_replicas}")
        if self.max_replicas < max(1, self.min_replicas):
            raise ConfigError(f"max_replicas must be at least 1 and at least min_replicas ({self.min_replicas}), got {self.max_replicas}")
        for name in ("target_ongoing_requests", "max_ongoing_requests", "max_queued_requests", "replica_cpus", "connect_timeout_s", "look_back_period_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("upscale_delay_s", "downscale_delay_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}")

    def autoscaling_config(self) -> dict:
        return {
            "min_replicas": self.min_replicas, "initial_replicas": max(1, self.min_replicas), "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s, "downscale_delay_s": self.downscale_delay_s,
            "look_back_period_s": self.look_back_period_s,
        }


def import_ray():
    """(ray, ray.serve), or ConfigError saying what to install."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray, serve


def cluster_endpoint(address: str) -> tuple[str, int]:
    """(host, port) to probe for a cluster address: "HOST:PORT", or "ray://HOST[:PORT]" (Ray Client, port 10001 by default)."""
    client = address.startswith("ray://")
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = rest, "10001" if client else "6379"
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ConfigError(f"Ray address {address!r} is not HOST:PORT or ray://HOST:PORT") from None


def check_reachable(address: str | None, timeout_s: float) -> None:
    """ConfigError within `timeout_s` when nothing answers at the cluster's address (ray.init itself
    would retry for much longer); "auto" and a local cluster are left to Ray."""
    if address in (None, "", "auto", "local"):
        return
    host, port = cluster_endpoint(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        raise ConfigError(f"cannot reach the Ray cluster at {address} within {timeout_s:g} s ({err}); "
                          "is `ray start --head` running there, and is the port open?") from None


class LimnerReplica:
    """One replica: loads the models and builds limner's app when Ray starts it (not when it is
    declared), so each replica has its own models, batchers and state."""

    def __init__(self, model_folders: dict[str, str], backend: str, serve_config: dict, threads: int) -> None:
        self.model_folders, self.backend, self.serve_config, self.threads = model_folders, backend, serve_config, threads

    def __serve_build_asgi_app__(self):
        import torch

        from limner.config import config_from_dict
        from limner.pipelines import load_pipeline
        from limner.serving.app import create_app
        from limner.serving.config import ServeConfig

        torch.set_num_threads(self.threads)
        models = {name: load_pipeline(folder, backend=self.backend) for name, folder in self.model_folders.items()}
        return create_app(models, config_from_dict(ServeConfig, self.serve_config, where="the Ray replica's serve config"))


def limner_application(model_folders: dict[str, str], backend: str, serve_config, ray_config: RayServeConfig):
    """The bound Ray Serve application: LimnerReplica behind Serve's HTTP proxy, autoscaled."""
    _, serve = import_ray()
    deployment = serve.deployment(
        serve.ingress()(LimnerReplica), name=DEPLOYMENT_NAME,
        autoscaling_config=ray_config.autoscaling_config(), max_ongoing_requests=ray_config.max_ongoing_requests,
        max_queued_requests=ray_config.max_queued_requests,
        ray_actor_options={"num_cpus": ray_config.replica_cpus},
    )
    threads = max(1, int(ray_config.replica_cpus))
    return deployment.bind(model_folders, backend, dataclasses.asdict(serve_config), threads)


def app_builder(args: dict):
    """The application for Ray's own tooling: `serve run limner.serving.ray_engine:app_builder` or the
    import_path of a Serve config file (KubeRay's RayService serveConfigV2), with args
    {"models": {"shapes": "/models/shapes"}, "backend": "torch", "serve": {ServeConfig values},
    "ray": {RayServeConfig values; address is ignored: the cluster is the one running it}}."""
    from limner.config import config_from_dict
    from limner.serving.config import ServeConfig

    models = args.get("models")
    if not isinstance(models, dict) or not models:
        raise ConfigError('app_builder needs args "models": {"NAME": "/path/to/model", ...}')
    serve_config = config_from_dict(ServeConfig, dict(args.get("serve") or {}), where="args.serve")
    ray_config = config_from_dict(RayServeConfig, dict(args.get("ray") or {}), where="args.ray")
    check_servable(models, serve_config)
    return limner_application(models, args.get("backend", "torch"), serve_config, ray_config)


def start(model_folders: dict[str, str], backend: str, serve_config, ray_config: RayServeConfig):
    """Connect to (or start) the cluster, start Serve's proxy on the config's host and port, and
    deploy; returns the ray module (shut it down with `stop`)."""
    check_reachable(ray_config.address, ray_config.connect_timeout_s)
    ray, serve = import_ray()
    if not ray.is_initialized():
        ray.init(address=ray_config.address or None, include_dashboard=False, logging_level="warning",
                 log_to_driver=False, configure_logging=True)
    serve.start(http_options={"host": serve_config.host, "port": serve_config.port})
    serve.run(limner_application(model_folders, backend, serve_config, ray_config), name=APP_NAME, route_prefix="/",
              blocking=False)
    return ray


def running_replicas() -> int:
    """Replicas of the limner deployment in the RUNNING state, by Serve's own status."""
    _, serve = import_ray()
    application = serve.status().applications.get(APP_NAME)
    if application is None:
        return 0
    deployment = application.deployments.get(DEPLOYMENT_NAME)
    return 0 if deployment is None else int(deployment.replica_states.get("RUNNING", 0))


def stop(*, shutdown_ray: bool = True) -> None:
    ray, serve = import_ray()
    serve.shutdown()
    if shutdown_ray:
        ray.shutdown()


def check_servable(model_folders: dict[str, str], serve_config) -> None:
    """What a replica would refuse, refused here before anything starts: folders that are not
    models, and a public address without keys."""
    from pathlib import Path

    for name, folder in model_folders.items():
        if not (Path(folder.split("+")[0]) / "model_index.json").is_file():
            raise ConfigError(f"model {name!r}: {folder} has no model_index.json; is this a folder written by `limner train`?")
    if not serve_config.api_keys_file and not serve_config.loopback_only:
        raise ConfigError(f"listening on {serve_config.host} (beyond loopback) needs API keys: pass --api-keys FILE "
                          "(create one with `limner keys create`)")


def serve_until_interrupted(model_folders: dict[str, str], backend: str, serve_config, ray_config: RayServeConfig) -> None:
    """Serve until Ctrl-C or SIGTERM, then take the deployment (and a cluster this started) down."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    check_servable(model_folders, serve_config)
    import_ray()
    signal.signal(signal.SIGTERM, interrupt)
    start(model_folders, backend, serve_config, ray_config)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stop(shutdown_ray=True)
