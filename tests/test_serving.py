"""`limner serve`: the app in-process (TestClient) and over a real socket."""

import asyncio
import base64
import io
import logging
import threading

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from limner.errors import ConfigError
from limner.serving import ServeConfig, create_app
from limner.serving.background import BackgroundServer
from limner.serving.batching import DynamicBatcher, QueueFullError
from limner.serving.keys import KeyStore, create_key, revoke_key
from limner.serving.rate_limit import RateLimiter
from tests.conftest import tiny_captioner_pipeline, tiny_pipeline

PROMPT = "a small red circle in the top left"


@pytest.fixture
def client():
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(blocked_terms=("forbidden",)))
    with TestClient(app) as c:
        yield c


def decode(item: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))


def assert_envelope(response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code
    if param:
        assert error["param"] == param
    return error


# ---- the happy path ------------------------------------------------------------------

def test_generations_return_pngs_with_prompt_seed_and_model(client):
    response = client.post("/v1/images/generations", json={"prompt": PROMPT, "n": 3, "seed": 4})
    assert response.status_code == 200
    body = response.json()
    assert isinstance(body["created"], int) and len(body["data"]) == 3
    image = decode(body["data"][0])
    assert image.format == "PNG" and image.size == (32, 32)
    assert image.text == {"prompt": PROMPT, "seed": "4", "model": "tiny"}


def test_same_seed_same_images_and_sizes_are_resized(client):
    ask = lambda **extra: client.post("/v1/images/generations", json={"prompt": PROMPT, "n": 2, **extra}).json()  # noqa: E731
    assert ask(seed=1)["data"] == ask(seed=1)["data"]
    assert ask(seed=1)["data"] != ask(seed=2)["data"]
    assert decode(ask(seed=1, size="256x256")["data"][0]).size == (256, 256)


def test_url_responses_point_at_the_server(client):
    body = client.post("/v1/images/generations", json={"prompt": PROMPT, "response_format": "url"}).json()
    url = body["data"][0]["url"]
    assert url.startswith("http://testserver/v1/images/files/")
    fetched = client.get(url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).text["prompt"] == PROMPT
    assert_envelope(client.get("/v1/images/files/not-an-image.png"), 404, "image_not_found")


def test_models_are_listed_in_the_openai_shape(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["tiny"]
    assert body["data"][0]["object"] == "model" and body["data"][0]["owned_by"] == "limner"
    assert client.get("/v1/models/tiny").json()["id"] == "tiny"
    assert_envelope(client.get("/v1/models/nope"), 404, "model_not_found")


def test_health_readiness_and_the_web_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "models": ["tiny"]}
    page = client.get("/")
    assert page.status_code == 200 and "<title>limner</title>" in page.text and "/v1/images/generations" in page.text


def test_several_models_by_name():
    app = create_app({"one": tiny_pipeline(0), "two": tiny_pipeline(1)})
    with TestClient(app) as c:
        one = c.post("/v1/images/generations", json={"prompt": PROMPT, "model": "one", "seed": 0}).json()["data"]
        two = c.post("/v1/images/generations", json={"prompt": PROMPT, "model": "two", "seed": 0}).json()["data"]
        assert one != two and decode(two[0]).text["model"] == "two"
        assert_envelope(c.post("/v1/images/generations", json={"prompt": PROMPT, "model": "three"}), 404, "model_not_found", "model")


def test_metrics_count_requests_batches_and_images(client):
    client.post("/v1/images/generations", json={"prompt": PROMPT, "n": 2})
    client.post("/v1/images/generations", json={"prompt": PROMPT, "n": 0})
    text = client.get("/metrics").text
    assert 'limner_requests_total{endpoint="/v1/images/generations",status="200"} 1.0' in text
    assert 'limner_requests_total{endpoint="/v1/images/generations",status="400"} 1.0' in text
    assert 'limner_images_generated_total{model="tiny"} 2.0' in text
    assert "limner_batch_images_count 1.0" in text and "limner_request_seconds_bucket" in text
    assert 'limner_queue_depth{model="tiny"} 0.0' in text
    assert 'limner_queue_limit{model="tiny"} 256.0' in text and "limner_ready 1.0" in text  # what the alert rules read


# ---- bad requests: the envelope and the right status, never a 500 -------------------------

@pytest.mark.parametrize("body, status, code, param", [
    ({"n": 1}, 400, "invalid_value", "prompt"),
    ({"prompt": ""}, 400, "invalid_value", "prompt"),
    ({"prompt": "x" * 1001}, 400, "prompt_too_long", "prompt"),
    ({"prompt": PROMPT, "n": 0}, 400, "invalid_value", "n"),
    ({"prompt": PROMPT, "n": 11}, 400, "invalid_value", "n"),
    ({"prompt": PROMPT, "n": "lots"}, 400, "invalid_value", "n"),
    ({"prompt": PROMPT, "size": "31x7"}, 400, "invalid_size", "size"),
    ({"prompt": PROMPT, "size": 5}, 400, "invalid_value", "size"),
    ({"prompt": PROMPT, "response_format": "gif"}, 400, "invalid_value", "response_format"),
    ({"prompt": PROMPT, "seed": -1}, 400, "invalid_value", "seed"),
    ({"prompt": PROMPT, "truncation": 0}, 400, "invalid_value", "truncation"),
    ({"prompt": "a FORBIDDEN circle"}, 400, "content_policy_violation", "prompt"),
    ([1, 2, 3], 400, "invalid_value", None),
])
def test_bad_generation_requests(client, body, status, code, param):
    assert_envelope(client.post("/v1/images/generations", json=body), status, code, param)


def test_malformed_json_unknown_routes_and_methods(client):
    assert_envelope(client.post("/v1/images/generations", content=b"{not json", headers={"content-type": "application/json"}), 400, "invalid_json")
    assert_envelope(client.get("/v1/nothing"), 404, "unknown_url")
    assert_envelope(client.get("/v1/images/generations"), 405)


def test_oversized_bodies_are_refused_whether_declared_or_streamed():
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(max_body_bytes=1000))
    with TestClient(app) as c:
        assert_envelope(c.post("/v1/images/generations", json={"prompt": "x" * 2000}), 413, "request_too_large")
        chunks = (b'{"prompt": "' + b"x" * 400 for _ in range(5))  # no Content-Length: counted as it arrives
        assert_envelope(c.post("/v1/images/generations", content=chunks, headers={"content-type": "application/json"}), 413, "request_too_large")


