"""One typed, frozen settings object for the whole application.

Sources, later ones winning: the defaults embedded here (so no file is needed), a TOML file
(``--config PATH`` or ``$MOODLIFT_CONFIG``), then environment variables
``MOODLIFT_<SECTION>_<KEY>`` (e.g. ``MOODLIFT_TELEGRAM_TOKEN``) for secrets and deployment values.

Everything is validated at load: a bad value raises :class:`ConfigError` naming the key, the
value and what was expected, and an unknown key is an error too (a typo must not silently fall
back to a default). ``config.example.toml`` documents every setting.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import platformdirs
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from core.errors import ConfigError
from data.catalog_sources import SourceSpec, parse_source

log = logging.getLogger(__name__)

ENV_PREFIX = "MOODLIFT_"
CONFIG_ENV = "MOODLIFT_CONFIG"
APP_NAME = "moodlift"
_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


class Secret:
    """A string that never shows itself in repr/str, so settings can be logged safely."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """The real value, for the one place that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def _check(expect: str, test: typing.Callable[[Any], bool]) -> dict[str, Any]:
    """Field metadata: an extra check on the converted value, with what it expects."""
    return {"check": test, "expect": expect}


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_database_url(value: str) -> bool:
    try:
        make_url(value)
    except ArgumentError:
        return False
    return True


# scheme://user:PASSWORD@ (the scheme may be missing in a malformed value), up to the last "@":
# a password with an unescaped "@" is hidden whole, and at worst more than the password is.
_URL_PASSWORD = re.compile(r"^(?P<head>(?:[^:/?#@]*://)?[^:/?#@]*:(?!//)).*@", re.DOTALL)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)


def masked_url(url: str) -> str:
    """``url`` fit for a message or a log: its password (in the user part or a ``password=``
    query parameter) shown as ``***``. Works on text that does not parse as a URL too."""
    shown = _URL_PASSWORD.sub(r"\g<head>***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\g<head>***", shown)


def _is_url_path(value: str) -> bool:
    return value.startswith("/") and not urlsplit(value).netloc and " " not in value


_URL = _check("an http(s) URL", _is_http_url)
_POSITIVE = _check("a number > 0", lambda v: v > 0)


@dataclass(frozen=True)
class DatabaseSettings:
    # Any SQLAlchemy async URL; None means a SQLite file in paths.data_dir.
    url: str | None = field(
        default=None,
        metadata={
            **_check("a SQLAlchemy URL such as sqlite+aiosqlite:///path", _is_database_url),
            "shown": masked_url,  # in messages: the password never
        },
    )
    echo: bool = False
    busy_timeout_ms: int = field(default=5000, metadata=_check("an integer >= 0", lambda v: v >= 0))

    def __repr__(self) -> str:
        """The dataclass repr, with the URL's password masked (settings get logged)."""
        shown = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}
        if self.url is not None:
            shown["url"] = masked_url(self.url)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


DEFAULT_CATALOG_SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec(
        "https://raw.githubusercontent.com/cristobalvch/Spotify-Machine-Learning/"
        "331baac02bf8fdf5223d79e964b1ca7bbae066c7/data/data_moods.csv",
        "84a74565cfb41385aef2896a8ed6b0b41ec7ff83e7332749db136a1de3133117",
    ),
    SourceSpec(
        "https://raw.githubusercontent.com/Arpitarane1910/Spotify-Hit-Predictor/"
        "8e655233e4ab42d3960be032339ed133177c41d5/dataset-of-10s.csv",
        "480879d2d3a0a979cef6a70ebfcd72fd46ea71043b9df2145891bee89e06035b",
    ),
)


