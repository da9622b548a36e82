"""The server under abuse, over a real socket: a schema-driven fuzz of every operation,
hostile bodies and images, slow and idle clients, connection floods, and keys that are
missing, wrong or revoked. Each test counts what it sent and asserts no 5xx."""

import asyncio
import base64
import io
import json
import logging
import socket
import struct
import time
import zlib

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from PIL import Image

from limner.serving import ServeConfig, create_app
from limner.serving.background import BackgroundServer
from limner.serving.keys import KeyStore, create_key, revoke_key
from tests.conftest import tiny_captioner_pipeline, tiny_pipeline

PROMPT = "a small red circle in the top left"
# liveness, readiness, the static page (it asks for the key), and stored images: their links are
# capabilities, 128 random bits each, like the signed links OpenAI returns, so <img src> works
OPEN_ROUTES = {"/healthz", "/readyz", "/", "/v1/images/files/{image_name}"}


def is_envelope(response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and set(error) == {"message", "type", "param", "code"} and bool(error["message"])


def check_answer(response, counts: dict) -> None:
    """Counts the status; a 5xx is a failure unless it is a 503 with Retry-After; errors wear the envelope."""
    counts[response.status_code] = counts.get(response.status_code, 0) + 1
    assert response.status_code < 500 or (response.status_code == 503 and "retry-after" in response.headers), response.text[:300]
    if response.status_code >= 400:
        assert is_envelope(response), f"{response.status_code} without the envelope: {response.text[:300]}"


@pytest.fixture
def keyed_server(tmp_path):
    """Both kinds of model behind API keys; alice's key is revoked once the server runs."""
    keys_file = tmp_path / "keys.json"
    keys = {name: create_key(keys_file, name) for name in ("alice", "bob", "carol")}
    config = ServeConfig(max_image_pixels=64 * 64, rate_limit_per_minute=10**6, rate_limit_burst=10**6,
                         header_timeout_s=1.0, body_timeout_s=1.0, max_body_bytes=256 * 1024)
    app = create_app({"tiny": tiny_pipeline(), "captioner": tiny_captioner_pipeline([PROMPT])}, config,
                     keys=KeyStore(keys_file, recheck_seconds=0))
    with BackgroundServer(app) as server:
        revoke_key(keys_file, "alice")
        yield server, keys


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# ---- schema-driven fuzz -----------------------------------------------------------------

def test_fuzz_every_operation_from_the_openapi_schema(keyed_server):
    server, keys = keyed_server
    auth = bearer(keys["bob"])
    assert httpx.get(server.url + "/openapi.json").status_code == 401  # the schema, too, needs a key
    schema = schemathesis.openapi.from_dict(httpx.get(server.url + "/openapi.json", headers=auth).json())
    counts, operations = {}, []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations.append(f"{operation.method.upper()} {operation.path}")
        for mode in schemathesis.GenerationMode:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def fuzz(case):
                check_answer(case.call(base_url=server.url, headers=auth), counts)
            try:
                fuzz()
            except Unsatisfiable:
                pass  # nothing in this operation can be made invalid (no parameters, or free-form strings only)
    print(f"\nfuzz: {sum(counts.values())} requests over {len(operations)} operations, statuses {dict(sorted(counts.items()))}")
    assert {"POST /v1/images/generations", "POST /v1/chat/completions", "GET /v1/models/{model_id}", "GET /healthz"} <= set(operations)
    assert counts.get(200, 0) > 20 and sum(v for k, v in counts.items() if 400 <= k < 500) > 20  # it reached both sides
    assert not any(k >= 500 for k in counts)


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)


@given(scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]), token=HEADER_TEXT)
@settings(max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_keys_are_refused_and_never_echoed(scheme, token, keyed_server_session):
    server, _ = keyed_server_session
    with raw_connection(server) as sock:  # raw bytes: a client library would refuse some of these headers
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
                     + (scheme + token).encode("latin-1") + b"\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 "), answer[:300]
    assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}
    if len(token.strip()) >= 8:
        assert token.strip().encode("latin-1") not in body


@pytest.fixture(scope="module")
def keyed_server_session(tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    keys = {"bob": create_key(keys_file, "bob")}
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(rate_limit_burst=10**6, rate_limit_per_minute=10**6), keys=KeyStore(keys_file))
    with BackgroundServer(app) as server:
        yield server, keys


# ---- hostile bodies and images ---------------------------------------------------------

