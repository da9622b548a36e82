"""What the server benchmarks share: a `limner serve` subprocess on loopback, a cheap
keep-alive HTTP/1.1 client, and the server's memory and CPU read from /proc."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from limner.pipelines import TextToImagePipeline

PROMPTS = [f"a {size} {color} {shape} in the {position}"
           for size in ("small", "large") for color in ("red", "green", "blue")
           for shape in ("circle", "square", "triangle") for position in ("top left", "center", "bottom right")]


def fresh_model(folder: Path) -> Path:
    """A randomly initialised generator of the shapes preset's size with the MiniLM encoder: the
    cost of serving depends on the architecture, not on what the weights learnt."""
    from limner.models import Generator
    from limner.training import build_train_config
    from limner.training.data import build_text_encoder

    config = build_train_config("shapes")
    encoder = build_text_encoder(config, PROMPTS)
    sentences = encoder.encode(PROMPTS).sentence
    generator_config, _ = config.model_configs(encoder.dim, sentences)
    generator = Generator(generator_config)
    generator.text_norm.fit(sentences)
    TextToImagePipeline(generator, encoder, truncation=config.truncation).save_pretrained(folder)
    return folder


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (a Ray server's cluster and replicas are its descendants)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def rss_mib(pid: int) -> float:
    """Resident memory of the process and its descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            lines = Path(f"/proc/{member}/status").read_text().splitlines()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in lines if line.startswith("VmRSS:"))
    return total / 1024 if total else float("nan")


class ServerProcess:
    """`limner serve` in a subprocess: `models` is a folder (served as "shapes") or {name: folder}."""

    def __init__(self, models: Path | dict[str, Path], port: int, config: dict, extra_args: tuple[str, ...] = ()) -> None:
        models = models if isinstance(models, dict) else {"shapes": models}
        self.config_file = Path(tempfile.mkstemp(suffix=".json")[1])
        self.config_file.write_text(json.dumps(config))
        self.port = port
        # the server's log (one access line per request) goes to a file: a pipe nobody reads fills up and stalls it
        self.log_file = Path(tempfile.mkstemp(suffix=".log")[1])
        with open(self.log_file, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "limner.cli", "serve", *(f"{name}={folder}" for name, folder in models.items()), "--port", str(port), "--config", str(self.config_file), *extra_args],
                stdout=subprocess.DEVNULL, stderr=log,
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("server exited: " + self.log_file.read_text()[-2000:])
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.config_file.unlink(missing_ok=True)
        self.log_file.unlink(missing_ok=True)


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client for one connection: JSON POST, status and body back.

    The clients share the server's two cores, so their cost is part of what is measured;
    this costs a fraction of a general client's CPU per request (httpx is `--client httpx`).
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return await self.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})

    async def request(self, method: str, path: str, payload: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{head}"
                          f"Content-Length: {len(payload)}\r\n\r\n".encode("latin-1") + payload)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            if headers.get("transfer-encoding", "").lower() == "chunked":  # Ray's proxy answers its own 503s so
                content = await self._read_chunks()
            else:
                content = await self.reader.readexactly(int(headers.get("content-length", 0)))
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, content

    async def _read_chunks(self) -> bytes:
        """A chunked body: hex size lines, each followed by that many bytes, up to a zero size."""
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # the blank line after the last chunk (no trailers sent)
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process and its live descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