# ---- keys and limits --------------------------------------------------------------------

@pytest.fixture
def keyed(tmp_path):
    path = tmp_path / "keys.json"
    alice, bob = create_key(path, "alice"), create_key(path, "bob")
    store = KeyStore(path, recheck_seconds=0)
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(rate_limit_burst=3, rate_limit_per_minute=1), keys=store)
    with TestClient(app) as c:
        yield c, path, alice, bob


def test_keys_are_required_checked_and_revocable(keyed, caplog):
    c, path, alice, bob = keyed
    caplog.set_level(logging.INFO)
    ask = lambda key=None, **h: c.post("/v1/images/generations", json={"prompt": PROMPT}, headers={"Authorization": f"Bearer {key}"} if key else h)  # noqa: E731
    assert_envelope(ask(), 401, "missing_api_key")
    assert_envelope(ask(Authorization="Basic abc"), 401, "missing_api_key")
    assert_envelope(ask("lmn-wrong"), 401, "invalid_api_key")
    assert ask(alice).status_code == 200
    for route in ("/v1/models", "/metrics"):
        assert_envelope(c.get(route), 401)
        assert c.get(route, headers={"Authorization": f"Bearer {bob}"}).status_code == 200
    assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
    revoke_key(path, "alice")
    assert_envelope(ask(alice), 401, "invalid_api_key")
    assert alice not in caplog.text and bob not in caplog.text
    assert '"caller": "key:bob"' in caplog.text  # access logs name the key, never show it
    assert alice not in path.read_text()  # only hashes are stored