def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but whose data is a single byte: a bomb's fuse."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def compression_bomb() -> bytes:
    """3000x3000 black: 27 MB of pixels in a few kilobytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 3000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def chat(url: str) -> dict:
    return {"model": "captioner", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}


def hostile_requests() -> list[tuple[str, bytes | dict, int]]:
    """(path, body, expected status): raw bytes are sent as they are, dicts as JSON."""
    data_url = lambda raw: "data:image/png;base64," + base64.b64encode(raw).decode()  # noqa: E731
    return [
        ("/v1/images/generations", b"[" * 50_000 + b"]" * 50_000, 400),           # nested past any recursion limit
        ("/v1/images/generations", b'{"prompt": ' * 20_000, 400),                  # nested and unfinished
        ("/v1/images/generations", b'{"prompt": "a", "n": ' + b"9" * 5000 + b"}", 400),  # a number too long to convert
        ("/v1/images/generations", b'{"prompt": "\\ud800 lone surrogate"}', 400),
        ("/v1/images/generations", b"\xff\xfe not utf-8 at all", 400),
        ("/v1/images/generations", b'{"prompt": "a", "n": 1e999}', 400),
        ("/v1/images/generations", b"[" + b"1," * 200_000 + b"1]", 413),             # over the body limit
        ("/v1/images/generations", {"prompt": ["a"] * 1000}, 400),
        ("/v1/images/generations", {"prompt": {"nested": {"deeper": [PROMPT]}}}, 400),
        ("/v1/images/generations", {"prompt": PROMPT, "n": 10**30}, 400),
        ("/v1/images/generations", {"prompt": PROMPT, "size": "99999999999x99999999999"}, 400),
        ("/v1/chat/completions", chat(data_url(png_declaring(60_000, 60_000))), 413),  # declared size alone
        ("/v1/chat/completions", chat(data_url(compression_bomb())), 413),
        ("/v1/chat/completions", chat(data_url(b"GIF89a" + b"\0" * 100)), 400),
        ("/v1/chat/completions", chat(data_url(png_declaring(8, 8)[:40])), 400),     # truncated
        ("/v1/chat/completions", chat("data:image/png;base64," + "A" * 300_000), 413),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "text", "text": "\ud800"}]}]}, 400),
        ("/v1/chat/completions", {"messages": "not a list"}, 400),
        ("/v1/chat/completions", {"messages": [[[[[]]]]]}, 400),
    ]


def test_hostile_bodies_and_images_are_refused_cleanly(keyed_server, caplog):
    server, keys = keyed_server
    caplog.set_level(logging.INFO)
    counts = {}
    with httpx.Client(base_url=server.url, headers=bearer(keys["bob"]), timeout=30) as http:
        for path, body, expected in hostile_requests():
            if isinstance(body, bytes):
                response = http.post(path, content=body, headers={"content-type": "application/json"})
            else:
                response = http.post(path, content=json.dumps(body, ensure_ascii=True), headers={"content-type": "application/json"})
            check_answer(response, counts)
            assert response.status_code == expected, (path, str(body)[:80], response.text[:200])
        assert http.post("/v1/images/generations", json={"prompt": PROMPT}).status_code == 200  # and it still serves
    print(f"\nhostile bodies: {sum(counts.values())} sent, statuses {dict(sorted(counts.items()))}")
    assert "internal error" not in caplog.text.lower() and "Traceback" not in caplog.text


# ---- slow, idle and many clients ---------------------------------------------------------

def raw_connection(server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_status(sock: socket.socket) -> int | None:
    """The status of the answer on `sock`, or None if it was closed without one."""
    try:
        head = sock.recv(4096)
    except (ConnectionError, socket.timeout):
        return None
    return int(head.split()[1]) if head.startswith(b"HTTP/1.1") else None


def test_slow_and_silent_clients_are_cut_off_while_others_are_served(keyed_server):
    server, keys = keyed_server
    slow_heads = [raw_connection(server) for _ in range(40)]
    for sock in slow_heads:
        sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\n")  # and then nothing more
    silent = [raw_connection(server) for _ in range(20)]
    slow_bodies = [raw_connection(server) for _ in range(10)]
    for sock in slow_bodies:
        sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + keys["bob"].encode()
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"prompt\"")
    started = time.monotonic()
    with httpx.Client(base_url=server.url, headers=bearer(keys["bob"]), timeout=30) as http:
        served = [http.post("/v1/images/generations", json={"prompt": PROMPT}).status_code for _ in range(10)]
    assert served == [200] * 10  # the slow ones do not hold the server
    statuses = [read_status(sock) for sock in slow_heads + silent + slow_bodies]
    elapsed = time.monotonic() - started
    print(f"\nslow clients: {len(statuses)} cut off in {elapsed:.1f}s, statuses {sorted(set(map(str, statuses)))}")
    assert statuses == [408] * len(statuses)
    assert elapsed < 8  # 1 s deadlines; without them the reads above wait out their 10 s socket timeout
    for sock in slow_heads + silent + slow_bodies:
        sock.close()


def test_past_the_connection_limit_requests_get_503_and_then_recover(tmp_path):
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(max_connections=10, header_timeout_s=30))
    with BackgroundServer(app) as server:
        idle = [raw_connection(server) for _ in range(15)]
        time.sleep(0.2)
        refused = httpx.post(server.url + "/v1/images/generations", json={"prompt": PROMPT})
        assert refused.status_code == 503 and is_envelope(refused) and refused.headers["retry-after"] == "1"
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        assert httpx.post(server.url + "/v1/images/generations", json={"prompt": PROMPT}).status_code == 200


def test_a_flood_of_connections_gets_only_200_and_503_and_the_server_recovers():
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(max_queue_size=16, max_batch_size=8, rate_limit_burst=10**6))
    with BackgroundServer(app) as server:
        async def flood() -> dict:
            counts = {}
            limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as http:
                async def one(i: int) -> None:
                    check_answer(await http.post("/v1/images/generations", json={"prompt": PROMPT, "seed": i}), counts)
                await asyncio.gather(*(one(i) for i in range(400)))
            return counts
        counts = asyncio.run(flood())
        print(f"\nconnection flood: 400 concurrent, statuses {dict(sorted(counts.items()))}")
        assert set(counts) <= {200, 503} and counts.get(200, 0) >= 16 and counts.get(503, 0) > 0
        after = [httpx.post(server.url + "/v1/images/generations", json={"prompt": PROMPT}).status_code for _ in range(5)]
        assert after == [200] * 5


# ---- keys ---------------------------------------------------------------------------------

def protected_routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app routes, path parameters filled in, except the open ones."""
    routes = []
    for route in app.routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD" or route.path in OPEN_ROUTES:
                continue
            routes.append((method, route.path.replace("{model_id}", "tiny").replace("{image_name}", "x.png")))
    return routes