@dataclass(frozen=True)
class CatalogSettings:
    sources: tuple[SourceSpec, ...] = DEFAULT_CATALOG_SOURCES
    import_if_empty: bool = True
    download_timeout: float = field(default=60.0, metadata=_POSITIVE)
    # Model moods below this confidence are kept but not served (labels always are). At 0.6 the
    # served soft_vote_gp, out of fold on the labelled tracks (README, "Song moods"): 83.7 % ->
    # 87.3 % right, 86.3 % of predictions kept (labelled 2010s tracks: 78.5 % -> 83.0 %, 84.4 %).
    min_mood_confidence: float = field(
        default=0.6, metadata=_check("a number from 0 to 1", lambda v: 0.0 <= v <= 1.0)
    )


@dataclass(frozen=True)
class TelegramSettings:
    token: Secret | None = None
    api_url: str = field(default="https://api.telegram.org/bot", metadata=_URL)
    file_url: str = field(default="https://api.telegram.org/file/bot", metadata=_URL)
    poll_timeout: int = field(default=30, metadata=_check("an integer >= 0", lambda v: v >= 0))
    # "webhook": Telegram POSTs updates to webhook_url (several instances behind a proxy).
    mode: Literal["polling", "webhook"] = "polling"
    webhook_listen: str = "127.0.0.1"
    webhook_port: int = field(
        default=8080, metadata=_check("a port from 0 to 65535", lambda v: 0 <= v <= 65535)
    )
    webhook_path: str = field(
        default="/telegram", metadata=_check("a URL path starting with /", _is_url_path)
    )
    webhook_url: str | None = field(default=None, metadata=_URL)  # the public URL
    webhook_secret: Secret | None = field(
        default=None,
        metadata=_check(
            "1 to 256 characters A-Z, a-z, 0-9, _ and - (Telegram's secret_token)",
            lambda v: re.fullmatch(r"[A-Za-z0-9_-]{1,256}", v.get()) is not None,
        ),
    )


@dataclass(frozen=True)
class DiscordSettings:
    token: Secret | None = None
    test_guild_id: int | None = field(  # a Discord snowflake: a positive id
        default=None, metadata=_check("a server id (an integer > 0)", lambda v: v > 0)
    )
    ephemeral: bool = False
    # Sharding (very large bots): unset runs one connection, 0 as many shards as Discord
    # recommends, N that many; shard_ids are the ones this instance runs (default all).
    shard_count: int | None = field(
        default=None, metadata=_check("an integer >= 0", lambda v: v >= 0)
    )
    shard_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SpotifySettings:
    client_id: Secret | None = None
    client_secret: Secret | None = None
    api_url: str = field(default="https://api.spotify.com/v1/", metadata=_URL)
    token_url: str = field(default="https://accounts.spotify.com/api/token", metadata=_URL)
    oembed_url: str = field(default="https://open.spotify.com/oembed", metadata=_URL)
    timeout: float = field(default=5.0, metadata=_POSITIVE)


MAX_IMAGE_BYTES = 20 * 1024 * 1024  # what Telegram's cloud Bot API lets a bot download
MAX_PIXELS = 40_000_000  # a 48 MP phone photo is over; phones save 12 MP by default


@dataclass(frozen=True)
class LimitsSettings:
    max_image_bytes: int = field(default=MAX_IMAGE_BYTES, metadata=_POSITIVE)
    max_pixels: int = field(default=MAX_PIXELS, metadata=_POSITIVE)
    photos_per_minute: int = field(default=6, metadata=_POSITIVE)
    actions_per_minute: int = field(default=40, metadata=_POSITIVE)
    queue_size: int = field(default=32, metadata=_POSITIVE)
    workers: int = field(default=2, metadata=_POSITIVE)


@dataclass(frozen=True)
class RecommenderSettings:
    default_mode: Literal["lift", "match"] = "lift"


@dataclass(frozen=True)
class PathsSettings:
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    cache_dir: Path = field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)))


@dataclass(frozen=True)
class ModelsSettings:
    emotion_path: Path = _MODELS_DIR / "emotion.tflite"
    faces_dir: Path = _MODELS_DIR / "faces"
    music_path: Path = _MODELS_DIR / "music_mood.joblib"


