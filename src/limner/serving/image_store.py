"""Generated PNGs kept for a while so `response_format: url` can point at them.

Each image gets a 128-bit random id: the URL is a capability (whoever holds it
may fetch it, as with the signed links of hosted APIs), it cannot be guessed, and
it expires. The store is bounded in count and age, so it cannot grow without end.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict


class ImageStore:
    def __init__(self, max_images: int, ttl_seconds: float, *, clock=time.monotonic) -> None:
        self.max_images = max_images
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._images: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, png: bytes) -> str:
        image_id = secrets.token_urlsafe(16)
        with self._lock:
            self._expire()
            self._images[image_id] = (self.clock(), png)
            while len(self._images) > self.max_images:
                self._images.popitem(last=False)
        return image_id

    def get(self, image_id: str) -> bytes | None:
        with self._lock:
            self._expire()
            entry = self._images.get(image_id)
            return entry[1] if entry else None

    def __len__(self) -> int:
        return len(self._images)

    def _expire(self) -> None:
        cutoff = self.clock() - self.ttl_seconds
        while self._images and next(iter(self._images.values()))[0] < cutoff:
            self._images.popitem(last=False)