def test_rate_limit_per_key_does_not_starve_another_key(keyed):
    c, _, alice, bob = keyed
    ask = lambda key: c.post("/v1/images/generations", json={"prompt": PROMPT}, headers={"Authorization": f"Bearer {key}"})  # noqa: E731
    assert [ask(alice).status_code for _ in range(3)] == [200, 200, 200]
    limited = ask(alice)
    assert_envelope(limited, 429, "rate_limit_exceeded")
    assert int(limited.headers["Retry-After"]) >= 1
    assert ask(bob).status_code == 200


def test_a_key_can_carry_its_own_rate_limit(tmp_path):
    path = tmp_path / "keys.json"
    generous, plain = create_key(path, "generous", rate_limit_per_minute=60, rate_limit_burst=4), create_key(path, "plain")
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(rate_limit_burst=1, rate_limit_per_minute=1), keys=KeyStore(path))
    with TestClient(app) as c:
        ask = lambda key: c.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code  # noqa: E731
        assert [ask(generous) for _ in range(5)] == [200] * 4 + [429]
        assert [ask(plain) for _ in range(2)] == [200, 429]
    with pytest.raises(ConfigError, match="rate_limit_burst must be positive"):
        create_key(path, "broken", rate_limit_burst=0)


def test_rate_limiter_refills_over_time():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert limiter.acquire("a") is None and limiter.acquire("a") is None
    assert limiter.acquire("a") == pytest.approx(1.0)
    now[0] = 1.0
    assert limiter.acquire("a") is None


def test_listening_beyond_loopback_needs_keys():
    with pytest.raises(ConfigError, match="needs API keys"):
        create_app({"tiny": tiny_pipeline()}, ServeConfig(host="0.0.0.0"))


# ---- batching, overload and time limits ------------------------------------------------

def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_batches_up_to_the_limit():
    calls = []

    async def scenario():
        batcher = DynamicBatcher(lambda jobs: calls.append(list(jobs)) or [j * 10 for j in jobs],
                                 max_batch_size=4, wait_timeout_s=0.05, max_queue_size=16)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i, 1) for i in range(6)))
        await batcher.stop()
        return results

    assert run(scenario()) == [0, 10, 20, 30, 40, 50]
    assert [len(c) for c in calls] == [4, 2]


def test_without_batching_each_request_runs_alone():
    calls = []

    async def scenario():
        batcher = DynamicBatcher(lambda jobs: calls.append(list(jobs)) or list(jobs), max_batch_size=8,
                                 wait_timeout_s=0.05, max_queue_size=16, batching=False)
        batcher.start()
        await asyncio.gather(*(batcher.submit(i, 1) for i in range(3)))
        await batcher.stop()

    run(scenario())
    assert [len(c) for c in calls] == [1, 1, 1]


def test_a_full_queue_refuses_at_once_and_a_failing_batch_does_not_stop_the_worker():
    release = threading.Event()

    def slow(jobs):
        release.wait(5)
        if "bad" in jobs:
            raise RuntimeError("boom")
        return list(jobs)

    async def scenario():
        batcher = DynamicBatcher(slow, max_batch_size=1, wait_timeout_s=0, max_queue_size=1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit("bad", 1))
        await asyncio.sleep(0.05)  # the worker holds "bad"; the queue is empty again
        second = asyncio.ensure_future(batcher.submit("ok", 1))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await batcher.submit("one too many", 1)
        release.set()
        with pytest.raises(RuntimeError, match="boom"):
            await first
        assert await second == "ok"
        await batcher.stop()

    run(scenario())


