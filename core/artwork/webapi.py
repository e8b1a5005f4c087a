"""The Spotify Web API through spotipy: album images from a single ``/tracks/{id}``.

spotipy is synchronous, so each call runs in a small thread pool of its own (a slow Spotify
never takes the threads the photo pipeline needs). Its own retries are off — one
``requests.Session`` with no retry adapter, ``retries=0``, ``status_retries=0`` — so a 429 comes
back to us with its ``Retry-After`` and our :class:`Guard` decides, not urllib3 sleeping in a
thread. The token URL is set on the credentials *instance*; the class keeps Spotify's.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from core.artwork.guard import Guard, Pacer, retry_after_seconds
from core.artwork.http import GONE, is_http_url
from core.artwork.outcomes import Failed, Found, NoArt, RateLimited
from core.config import SpotifySettings

if TYPE_CHECKING:  # spotipy and requests are imported only when credentials are configured
    import requests
    import spotipy

log = logging.getLogger(__name__)

_OAUTH_ERROR = re.compile(r"[a-z_]{1,40}")  # RFC 6749's error codes: invalid_client, ...

CARD_SIZE = 640


def best_image(images: object) -> str | None:
    """The album image closest to the card's 640 px (Spotify lists 640, 300 and 64)."""
    if not isinstance(images, list):
        return None
    usable = [
        image for image in images if isinstance(image, dict) and is_http_url(image.get("url"))
    ]
    if not usable:
        return None

    def distance(image: dict[str, Any]) -> float:
        width = image.get("width")
        return abs(width - CARD_SIZE) if isinstance(width, int) else CARD_SIZE

    return str(min(usable, key=distance)["url"])


class WebApi:
    """Single-track lookups with client credentials (none configured: no instance at all)."""

    name = "webapi"

    def __init__(
        self,
        spotify: spotipy.Spotify,
        guard: Guard,
        pace: Pacer | None = None,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self.spotify = spotify
        self.guard = guard
        self.pace = pace
        self._session = session
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="moodlift-spotify")

    @classmethod
    def from_settings(
        cls, settings: SpotifySettings, guard: Guard, pace: Pacer | None = None
    ) -> WebApi | None:
        """A client when both credentials are set, else None (oEmbed and drawn cards only)."""
        if not (settings.client_id and settings.client_secret):
            return None
        import requests
        import spotipy
        from spotipy.cache_handler import MemoryCacheHandler

        # spotipy logs request headers (the Basic credentials, the bearer token) at DEBUG and
        # every 404 at ERROR; our own log lines say what happened, without secrets.
        logging.getLogger("spotipy").setLevel(logging.CRITICAL)
        session = requests.Session()  # plain adapters: no urllib3 retries, no sleeping
        timeout = (min(settings.timeout, 2.0), settings.timeout)
        auth = spotipy.SpotifyClientCredentials(
            client_id=settings.client_id.get(),
            client_secret=settings.client_secret.get(),
            requests_session=session,
            requests_timeout=timeout,
            cache_handler=MemoryCacheHandler(),  # never a .cache file in the working directory
        )
        auth.OAUTH_TOKEN_URL = settings.token_url
        spotify = spotipy.Spotify(
            auth_manager=auth,
            requests_session=session,
            requests_timeout=timeout,
            retries=0,
            status_retries=0,
        )
        spotify.prefix = (
            settings.api_url if settings.api_url.endswith("/") else settings.api_url + "/"
        )
        return cls(spotify, guard, pace, session=session)

    async def find(self, track_id: str) -> Found:
        """The album art for ``track_id``; raises :class:`NoArt` or an :class:`Unavailable`."""
        return await self.guard.call(lambda: self._ask(track_id), self.pace)

    async def call(self, method: str, *args: Any) -> Any:
        """Any spotipy method, off the event loop and with errors translated."""
        import requests
        from spotipy.exceptions import SpotifyException, SpotifyOauthError

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._executor, lambda: getattr(self.spotify, method)(*args)
            )
        except SpotifyException as error:
            status = error.http_status
            if status == 429:
                headers = error.headers or {}
                raise RateLimited(
                    self.name, retry_after_seconds(headers.get("Retry-After"))
                ) from None
            if status in GONE:
                raise NoArt(f"{self.name}: HTTP {status}") from None
            raise Failed(f"{self.name}: HTTP {status}") from None
        except SpotifyOauthError as error:
            # The token endpoint said no (bad credentials, or it is down). Its OAuth error code
            # ("invalid_client") is logged; a body that is no such code (spotipy passes on an
            # HTML page, a proxy's echo of the request) is not.
            code = error.error if _OAUTH_ERROR.fullmatch(str(error.error)) else "unexpected answer"
            raise Failed(f"{self.name}: token request refused ({code})") from None
        except requests.Timeout:
            raise Failed(f"{self.name}: timed out") from None
        except requests.RequestException as error:
            raise Failed(f"{self.name}: {type(error).__name__}") from None
        except (ValueError, KeyError, TypeError):  # e.g. a token answer that is not JSON
            raise Failed(f"{self.name}: malformed answer") from None

    async def _ask(self, track_id: str) -> Found:
        data = await self.call("track", track_id)
        if not isinstance(data, dict):  # spotipy answers None for a body that is not JSON
            raise Failed(f"{self.name}: malformed JSON")
        album = data.get("album")
        if not isinstance(album, dict):
            raise Failed(f"{self.name}: track without an album object")
        url = best_image(album.get("images"))
        if url is None:
            raise NoArt(f"{self.name}: no album image for {track_id}")
        artists = data.get("artists")
        names = [a["name"] for a in artists or () if isinstance(a, dict) and "name" in a]
        return Found(
            url,
            self.name,
            title=data.get("name") if isinstance(data.get("name"), str) else None,
            artist=", ".join(names) or None,
            album=album.get("name") if isinstance(album.get("name"), str) else None,
        )

    def close(self) -> None:
        """Let calls in flight end by their own timeouts; accept no new ones."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._session is not None:
            self._session.close()
