"""A local fake of the Spotify endpoints the artwork code uses, over real HTTP on 127.0.0.1.

One threaded ``http.server`` (so spotipy's blocking calls and httpx both talk to it, and it
works from ``asyncio.run`` as well as inside a test's loop) serves:

- ``GET /oembed?url=https://open.spotify.com/track/<id>`` — oEmbed;
- ``POST /api/token`` — client credentials (checks the Basic header);
- ``GET /v1/tracks/<id>`` — the Web API (checks the bearer token);
- ``GET /img/<name>`` — pictures.

Each answer is a :class:`Canned` set per track id / picture (default: 404), so a test can
make any route succeed, 404, 429 with Retry-After, 500, stall or send garbage; a list of them
is answered in turn (the last one repeats). Every request is recorded in
:attr:`FakeSpotify.requests` as ``(method, route, key)``, with its time in :attr:`times`.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image

CLIENT_ID = "fake-client-id"
CLIENT_SECRET = "fake-client-secret"
ACCESS_TOKEN = "fake-access-token"
TRACK_URL = "https://open.spotify.com/track/"


@dataclass
class Canned:
    """One answer: status, body, headers, and how long to stall before sending it."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def as_json(data: Any, status: int = 200, **kwargs: Any) -> Canned:
    return Canned(status, json.dumps(data).encode(), **kwargs)


def jpeg(side: int = 64, colour: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, "JPEG")
    return buffer.getvalue()


NOT_FOUND = as_json({"error": {"status": 404, "message": "Not found"}}, 404)


class FakeSpotify:
    """The fake server; ``url`` is its base (``http://127.0.0.1:<port>``)."""

    def __init__(self) -> None:
        self.oembed: dict[str, Canned | list[Canned]] = {}
        self.tracks: dict[str, Canned | list[Canned]] = {}
        self.images: dict[str, Canned] = {}
        self.token: Canned = as_json(
            {"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": 3600}
        )
        self.requests: list[tuple[str, str, str]] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- what tests set up ---------------------------------------------------------------------

    @property
    def oembed_url(self) -> str:
        return f"{self.url}/oembed"

    @property
    def api_url(self) -> str:
        return f"{self.url}/v1/"

    @property
    def token_url(self) -> str:
        return f"{self.url}/api/token"

    def image_url(self, name: str) -> str:
        return f"{self.url}/img/{name}"

    def picture(self, name: str, data: bytes | None = None) -> str:
        """Serve a real JPEG at ``/img/<name>``; returns its URL."""
        self.images[name] = Canned(200, data or jpeg(), "image/jpeg")
        return self.image_url(name)

    def oembed_found(
        self, track_id: str, picture: str, title: str = "A Song", delay: float = 0.0
    ) -> str:
        """oEmbed knows ``track_id``, with a real picture; returns the picture's URL."""
        url = self.picture(picture)
        self.oembed[track_id] = as_json(
            {"type": "rich", "title": title, "thumbnail_url": url, "provider_name": "Spotify"},
            delay=delay,
        )
        return url

    def track_found(self, track_id: str, picture: str, name: str = "A Song") -> str:
        """The Web API knows ``track_id`` with album images (640 first, as Spotify lists)."""
        images = [
            {"url": self.picture(f"{picture}-{side}", jpeg(side)), "width": side, "height": side}
            for side in (640, 300, 64)
        ]
        self.tracks[track_id] = as_json(
            {
                "id": track_id,
                "name": name,
                "artists": [{"name": "An Artist"}],
                "album": {"name": "An Album", "images": images},
            }
        )
        return str(images[0]["url"])

    def count(self, route: str | None = None) -> int:
        with self._lock:
            return sum(1 for _, r, _ in self.requests if route is None or r == route)

    # -- the server ----------------------------------------------------------------------------

    def _record(self, method: str, route: str, key: str) -> None:
        with self._lock:
            self.requests.append((method, route, key))
            self.times.append(time.monotonic())

    def _next(self, answers: dict[str, Canned | list[Canned]], key: str) -> Canned:
        with self._lock:
            answer = answers.get(key, NOT_FOUND)
            if isinstance(answer, list):
                return answer.pop(0) if len(answer) > 1 else answer[0]
            return answer

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/oembed":
                    target = parse_qs(parts.query).get("url", [""])[0]
                    key = target.removeprefix(TRACK_URL)
                    fake._record("GET", "oembed", key)
                    if not target.startswith(TRACK_URL):
                        return self._send(as_json({"error": "bad url"}, 400))
                    return self._send(fake._next(fake.oembed, key))
                if parts.path.startswith("/v1/tracks/"):
                    key = parts.path.removeprefix("/v1/tracks/")
                    fake._record("GET", "tracks", key)
                    if self.headers.get("Authorization") != f"Bearer {ACCESS_TOKEN}":
                        return self._send(as_json({"error": {"status": 401}}, 401))
                    return self._send(fake._next(fake.tracks, key))
                if parts.path.startswith("/img/"):
                    key = parts.path.removeprefix("/img/")
                    fake._record("GET", "img", key)
                    return self._send(fake.images.get(key, Canned(404, b"no", "text/plain")))
                fake._record("GET", "other", parts.path)
                return self._send(NOT_FOUND)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                fake._record("POST", "token", "")
                basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
                if urlsplit(self.path).path != "/api/token":
                    return self._send(NOT_FOUND)
                if self.headers.get("Authorization") != f"Basic {basic}":
                    return self._send(as_json({"error": "invalid_client"}, 400))
                return self._send(fake.token)

            def _send(self, canned: Canned) -> None:
                if canned.delay:
                    time.sleep(canned.delay)
                try:
                    self.send_response(canned.status)
                    self.send_header("Content-Type", canned.content_type)
                    self.send_header("Content-Length", str(len(canned.body)))
                    for name, value in canned.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(canned.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test): nothing to tell it

        return Handler

    def start(self) -> FakeSpotify:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def fake_spotify() -> Iterator[FakeSpotify]:
    server = FakeSpotify().start()
    try:
        yield server
    finally:
        server.stop()
