"""The HTTP boundary: httpx's errors and statuses become :mod:`core.artwork.outcomes`.

One place decides what a status means for the cache and the breaker: 200 is an answer,
400/404/410 "no such thing" (cached), 429 a cool-down, anything else a failure.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from core.artwork.guard import retry_after_seconds
from core.artwork.outcomes import ArtworkError, Failed, NoArt, RateLimited

GONE = frozenset({400, 404, 410})


@contextmanager
def translated(upstream: str) -> Iterator[None]:
    """Turn httpx's transport errors (timeouts, refused connections...) into :class:`Failed`."""
    try:
        yield
    except httpx.TimeoutException:
        raise Failed(f"{upstream}: timed out") from None
    except httpx.HTTPError as error:  # connect, read, protocol, too many redirects...
        raise Failed(f"{upstream}: {type(error).__name__}") from None


def check_status(upstream: str, status: int, headers: Any) -> None:
    """Raise what a non-200 status means; ``headers`` is any mapping with ``get``."""
    if status == 200:
        return
    if status == 429:
        raise RateLimited(upstream, retry_after_seconds(headers.get("Retry-After")))
    if status in GONE:
        raise NoArt(f"{upstream}: HTTP {status}")
    raise Failed(f"{upstream}: HTTP {status}")


async def get_json(
    client: httpx.AsyncClient, upstream: str, url: str, params: dict[str, str], max_bytes: int
) -> dict[str, Any]:
    """GET a JSON object, refusing oversize or malformed bodies."""
    with translated(upstream):
        async with client.stream("GET", url, params=params) as response:
            check_status(upstream, response.status_code, response.headers)
            body = await read_limited(response, max_bytes, upstream)
    try:
        data = json.loads(body)
    except ValueError:
        raise Failed(f"{upstream}: malformed JSON") from None
    if not isinstance(data, dict):
        raise Failed(f"{upstream}: JSON is not an object")
    return data


async def read_limited(
    response: httpx.Response,
    max_bytes: int,
    upstream: str,
    too_big: type[ArtworkError] = Failed,
) -> bytes:
    """The body, or ``too_big`` as soon as it passes ``max_bytes`` (never read it all)."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big(f"{upstream}: body of {declared} bytes is over {max_bytes}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > max_bytes:
            raise too_big(f"{upstream}: body over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def is_http_url(value: object) -> bool:
    """A string that is an absolute http(s) URL, the only kind of art URL we follow."""
    if not isinstance(value, str) or len(value) > 500:  # the column holds 500
        return False
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        return False
    return url.scheme in ("http", "https") and bool(url.host)
