"""`limner serve --engine ray`: the settings, the errors, and the same app on a local Ray
cluster whose replicas follow the load (1 -> 2 under load, back to 1 when idle)."""

import os
import socket
import sys
import threading
import time

import httpx
import pytest

from limner.cli import main
from limner.errors import ConfigError
from limner.serving import ServeConfig
from limner.serving import ray_engine
from limner.serving.ray_engine import RayServeConfig, check_reachable, cluster_endpoint
from tests.conftest import tiny_pipeline

PROMPT = "a small red circle in the top left"


@pytest.mark.parametrize("values, message", [
    ({"min_replicas": -1}, "min_replicas"),
    ({"min_replicas": 3, "max_replicas": 2}, "max_replicas"),
    ({"target_ongoing_requests": 0}, "target_ongoing_requests"),
    ({"replica_cpus": -1}, "replica_cpus"),
    ({"downscale_delay_s": -1}, "downscale_delay_s"),
])
def test_ray_settings_refuse_what_cannot_scale(values, message):
    with pytest.raises(ConfigError, match=message):
        RayServeConfig(**values)


def test_autoscaling_settings_reach_ray_by_its_names():
    scaling = RayServeConfig(min_replicas=0, max_replicas=4, target_ongoing_requests=3).autoscaling_config()
    assert scaling["min_replicas"] == 0 and scaling["max_replicas"] == 4 and scaling["target_ongoing_requests"] == 3
    assert scaling["initial_replicas"] == 1  # scale-to-zero still starts with one replica


@pytest.mark.parametrize("address, endpoint", [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://head:10002", ("head", 10002)), ("ray://head", ("head", 10001)),
    ("head", ("head", 6379)), ("[::1]:6379", ("::1", 6379)),
])
def test_cluster_addresses(address, endpoint):
    assert cluster_endpoint(address) == endpoint


def test_an_unreachable_cluster_fails_within_seconds():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(ConfigError, match="within 1 s"):  # a documentation address (RFC 5737): nothing answers
        check_reachable("192.0.2.1:6379", timeout_s=1)
    assert time.monotonic() - started < 5
    with pytest.raises(ConfigError, match="HOST:PORT"):
        check_reachable("head:port", timeout_s=1)


def test_without_ray_the_engine_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'limner\[ray\]'"):
        ray_engine.import_ray()
    tiny_pipeline().save_pretrained(tmp_path / "tiny")
    assert main(["serve", str(tmp_path / "tiny"), "--engine", "ray"]) == 2
    assert "pip install 'limner[ray]'" in capsys.readouterr().err


def test_bad_folders_and_public_addresses_are_refused_before_anything_starts(tmp_path):
    with pytest.raises(ConfigError, match="no model_index.json"):
        ray_engine.check_servable({"m": str(tmp_path)}, ServeConfig())
    tiny_pipeline().save_pretrained(tmp_path / "tiny")
    with pytest.raises(ConfigError, match="needs API keys"):
        ray_engine.check_servable({"m": str(tmp_path / "tiny")}, ServeConfig(host="0.0.0.0"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def _start_on_a_free_port(models: dict[str, str], scaling: RayServeConfig, attempts: int = 3) -> ServeConfig:
    """Start Serve on a port that was free a moment ago. Ray's own processes bind ports of their own
    as they start, so one of them can take the probed port first; then a fresh port is probed."""
    for attempt in range(attempts):
        config = ServeConfig(port=_free_port(), rate_limit_per_minute=10**9, rate_limit_burst=10**9)  # the load is the point, not the limiter
        try:
            ray_engine.start(models, "torch", config, scaling)
            return config
        except Exception as err:  # Ray wraps the proxy's bind failure in its own task error
            if "Failed to bind" not in str(err) or attempt == attempts - 1:
                raise
            ray_engine.stop(shutdown_ray=False)
    raise AssertionError("unreachable")


def test_replicas_follow_the_load_on_a_local_ray_cluster(tmp_path, monkeypatch):
    pytest.importorskip("ray.serve", reason="Ray Serve not installed (pip install 'limner[ray]')")
    # Ray pushes its autoscaling figures every 10 s by default; once a second keeps the test short
    for name in ("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S", "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S"):
        monkeypatch.setenv(name, "1")
    tiny_pipeline().save_pretrained(tmp_path / "tiny")
    scaling = RayServeConfig(min_replicas=1, max_replicas=2, target_ongoing_requests=1, replica_cpus=0.5,
                             upscale_delay_s=1, downscale_delay_s=3, look_back_period_s=2)
    config = _start_on_a_free_port({"tiny": str(tmp_path / "tiny")}, scaling)
    try:
        url = f"http://127.0.0.1:{config.port}"
        _wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, "the first replica")
        assert ray_engine.running_replicas() == 1
        first = httpx.post(f"{url}/v1/images/generations", json={"model": "tiny", "prompt": PROMPT, "n": 2}, timeout=30)
        assert first.status_code == 200 and len(first.json()["data"]) == 2
        bad = httpx.post(f"{url}/v1/images/generations", json={"model": "nope", "prompt": PROMPT}, timeout=30)
        assert bad.status_code == 404 and set(bad.json()["error"]) == {"message", "type", "param", "code"}

        statuses, stop = [], threading.Event()

        def client():
            with httpx.Client(timeout=30) as http:
                while not stop.is_set():
                    statuses.append(http.post(f"{url}/v1/images/generations", json={"model": "tiny", "prompt": PROMPT}).status_code)

        clients = [threading.Thread(target=client) for _ in range(6)]
        for thread in clients:
            thread.start()
        try:
            _wait_for(lambda: ray_engine.running_replicas() == 2, 90, "a second replica under load")
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        _wait_for(lambda: ray_engine.running_replicas() == 1, 90, "the deployment to shrink back to one replica")
        assert statuses and set(statuses) <= {200, 429, 503}, sorted(set(statuses))
        assert statuses.count(200) > len(statuses) / 2
    finally:
        ray_engine.stop()


def test_ray_tooling_gets_the_same_application_from_its_arguments(tmp_path):
    pytest.importorskip("ray.serve", reason="Ray Serve not installed (pip install 'limner[ray]')")
    tiny_pipeline().save_pretrained(tmp_path / "tiny")
    application = ray_engine.app_builder({"models": {"tiny": str(tmp_path / "tiny")}, "ray": {"max_replicas": 3}})
    assert type(application).__name__ == "Application"
    with pytest.raises(ConfigError, match="needs args"):
        ray_engine.app_builder({})
    with pytest.raises(ConfigError, match="args.ray"):
        ray_engine.app_builder({"models": {"tiny": str(tmp_path / "tiny")}, "ray": {"replicas": 3}})
