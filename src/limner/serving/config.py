"""Server settings: limits, batching, keys. Round-trips through JSON like every limner config."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from limner.errors import ConfigError

LOOPBACK_NAMES = ("localhost",)
PROMPT_LOGGING = ("off", "hashed", "plain")


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_keys_file: str | None = None     # JSON written by `limner keys create`; required beyond loopback
    # request limits
    max_images_per_request: int = 10     # OpenAI's own ceiling for `n`
    max_prompt_chars: int = 1000
    allowed_sizes: tuple[str, ...] = ()  # "WxH"; empty: the model's own resolution and 256, 512, 1024 squares
    max_body_bytes: int = 4 * 1024 * 1024  # a base64 image for captioning is the largest thing a client sends
    max_image_pixels: int = 4096 * 4096  # decoded size limit for uploaded images (decompression bombs)
    request_timeout_s: float = 30.0      # queue and model time of one request
    # slow and idle clients (slowloris): each must send its request head and body within these
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_timeout_s: float = 5.0    # an idle keep-alive connection is closed after this
    max_connections: int = 1000          # beyond it, requests get 503 and their connections are closed
    # per-key rate limit: a token bucket of `rate_limit_burst` requests refilled at this rate
    rate_limit_per_minute: float = 600.0
    rate_limit_burst: int = 60
    blocked_terms: tuple[str, ...] = ()  # prompts containing any of these (case-insensitive) are refused
    # prompts whose meaning is near one of these are refused too, in any words (limner.text.policy): each
    # phrase of the prompt against each concept, by the cosine of denied_concept_encoder's sentence vectors
    denied_concepts: tuple[str, ...] = ()
    denied_concept_threshold: float = 0.63  # chosen on a development set: benchmarks/prompt_policy.py
    denied_concept_encoder: str = "all-MiniLM-L6-v2"
    # dynamic batching: concurrent requests share one generator call
    batching: bool = True
    max_batch_size: int = 64             # images per generator call
    batch_wait_timeout_s: float = 0.01   # how long the first request waits for company
    max_queue_size: int = 256            # waiting requests; beyond it, 503 with Retry-After
    # generated images kept for `response_format: url`
    stored_images: int = 1024
    stored_image_ttl_s: float = 3600.0
    # prompt logging to the "limner.prompts" logger: "off" (logs never carry prompts or image
    # bytes), "hashed" (an HMAC-SHA256 of each prompt keyed by prompt_log_salt: equal prompts can
    # be counted and matched, not read) or "plain"
    log_prompts: str = "off"
    prompt_log_salt: str = ""            # this deployment's own secret, 16 characters or more (e.g. `openssl rand -hex 16`)

    def __post_init__(self) -> None:
        positive = ("port", "max_images_per_request", "max_prompt_chars", "max_body_bytes", "max_image_pixels",
                    "request_timeout_s", "header_timeout_s", "body_timeout_s", "keep_alive_timeout_s",
                    "max_connections", "rate_limit_per_minute", "rate_limit_burst", "max_batch_size",
                    "max_queue_size", "stored_images", "stored_image_ttl_s")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 < self.denied_concept_threshold <= 1:
            raise ConfigError(f"denied_concept_threshold is a cosine in (0, 1], got {self.denied_concept_threshold}")
        if self.batch_wait_timeout_s < 0:
            raise ConfigError(f"batch_wait_timeout_s must be 0 or more, got {self.batch_wait_timeout_s}")
        for size in self.allowed_sizes:
            parse_size(size)
        if self.log_prompts not in PROMPT_LOGGING:
            raise ConfigError(f"log_prompts must be one of {PROMPT_LOGGING}, got {self.log_prompts!r}")
        if self.log_prompts == "hashed" and len(self.prompt_log_salt) < 16:
            raise ConfigError('log_prompts "hashed" needs prompt_log_salt: a secret of this deployment, 16 characters or more '
                              "(a short or shared salt lets anyone hash guesses and match them)")

    @property
    def loopback_only(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name we cannot vouch for


def parse_size(size: str) -> tuple[int, int]:
    """ "256x256" -> (256, 256); anything else is a ConfigError naming it."""
    width, sep, height = str(size).lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) <= 0 or int(height) <= 0:
        raise ConfigError(f"size must look like 256x256, got {size!r}")
    return int(width), int(height)