@dataclass(frozen=True)
class LoggingSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    catalog: CatalogSettings = field(default_factory=CatalogSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    discord: DiscordSettings = field(default_factory=DiscordSettings)
    spotify: SpotifySettings = field(default_factory=SpotifySettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    recommender: RecommenderSettings = field(default_factory=RecommenderSettings)
    paths: PathsSettings = field(default_factory=PathsSettings)
    models: ModelsSettings = field(default_factory=ModelsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    source: Path | None = field(default=None, compare=False)  # the TOML file read, if any

    @property
    def database_url(self) -> str:
        """The configured URL, or the default SQLite file in the data directory."""
        if self.database.url:
            return self.database.url
        # Rendered by SQLAlchemy, so a %, ? or # in the path is escaped, not read as URL syntax.
        file = self.paths.data_dir / "moodlift.sqlite3"
        return URL.create("sqlite+aiosqlite", database=str(file)).render_as_string()


_SECTIONS: dict[str, type] = {
    name: tp for name, tp in typing.get_type_hints(Settings).items() if name != "source"
}


# ---------------------------------------------------------------------------------------------
# conversion


def _expected(tp: Any) -> str:
    if get_origin(tp) in (types.UnionType, typing.Union):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return f"{_expected(inner[0])} (or empty for none)"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(tp))
    if get_origin(tp) is tuple and get_args(tp)[0] is int:
        return "a list of integers (comma-separated in the environment)"
    if get_origin(tp) is tuple:
        return "a list of LOCATION[#sha256=HEX] (comma-separated in the environment)"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Path: "a path",
        Secret: "a string",
    }.get(tp, str(tp))


class _Invalid(ValueError):
    """A value that does not fit; the caller adds the key and the value."""


def _convert(tp: Any, value: Any, *, from_env: bool, base: Path | None) -> Any:
    if get_origin(tp) in (types.UnionType, typing.Union):
        inner = next(a for a in get_args(tp) if a is not type(None))
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return _convert(inner, value, from_env=from_env, base=base)
    if get_origin(tp) is Literal:
        choices = get_args(tp)
        if isinstance(value, str):
            for choice in choices:
                if value.strip().lower() == str(choice).lower():
                    return choice
        raise _Invalid
    if get_origin(tp) is tuple and get_args(tp)[0] is int:
        if from_env and isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            raise _Invalid
        return tuple(_convert(int, v, from_env=from_env, base=base) for v in value)
    if get_origin(tp) is tuple:
        if from_env:
            if not isinstance(value, str):
                raise _Invalid
            value = [part for part in value.split(",") if part.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _Invalid
        try:
            specs = tuple(parse_source(v) for v in value)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None
        return tuple(_relative_source(s, base) for s in specs)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        raise _Invalid
    if tp is int:
        if isinstance(value, bool):
            raise _Invalid
        if isinstance(value, int):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Invalid from None
        raise _Invalid
    if tp is float:
        if isinstance(value, bool):
            raise _Invalid
        if isinstance(value, int | float):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise _Invalid from None
        raise _Invalid
    if tp in (str, Secret, Path):
        if not isinstance(value, str) or not value.strip():
            raise _Invalid
        if tp is Secret:
            return Secret(value.strip())
        if tp is Path:
            path = Path(value.strip()).expanduser()
            return path if path.is_absolute() or base is None else (base / path)
        return value.strip()
    raise TypeError(f"no conversion for {tp!r}")  # a programming error, not a user one


def _relative_source(spec: SourceSpec, base: Path | None) -> SourceSpec:
    """Relative local sources in a file are relative to that file, like every other path."""
    if spec.is_url or base is None or Path(spec.location).expanduser().is_absolute():
        return spec
    return SourceSpec(str(base / spec.location), spec.sha256)


def _section(
    cls: type, name: str, values: Mapping[str, Any], *, from_env: bool, base: Path | None
) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    converted: dict[str, Any] = {}
    for key, raw in values.items():
        where = f"{ENV_PREFIX}{name.upper()}_{key.upper()}" if from_env else f"{name}.{key}"
        if key not in fields:
            known = ", ".join(fields)
            raise ConfigError(f"unknown setting {where}; [{name}] has: {known}")
        tp = hints[key]
        try:
            value = _convert(tp, raw, from_env=from_env, base=base)
        except _Invalid as bad:
            detail = f" ({bad})" if str(bad) else ""
            shown = _show(raw, tp, fields[key])
            raise ConfigError(
                f"{where} = {shown} is invalid: expected {_expected(tp)}{detail}"
            ) from None
        check = fields[key].metadata.get("check")
        if value is not None and check is not None and not check(value):
            shown = _show(raw, tp, fields[key])
            raise ConfigError(
                f"{where} = {shown} is invalid: expected {fields[key].metadata['expect']}"
            )
        converted[key] = value
    return converted


def _show(raw: Any, tp: Any, where: dataclasses.Field[Any]) -> str:
    """The offending value for a message: masked whole when the key holds a secret, in part
    where its field says how (``shown``: a database URL's password)."""
    secret = tp is Secret or Secret in get_args(tp)
    if secret:
        return "'**********'"
    shown = where.metadata.get("shown")
    return repr(shown(raw) if shown is not None and isinstance(raw, str) else raw)


# ---------------------------------------------------------------------------------------------
# loading


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """The file to read: the ``--config`` flag, else ``$MOODLIFT_CONFIG``, else none."""
    if explicit:
        return Path(explicit).expanduser()
    from_env = env.get(CONFIG_ENV, "").strip()
    return Path(from_env).expanduser() if from_env else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _holds_secrets(data: Mapping[str, Any]) -> bool:
    """Whether a config file sets a token, key or password: a value that :func:`_show` would
    mask in a message (a ``Secret`` setting, a database URL's password)."""
    for name, values in data.items():
        section = _SECTIONS.get(name)
        if section is None or not isinstance(values, dict):
            continue
        hints = typing.get_type_hints(section)
        fields = {f.name: f for f in dataclasses.fields(section)}
        if any(
            key in fields and _show(raw, hints[key], fields[key]) != repr(raw)
            for key, raw in values.items()
        ):
            return True
    return False


def _warn_if_exposed(path: Path) -> None:
    """A token in a file others can read is a leaked token; say so (but still start)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "config file %s is readable by other users (mode %o); "
            "keep tokens in the environment or chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )


def load_settings(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Build the settings from defaults, the TOML file (if any) and the environment.

    ``env`` defaults to ``os.environ``; tests pass their own mapping.
    """
    env = os.environ if env is None else env
    file = config_path(path, env)
    sections: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}

    if file is not None:
        data = _read_file(file)
        if _holds_secrets(data):  # a copy of the example file, readable by all, is fine
            _warn_if_exposed(file)
        base = file.resolve().parent
        for name, values in data.items():
            if name not in _SECTIONS:
                raise ConfigError(
                    f"unknown section [{name}] in {file}; known: {', '.join(_SECTIONS)}"
                )
            if not isinstance(values, dict):
                raise ConfigError(f"{name} in {file} must be a [{name}] table")
            sections[name].update(
                _section(_SECTIONS[name], name, values, from_env=False, base=base)
            )

    for key in sorted(env):
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        rest = key[len(ENV_PREFIX) :].lower()
        name = next((s for s in _SECTIONS if rest.startswith(s + "_")), None)
        if name is None:
            continue  # another tool's variable (e.g. MOODLIFT_SHARED_DATA for the tests)
        setting = rest[len(name) + 1 :]
        sections[name].update(
            _section(_SECTIONS[name], name, {setting: env[key]}, from_env=True, base=None)
        )

    built = {name: _SECTIONS[name](**values) for name, values in sections.items()}
    return Settings(**built, source=file)