def test_callers_that_gave_up_free_their_places_in_a_full_queue():
    release = threading.Event()

    async def scenario():
        batcher = DynamicBatcher(lambda jobs: release.wait(5) and list(jobs), max_batch_size=1, wait_timeout_s=0, max_queue_size=1)
        batcher.start()
        running = asyncio.ensure_future(batcher.submit("running", 1))
        await asyncio.sleep(0.05)  # the worker holds it; the queue is empty again
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.submit("impatient", 1), timeout=0.05)  # queued, then abandoned
        waiting = asyncio.ensure_future(batcher.submit("patient", 1))  # takes the abandoned place
        await asyncio.sleep(0.01)
        release.set()
        assert await running == "running" and await waiting == "patient"
        await batcher.stop()

    run(scenario())


class SlowPipeline:
    """Wraps a pipeline so every generator call waits for `release`."""

    def __init__(self, pipe, release: threading.Event):
        self.pipe, self.release = pipe, release
        self.resolution = pipe.resolution

    def generate_batch(self, requests):
        self.release.wait(10)
        return self.pipe.generate_batch(requests)

    def prompt_warnings(self, prompt):
        return self.pipe.prompt_warnings(prompt)


def test_overload_gets_503_with_retry_after_and_slow_generation_times_out():
    release = threading.Event()
    config = ServeConfig(max_queue_size=1, max_batch_size=1, batch_wait_timeout_s=0, request_timeout_s=0.5)
    app = create_app({"tiny": SlowPipeline(tiny_pipeline(), release)}, config)
    with BackgroundServer(app) as server:
        def ask():
            return httpx.post(server.url + "/v1/images/generations", json={"prompt": PROMPT}, timeout=10)

        threads_out = []
        threads = [threading.Thread(target=lambda: threads_out.append(ask())) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(r.json()["error"]["code"] for r in threads_out)
        # one runs (and times out), one waits (and times out), the rest find the queue full
        assert codes.count("server_overloaded") >= 1 and codes.count("timeout") >= 1
        assert all(r.status_code == 503 and int(r.headers["Retry-After"]) >= 1 for r in threads_out)
        release.set()
        assert ask().status_code == 200  # and it recovers on its own


def test_shutdown_lets_requests_in_flight_finish():
    import time

    release = threading.Event()
    server = BackgroundServer(create_app({"tiny": SlowPipeline(tiny_pipeline(), release)})).__enter__()
    answers = []
    client = threading.Thread(target=lambda: answers.append(
        httpx.post(server.url + "/v1/images/generations", json={"prompt": PROMPT, "n": 2}, timeout=20)))
    client.start()
    time.sleep(0.3)  # the request now waits on the generator
    server.server.should_exit = True  # what SIGTERM and Ctrl-C do
    time.sleep(0.2)
    release.set()
    client.join(20)
    server.thread.join(20)
    assert not server.thread.is_alive()
    assert answers and answers[0].status_code == 200 and len(answers[0].json()["data"]) == 2


# ---- real clients -----------------------------------------------------------------------

def test_the_official_openai_client_generates_images(tmp_path):
    openai = pytest.importorskip("openai")
    key = create_key(tmp_path / "keys.json", "sdk")
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(api_keys_file=str(tmp_path / "keys.json")))
    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)
        result = client.images.generate(model="tiny", prompt=PROMPT, n=2, size="32x32", response_format="b64_json", extra_body={"seed": 3})
        images = [Image.open(io.BytesIO(base64.b64decode(item.b64_json))) for item in result.data]
        assert [im.size for im in images] == [(32, 32)] * 2 and images[0].text["seed"] == "3"
        assert [m.id for m in client.models.list()] == ["tiny"]
        with pytest.raises(openai.BadRequestError) as err:
            client.images.generate(model="tiny", prompt=PROMPT, n=99)
        assert err.value.code == "invalid_value"
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key="lmn-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.images.generate(model="tiny", prompt=PROMPT)


# ---- captioning through chat completions ------------------------------------------------

