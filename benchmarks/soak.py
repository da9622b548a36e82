"""Soak benchmark for `limner serve`: mixed valid and hostile traffic, loopback only,
bounded in time and count.

Starts the server in a subprocess on 127.0.0.1 with API keys, a generator and a
captioner, then for `--minutes` runs `--workers` concurrent clients, each drawing
its next request from a weighted mix: valid generations (b64 and url, the link
then fetched), captions and model lists, next to malformed and nested JSON,
missing, wrong and revoked keys, oversize n, bodies and images, decompression
bombs, non-images, lone surrogates, blocked prompts, unknown models, one key
flooding past its rate limit, and slowloris connections that trickle a request
head. Each kind has the status it must get; anything else is counted as
unexpected. Prints requests, successes, 4xx by code, 5xx (target 0), unexpected
answers, the server's resident memory at start, peak and end, and the p50/p99
latency of the valid requests.

    python benchmarks/soak.py                  # 3 minutes
    python benchmarks/soak.py --minutes 10 --workers 32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from loopback import PROMPTS, RawConnection, ServerProcess, fresh_model, rss_mib
from PIL import Image

BLOCKED = "forbidden"


def fresh_captioner(folder: Path) -> Path:
    """A randomly initialised captioner of the default size over MiniLM's tokenizer."""
    from limner.models.captioner import Captioner, CaptionerConfig
    from limner.pipelines.image_to_text import ImageToTextPipeline
    from limner.text.caption_vocabulary import CaptionVocabulary, load_tokenizer

    tokenizer = load_tokenizer("all-MiniLM-L6-v2")
    captioner = Captioner(CaptionerConfig(vocabulary=CaptionVocabulary.collect(tokenizer, PROMPTS)))
    ImageToTextPipeline(captioner, "all-MiniLM-L6-v2", tokenizer=tokenizer).save_pretrained(folder)
    return folder


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def chat(raw: bytes, model: str = "captioner") -> dict:
    url = "data:image/png;base64," + base64.b64encode(raw).decode()
    return {"model": model, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}


