"""Load benchmark for `limner serve`: loopback only, bounded in requests and time.

Starts the server in a subprocess on 127.0.0.1, then drives it with concurrent
clients in four phases, and prints for each: requests/s, images/s, p50/p95/p99
latency, status counts, the server's resident memory (start, peak, end) and the
CPU seconds of server and clients:

  1. batching on, `--clients` concurrent clients
  2. batching off, the same load
  3. overload: 10x the clients against a small queue (expect only 200, 429 and 503)
  4. recovery: right after the overload, on the same server, the load of phase 1

Before that it measures the offline pipeline (no HTTP) on batches of the same
size and shape (as many prompts, as many images per prompt), so the served
images/s can be read as a fraction of it. The clients run in this process, on
the same CPU as the server: by default a minimal keep-alive HTTP/1.1 client
(about 0.06 ms of CPU a request); `--client httpx` measures with httpx instead
(about 1.7 ms a request, a third of a core taken from the server at 200 req/s).

    python benchmarks/serve_load.py                       # a fresh shapes-preset generator
    python benchmarks/serve_load.py --model outputs/shapes --seconds 20
    python benchmarks/serve_load.py --engine ray --replicas 2      # the same app as 2 Ray Serve replicas

Memory and server CPU are summed over the server process and its descendants (under Ray: the
local cluster's processes and the replicas).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from loopback import PROMPTS, RawConnection, ServerProcess, fresh_model, rss_mib, server_cpu_seconds

from limner.pipelines import GenerationRequest, TextToImagePipeline
from limner.utils.images import to_pil


def offline_images_per_second(pipe: TextToImagePipeline, batch_size: int, images_per_request: int, seconds: float) -> float:
    """The pipeline alone on batches shaped like the server's: batch_size images in requests of
    images_per_request, each request its own prompt (so as many prompts to encode per batch)."""
    requests = [GenerationRequest(PROMPTS[i % len(PROMPTS)], images_per_request, seed=i) for i in range(batch_size // images_per_request)]
    to_pil(torch.cat(pipe.generate_batch(requests)))  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        to_pil(torch.cat(pipe.generate_batch(requests)))
        done += len(requests) * images_per_request
    return done / (time.perf_counter() - started)


async def drive(url: str, clients: int, images_per_request: int, seconds: float, max_requests: int, server_pid: int, client_kind: str) -> dict:
    latencies, statuses, images = [], {}, 0
    rss = lambda: rss_mib(server_pid)  # noqa: E731
    memory = [rss()]
    deadline = time.monotonic() + seconds
    sent = 0
    host, port = url.removeprefix("http://").split(":")

    async def post(connection, body: dict) -> tuple[int | str, dict]:
        try:
            if client_kind == "raw":
                status, headers, _ = await connection.post_json("/v1/images/generations", body)
                return status, headers
            response = await connection.post(url + "/v1/images/generations", json=body)
            return response.status_code, response.headers
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as err:
            return type(err).__name__, {}

    async def client(index: int, connection) -> None:
        nonlocal images, sent
        while time.monotonic() < deadline and sent < max_requests:
            sent += 1
            body = {"prompt": PROMPTS[(index + sent) % len(PROMPTS)], "n": images_per_request, "seed": sent}
            started = time.perf_counter()
            status, headers = await post(connection, body)
            elapsed = time.perf_counter() - started
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(elapsed)
                images += images_per_request
            elif status in (429, 503):
                await asyncio.sleep(min(1.0, float(headers.get("retry-after", 1))) * 0.1)

    async def sample_memory() -> None:
        while time.monotonic() < deadline:
            memory.append(rss())
            await asyncio.sleep(0.5)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    server_cpu, own_cpu = server_cpu_seconds(server_pid), sum(os.times()[:2])
    started = time.perf_counter()
    if client_kind == "raw":
        connections = [RawConnection(host, int(port)) for _ in range(clients)]
        await asyncio.gather(sample_memory(), *(client(i, c) for i, c in enumerate(connections)))
        for connection in connections:
            connection.close()
    else:
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            await asyncio.gather(sample_memory(), *(client(i, http) for i in range(clients)))
    wall = time.perf_counter() - started
    server_cpu, own_cpu = server_cpu_seconds(server_pid) - server_cpu, sum(os.times()[:2]) - own_cpu
    memory.append(rss())
    total = sum(statuses.values())
    lat = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "requests": total, "requests_per_s": round(total / wall, 1), "images_per_s": round(images / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1), "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "rss_mib_start": round(memory[0], 1), "rss_mib_peak": round(max(memory), 1), "rss_mib_end": round(memory[-1], 1),
        "seconds": round(wall, 1),
        "server_cpu_s": round(server_cpu, 1), "client_cpu_s": round(own_cpu, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model folder (default: a fresh shapes-preset generator)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--images-per-request", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="the server's max_batch_size and the offline batch")
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per phase")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="raw: a minimal keep-alive HTTP/1.1 client (little CPU); httpx: a general client")
    parser.add_argument("--engine", choices=("uvicorn", "ray"), default="uvicorn")
    parser.add_argument("--replicas", type=int, default=2, help="--engine ray: a fixed number of replicas (min = max)")
    parser.add_argument("--output", default="outputs/benchmarks/serve_load.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        model = Path(args.model) if args.model else fresh_model(Path(scratch) / "model")
        pipe = TextToImagePipeline.from_pretrained(model)
        offline = offline_images_per_second(pipe, args.batch_size, args.images_per_request, seconds=min(args.seconds, 10))
        del pipe
        print(f"offline pipeline, batch {args.batch_size} ({args.images_per_request} image(s) per prompt): {offline:.0f} images/s")
        results = {"engine": args.engine, "replicas": args.replicas if args.engine == "ray" else 1,
                   "offline_images_per_s": round(offline, 1), "batch_size": args.batch_size, "clients": args.clients,
                   "images_per_request": args.images_per_request}
        servers = [  # each server's settings, then the phases it runs in turn
            ({"batching": True}, [("batching on", args.clients)]),
            ({"batching": False}, [("batching off", args.clients)]),
            ({"batching": True, "max_queue_size": args.clients}, [("overload 10x", args.clients * 10), ("recovery", args.clients)]),
        ]
        for extra, phases in servers:
            config = {"max_batch_size": args.batch_size, "batch_wait_timeout_s": 0.005, "rate_limit_per_minute": 10**9,
                      "rate_limit_burst": 10**9, "max_queue_size": 4 * args.clients, "max_connections": 100_000, **extra}
            engine = (("--engine", "ray", "--min-replicas", str(args.replicas), "--max-replicas", str(args.replicas),
                       "--replica-cpus", str(round(2 / args.replicas, 2))) if args.engine == "ray" else ())
            server = ServerProcess(model, args.port, config, engine)
            try:
                for name, clients in phases:
                    result = asyncio.run(drive(server.url, clients, args.images_per_request, args.seconds, args.max_requests,
                                               server.process.pid, args.client))
                    result["fraction_of_offline"] = round(result["images_per_s"] / offline, 3)
                    results[name] = result
                    print(f"{name:<13} clients {clients:>4}: {result['requests_per_s']:>7} req/s {result['images_per_s']:>7} img/s "
                          f"({result['fraction_of_offline']:.0%} of offline)  p50/p95/p99 {result['p50_ms']}/{result['p95_ms']}/{result['p99_ms']} ms  "
                          f"statuses {result['statuses']}  RSS MiB start/peak/end {result['rss_mib_start']}/{result['rss_mib_peak']}/{result['rss_mib_end']}  "
                          f"CPU s server/clients {result['server_cpu_s']}/{result['client_cpu_s']}")
            finally:
                server.stop()
    server_errors = sum(v for r in results.values() if isinstance(r, dict) for k, v in r["statuses"].items()
                        if k.isdigit() and int(k) >= 500 and int(k) != 503)
    print(f"5xx other than 503 across all phases: {server_errors}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