@pytest.fixture
def chat_client():
    pipe = tiny_captioner_pipeline([PROMPT])
    app = create_app({"tiny": tiny_pipeline(), "captioner": pipe}, ServeConfig(max_image_pixels=64 * 64))
    with TestClient(app) as c:
        yield c, pipe


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def chat_body(url, model="captioner"):
    return {"model": model, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe this image."}, {"type": "image_url", "image_url": {"url": url}}]}]}


def test_chat_completions_caption_an_image(chat_client):
    c, pipe = chat_client
    image = Image.new("RGB", (32, 32), (230, 40, 40))
    body = c.post("/v1/chat/completions", json=chat_body(data_url(image))).json()
    assert body["object"] == "chat.completion" and body["model"] == "captioner"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant" and message["content"] == pipe([image])[0]["generated_text"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] and usage["prompt_tokens"] > 16
    tasks = {m["id"]: m["task"] for m in c.get("/v1/models").json()["data"]}
    assert tasks == {"tiny": "text-to-image", "captioner": "image-to-text"}


@pytest.mark.parametrize("url, status, code", [
    ("https://example.com/cat.png", 400, "invalid_image_url"),
    ("data:image/png;base64,!!!notbase64", 400, "invalid_image"),
    ("data:image/png;base64," + base64.b64encode(b"plain text, not an image").decode(), 400, "invalid_image"),
    (None, 413, "image_too_large"),  # 100x100 pixels against a limit of 64x64
])
def test_chat_refuses_bad_images(chat_client, url, status, code):
    c, _ = chat_client
    url = url or data_url(Image.new("RGB", (100, 100)))
    assert_envelope(c.post("/v1/chat/completions", json=chat_body(url)), status, code)


def test_chat_needs_an_image_and_a_captioning_model(chat_client):
    c, _ = chat_client
    text_only = {"model": "captioner", "messages": [{"role": "user", "content": "hello"}]}
    assert_envelope(c.post("/v1/chat/completions", json=text_only), 400, "image_required", "messages")
    assert_envelope(c.post("/v1/chat/completions", json=chat_body(data_url(Image.new("RGB", (8, 8))), model="tiny")), 400, "wrong_model_type")
    assert_envelope(c.post("/v1/images/generations", json={"prompt": PROMPT, "model": "captioner"}), 400, "wrong_model_type")
    assert_envelope(c.post("/v1/chat/completions", json={"messages": "nope"}), 400, "invalid_value", "messages")


def test_logs_carry_no_prompt_unless_the_operator_asks_and_then_hashed_if_asked(caplog):
    import hashlib
    import hmac

    caplog.set_level(logging.INFO)
    salt = "a-deployment-secret-0123456789"
    prompts = {}
    for mode in ("off", "hashed", "plain"):
        config = ServeConfig(log_prompts=mode, prompt_log_salt=salt if mode == "hashed" else "")
        with TestClient(create_app({"tiny": tiny_pipeline()}, config)) as client:
            caplog.clear()
            assert client.post("/v1/images/generations", json={"prompt": PROMPT, "n": 1}).status_code == 200
            prompts[mode] = [r.getMessage() for r in caplog.records if r.name == "limner.prompts"]
            if mode != "plain":
                assert PROMPT not in caplog.text  # neither the access log nor anything else
            assert "b64" not in " ".join(r.getMessage() for r in caplog.records if r.name == "limner.access")
    assert prompts["off"] == []
    expected = hmac.new(salt.encode(), PROMPT.encode(), hashlib.sha256).hexdigest()
    assert len(prompts["hashed"]) == 1 and expected in prompts["hashed"][0]
    assert len(prompts["plain"]) == 1 and PROMPT in prompts["plain"][0]
    with pytest.raises(ConfigError, match="prompt_log_salt"):
        ServeConfig(log_prompts="hashed", prompt_log_salt="short")
    with pytest.raises(ConfigError, match="log_prompts must be one of"):
        ServeConfig(log_prompts="everything")