class Traffic:
    """The request kinds: name -> (weight, valid?, expected statuses, coroutine factory)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.auth = {"Authorization": f"Bearer {keys['valid']}"}
        self.keys = keys
        picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
        self.good_png = png_bytes(picture)
        self.bomb = png_bytes(Image.new("RGB", (3000, 3000)))
        self.kinds = {
            "generate": (30, True, {200}, lambda c: self.generate(c, "b64_json")),
            "generate+url": (5, True, {200}, lambda c: self.generate(c, "url")),
            "caption": (8, True, {200}, lambda c: c.post_json("/v1/chat/completions", chat(self.good_png), self.auth)),
            "models": (4, True, {200}, lambda c: c.request("GET", "/v1/models", headers=self.auth)),
            "malformed json": (3, False, {400}, lambda c: c.request("POST", "/v1/images/generations", b'{"prompt": "a', self.json_auth)),
            "nested json": (2, False, {400}, lambda c: c.request("POST", "/v1/images/generations", b"[" * 20000 + b"]" * 20000, self.json_auth)),
            "no key": (3, False, {401}, lambda c: c.post_json("/v1/images/generations", {"prompt": PROMPTS[0]})),
            "wrong key": (3, False, {401}, lambda c: c.post_json("/v1/images/generations", {"prompt": PROMPTS[0]}, self.bearer("lmn-" + "x" * 40))),
            "revoked key": (3, False, {401}, lambda c: c.post_json("/v1/images/generations", {"prompt": PROMPTS[0]}, self.bearer(keys["revoked"]))),
            "n too large": (2, False, {400}, lambda c: c.post_json("/v1/images/generations", {"prompt": PROMPTS[0], "n": 10**6}, self.auth)),
            "oversize body": (2, False, {413}, lambda c: c.request("POST", "/v1/images/generations", b"[" + b"1," * 300_000 + b"1]", self.json_auth)),
            "image bomb": (2, False, {413}, lambda c: c.post_json("/v1/chat/completions", chat(self.bomb), self.auth)),
            "declared bomb": (2, False, {413}, lambda c: c.post_json("/v1/chat/completions", chat(png_declaring(90_000, 90_000)), self.auth)),
            "not an image": (2, False, {400}, lambda c: c.post_json("/v1/chat/completions", chat(b"%PDF-1.4 not a picture"), self.auth)),
            "lone surrogate": (2, False, {400}, lambda c: c.request("POST", "/v1/images/generations", b'{"prompt": "\\udfff"}', self.json_auth)),
            "blocked prompt": (2, False, {400}, lambda c: c.post_json("/v1/images/generations", {"prompt": f"a {BLOCKED} circle"}, self.auth)),
            "unknown model": (2, False, {404}, lambda c: c.post_json("/v1/images/generations", {"prompt": PROMPTS[0], "model": "nope"}, self.auth)),
            "unknown route": (2, False, {401}, lambda c: c.request("GET", "/admin/../../etc/passwd")),  # no key: nothing is told
            "path traversal": (2, False, {404}, lambda c: c.request("GET", "/v1/images/files/..%2f..%2fetc%2fpasswd.png")),
            "flooding key": (10, False, {200, 429}, lambda c: c.post_json("/v1/images/generations", {"prompt": PROMPTS[1]}, self.bearer(keys["flooder"]))),
        }

    @property
    def json_auth(self) -> dict:
        return {**self.auth, "Content-Type": "application/json"}

    @staticmethod
    def bearer(key: str) -> dict:
        return {"Authorization": f"Bearer {key}"}

    async def generate(self, connection: RawConnection, response_format: str):
        body = {"prompt": random.choice(PROMPTS), "n": random.choice((1, 1, 2, 4)), "response_format": response_format}
        status, headers, content = await connection.post_json("/v1/images/generations", body, self.auth)
        if status == 200 and response_format == "url":
            url = json.loads(content)["data"][0]["url"]
            status, headers, content = await connection.request("GET", "/" + url.split("://", 1)[1].split("/", 1)[1])
        return status, headers, content

    def pick(self) -> str:
        names = list(self.kinds)
        return random.choices(names, weights=[self.kinds[n][0] for n in names])[0]


async def slowloris(url: str, deadline: float, stats: dict) -> None:
    """Opens connections that send half a request head, one byte a second, until the server cuts them."""
    host, port = url.removeprefix("http://").split(":")

    async def one() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        try:
            for byte in b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                if time.monotonic() > deadline + 10:
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    answer = await asyncio.wait_for(reader.read(200), timeout=1.0)
                except asyncio.TimeoutError:
                    continue  # no answer yet: send the next byte
                status = answer.split()[1].decode() if answer.startswith(b"HTTP/1.1") else "closed"
                stats[f"slowloris cut off ({status})"] = stats.get(f"slowloris cut off ({status})", 0) + 1
                stats["slowloris longest s"] = round(max(stats.get("slowloris longest s", 0.0), time.monotonic() - started), 1)
                return
        except (ConnectionError, OSError):
            stats["slowloris cut off (reset)"] = stats.get("slowloris cut off (reset)", 0) + 1
            return
        finally:
            writer.close()
        stats["slowloris survived"] = stats.get("slowloris survived", 0) + 1

    while time.monotonic() < deadline:
        await asyncio.gather(*(one() for _ in range(20)))


async def soak(server: ServerProcess, traffic: Traffic, workers: int, seconds: float, max_requests: int) -> dict:
    host, port = server.url.removeprefix("http://").split(":")
    deadline = time.monotonic() + seconds
    statuses: dict[str, dict[str, int]] = {}
    unexpected: dict[str, int] = {}
    valid_latencies: list[float] = []
    memory = [rss_mib(server.process.pid)]
    extra: dict = {}
    sent = 0

    async def worker() -> None:
        nonlocal sent
        connection = RawConnection(host, int(port))
        while time.monotonic() < deadline and sent < max_requests:
            sent += 1
            kind = traffic.pick()
            _, valid, expected, make = traffic.kinds[kind]
            started = time.perf_counter()
            try:
                status, headers, _ = await make(connection)
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                status, headers = type(err).__name__, {}
                connection.close()
            elapsed = time.perf_counter() - started
            statuses.setdefault(kind, {})
            statuses[kind][str(status)] = statuses[kind].get(str(status), 0) + 1
            if status not in expected:
                unexpected[f"{kind} -> {status}"] = unexpected.get(f"{kind} -> {status}", 0) + 1
            if valid and status == 200:
                valid_latencies.append(elapsed)
            if headers.get("connection", "").lower() == "close":
                connection.close()
        connection.close()

    async def sample_memory() -> None:
        while time.monotonic() < deadline:
            memory.append(rss_mib(server.process.pid))
            await asyncio.sleep(1.0)

    await asyncio.gather(sample_memory(), slowloris(server.url, deadline, extra), *(worker() for _ in range(workers)))
    memory.append(rss_mib(server.process.pid))
    by_status: dict[str, int] = {}
    for counts in statuses.values():
        for status, count in counts.items():
            by_status[status] = by_status.get(status, 0) + count
    latency = np.array(valid_latencies) * 1000 if valid_latencies else np.array([float("nan")])
    return {
        "requests": sum(by_status.values()),
        "successes": sum(v for k, v in by_status.items() if k.startswith("2")),
        "4xx": {k: v for k, v in sorted(by_status.items()) if k.startswith("4")},
        "5xx": sum(v for k, v in by_status.items() if k.startswith("5")),
        "connection errors": sum(v for k, v in by_status.items() if not k.isdigit()),
        "unexpected": unexpected,
        "by kind": statuses,
        "valid p50 ms": round(float(np.percentile(latency, 50)), 1), "valid p99 ms": round(float(np.percentile(latency, 99)), 1),
        "rss MiB start/peak/end": [round(memory[0], 1), round(max(memory), 1), round(memory[-1], 1)],
        **extra,
    }


def create_keys(folder: Path) -> dict[str, str]:
    """A valid key with a generous limit of its own, a flooder held to the server's 60/min, a revoked key."""
    keys_file = folder / "keys.json"
    keys = {}
    own_limits = {"valid": ["--rate-limit-per-minute", "1000000", "--rate-limit-burst", "10000"], "flooder": [], "revoked": []}
    for name, limits in own_limits.items():
        output = subprocess.run([sys.executable, "-m", "limner.cli", "keys", "create", name, "--file", str(keys_file), *limits],
                                check=True, capture_output=True, text=True).stdout
        keys[name] = next(word for word in output.split() if word.startswith("lmn-"))
    subprocess.run([sys.executable, "-m", "limner.cli", "keys", "revoke", "revoked", "--file", str(keys_file)], check=True, capture_output=True)
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--output", default="outputs/benchmarks/soak.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        generator, captioner = fresh_model(scratch / "generator"), fresh_captioner(scratch / "captioner")
        keys = create_keys(scratch)
        config = {"api_keys_file": str(scratch / "keys.json"), "blocked_terms": [BLOCKED], "max_body_bytes": 512 * 1024,
                  "max_image_pixels": 1024 * 1024, "rate_limit_per_minute": 60, "rate_limit_burst": 10,
                  "header_timeout_s": 5, "max_batch_size": 32}
        server = ServerProcess({"shapes": generator, "captioner": captioner}, args.port, config)
        try:
            result = asyncio.run(soak(server, Traffic(keys), args.workers, args.minutes * 60, args.max_requests))
        finally:
            server.stop()
    print(json.dumps({k: v for k, v in result.items() if k != "by kind"}, indent=2))
    print(f"soak: {result['requests']} requests in {args.minutes:g} min, {result['successes']} succeeded, "
          f"5xx {result['5xx']}, unexpected {sum(result['unexpected'].values())}, valid p99 {result['valid p99 ms']} ms, "
          f"RSS MiB start/peak/end {'/'.join(map(str, result['rss MiB start/peak/end']))}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