def test_every_route_but_health_refuses_missing_wrong_and_revoked_keys(keyed_server, caplog):
    server, keys = keyed_server
    caplog.set_level(logging.INFO)
    routes = protected_routes(server.server.config.app)
    assert {("GET", "/openapi.json"), ("GET", "/metrics"), ("POST", "/v1/chat/completions")} <= set(routes) and len(routes) == 6
    refusals = 0
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method, path in routes:
            body = {"json": {"prompt": PROMPT}} if method == "POST" else {}
            for headers in ({}, bearer("lmn-wrong-key"), bearer(keys["alice"]), {"Authorization": keys["bob"]}):
                response = http.request(method, path, headers=headers, **body)
                assert response.status_code == 401 and is_envelope(response), (method, path, headers, response.text)
                assert all(k not in response.text for k in keys.values())
                refusals += 1
            assert http.request(method, path, headers=bearer(keys["bob"]), **body).status_code != 401
        for path in ("/healthz", "/readyz", "/"):
            assert http.get(path).status_code == 200
        assert http.get("/v1/images/files/guessed.png").status_code == 404
    print(f"\nauth: {refusals} requests without a valid key over {len(routes)} routes, all 401")
    assert all(k not in caplog.text for k in keys.values())


def test_concurrent_abuse_from_one_key_does_not_starve_another(tmp_path):
    keys_file = tmp_path / "keys.json"
    mallory, bob, revoked = (create_key(keys_file, n) for n in ("mallory", "bob", "revoked"))
    revoke_key(keys_file, "revoked")
    app = create_app({"tiny": tiny_pipeline()}, ServeConfig(rate_limit_burst=5, rate_limit_per_minute=6), keys=KeyStore(keys_file))
    with BackgroundServer(app) as server:
        async def abuse() -> tuple[dict, dict, list[int]]:
            mallory_counts, revoked_counts = {}, {}
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                async def ask(key: str, counts: dict | None) -> int:
                    response = await http.post("/v1/images/generations", json={"prompt": PROMPT}, headers=bearer(key))
                    if counts is not None:
                        check_answer(response, counts)
                    return response.status_code
                floods = [ask(mallory, mallory_counts) for _ in range(150)] + [ask(revoked, revoked_counts) for _ in range(100)]
                results = await asyncio.gather(*floods, *(ask(bob, None) for _ in range(5)))
            return mallory_counts, revoked_counts, list(results[-5:])
        mallory_counts, revoked_counts, bob_statuses = asyncio.run(abuse())
    print(f"\nrate limit: mallory {dict(sorted(mallory_counts.items()))}, revoked {revoked_counts}, bob {bob_statuses}")
    assert mallory_counts.get(200, 0) <= 6 and mallory_counts.get(429, 0) >= 144  # the burst, perhaps one refill
    assert revoked_counts == {401: 100}
    assert bob_statuses == [200] * 5
