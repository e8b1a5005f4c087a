"""Song catalog sources: fetch a CSV (local path or pinned URL) and read it into plain rows.

Two published formats are understood, told apart by their header:

* ``data_moods.csv`` (cristobalvch/Spotify-Machine-Learning): ``id`` + audio features + ``mood``;
* the "Spotify Hit Predictor" decade files (``dataset-of-10s.csv``): ``uri`` + audio features,
  no mood.

Bad rows (missing or malformed id, non-numeric feature, unknown mood) are reported with file and
line and skipped, so one broken line never blocks an import. This module knows nothing of the
database; ``core.catalog`` stores what it reads.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx
from tqdm import tqdm

from data.music import AUDIO_COLUMNS, default_music_dir

log = logging.getLogger(__name__)

_TRACK_ID = re.compile(r"^[0-9A-Za-z]{22}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

INT_FEATURES: tuple[str, ...] = ("key", "time_signature")
# The audio features both files carry, as the song-mood model reads them; the duration is read
# apart (the files name it differently).
FLOAT_FEATURES: tuple[str, ...] = tuple(
    c for c in AUDIO_COLUMNS if c not in INT_FEATURES and c != "duration_ms"
)


class SourceError(Exception):
    """A catalog source cannot be fetched or is not a catalog file."""


class SourceUnavailable(SourceError):
    """The file is missing, or the server refused or could not be reached."""


class ChecksumMismatch(SourceError):
    """The fetched bytes are not the pinned ones: the upstream file changed or was tampered with."""

    def __init__(self, location: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{location}: SHA-256 mismatch (expected {expected}, got {actual}); "
            "the file is not the pinned version"
        )
        self.location = location
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class SourceSpec:
    """Where a catalog file is, and optionally the SHA-256 it must have.

    Written as ``LOCATION`` or ``LOCATION#sha256=HEX`` (the pip-style fragment), where LOCATION
    is a local path or an http(s) URL.
    """

    location: str
    sha256: str | None = None

    @property
    def is_url(self) -> bool:
        return urlsplit(self.location).scheme in ("http", "https")

    @property
    def name(self) -> str:
        """The file name, used in reports and as the rows' ``source``."""
        if self.is_url:
            return unquote(urlsplit(self.location).path.rsplit("/", 1)[-1]) or self.location
        return Path(self.location).name

    def __str__(self) -> str:
        return f"{self.location}#sha256={self.sha256}" if self.sha256 else self.location


def parse_source(text: str) -> SourceSpec:
    """Parse ``LOCATION[#sha256=HEX]``; raises ValueError on a malformed pin."""
    text = text.strip()
    if not text:
        raise ValueError("empty catalog source")
    location, sep, fragment = text.partition("#")
    if not sep:
        return SourceSpec(location)
    key, _, digest = fragment.partition("=")
    digest = digest.strip().lower()
    if key.strip().lower() != "sha256" or not _SHA256.match(digest):
        raise ValueError(f"bad pin {fragment!r} in {text!r}; expected #sha256=<64 hex digits>")
    return SourceSpec(location.strip(), digest)


@dataclass(frozen=True)
class TrackRow:
    """One song as read from a catalog file; ``mood`` is None where the file has no label."""

    id: str
    name: str
    artist: str
    album: str | None
    release_date: str | None
    popularity: int | None
    duration_ms: int | None
    danceability: float
    energy: float
    valence: float
    acousticness: float
    instrumentalness: float
    liveness: float
    speechiness: float
    loudness: float
    tempo: float
    key: int
    mode: int | None
    time_signature: int
    mood: str | None
    source: str


@dataclass(frozen=True)
class RowIssue:
    """A skipped row: where it is and why."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class ReadResult:
    """What one file yielded."""

    source: str
    format: str  # "moods" | "hits"
    rows: list[TrackRow] = field(default_factory=list)
    issues: list[RowIssue] = field(default_factory=list)


class _BadRow(ValueError):
    pass


def _text(record: dict[str, str], column: str, *, required: bool = True) -> str | None:
    value = (record.get(column) or "").strip()
    if not value and required:
        raise _BadRow(f"missing {column}")
    return value or None


def _float(record: dict[str, str], column: str) -> float:
    raw = (record.get(column) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        raise _BadRow(f"{column} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise _BadRow(f"{column} is not a finite number: {raw!r}")
    return value


def _int(record: dict[str, str], column: str) -> int:
    value = _float(record, column)
    if not value.is_integer():
        raise _BadRow(f"{column} is not a whole number: {record.get(column)!r}")
    return int(value)


def _track_id(value: str | None, column: str) -> str:
    if not value:
        raise _BadRow(f"missing {column}")
    track_id = value.rsplit(":", 1)[-1] if column == "uri" else value
    if column == "uri" and not value.startswith("spotify:track:"):
        raise _BadRow(f"uri is not a spotify:track: URI: {value!r}")
    if not _TRACK_ID.match(track_id):
        raise _BadRow(f"{column} is not a 22-character Spotify id: {value!r}")
    return track_id


def _features(record: dict[str, str]) -> dict[str, float | int]:
    values: dict[str, float | int] = {c: _float(record, c) for c in FLOAT_FEATURES}
    values.update({c: _int(record, c) for c in INT_FEATURES})
    return values


def _moods_row(record: dict[str, str], source: str, moods: Collection[str]) -> TrackRow:
    label = (record.get("mood") or "").strip().lower()
    if label not in moods:
        raise _BadRow(f"unknown mood {record.get('mood')!r}; expected one of {', '.join(moods)}")
    return TrackRow(
        id=_track_id(_text(record, "id", required=False), "id"),
        name=_text(record, "name") or "",
        artist=_text(record, "artist") or "",
        album=_text(record, "album", required=False),
        release_date=_text(record, "release_date", required=False),
        popularity=_int(record, "popularity") if record.get("popularity") else None,
        duration_ms=_int(record, "length") if record.get("length") else None,
        mode=None,
        mood=label,
        source=source,
        **_features(record),  # type: ignore[arg-type]
    )


def _hits_row(record: dict[str, str], source: str, moods: Collection[str]) -> TrackRow:
    return TrackRow(
        id=_track_id(_text(record, "uri", required=False), "uri"),
        name=_text(record, "track") or "",
        artist=_text(record, "artist") or "",
        album=None,
        release_date=None,
        popularity=None,
        duration_ms=_int(record, "duration_ms") if record.get("duration_ms") else None,
        mode=_int(record, "mode"),
        mood=None,
        source=source,
        **_features(record),  # type: ignore[arg-type]
    )


_FORMATS = {
    "moods": ({"id", "name", "artist", "mood", *FLOAT_FEATURES, *INT_FEATURES}, _moods_row),
    "hits": ({"uri", "track", "artist", "mode", *FLOAT_FEATURES, *INT_FEATURES}, _hits_row),
}


def read_catalog(path: Path, *, moods: Collection[str], source: str | None = None) -> ReadResult:
    """Read a catalog CSV; ``moods`` are the labels a mood column may hold (case-insensitive)."""
    source = source or path.name
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SourceUnavailable(f"{path}: cannot open ({exc.strerror or exc})") from None
    with handle:
        reader = csv.DictReader(handle)
        header = {name.strip() for name in reader.fieldnames or ()}
        fmt = next((name for name, (need, _) in _FORMATS.items() if need <= header), None)
        if fmt is None:
            raise SourceError(
                f"{path}: not a known catalog format (need the data_moods.csv or the "
                f"dataset-of-10s.csv columns; found {', '.join(sorted(header)) or 'no header'})"
            )
        build = _FORMATS[fmt][1]
        result = ReadResult(source=source, format=fmt)
        try:
            for record in reader:
                record = {(k or "").strip(): v for k, v in record.items()}
                try:
                    result.rows.append(build(record, source, moods))
                except _BadRow as bad:
                    result.issues.append(RowIssue(source, reader.line_num, str(bad)))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise SourceError(f"{path}:{reader.line_num}: unreadable CSV ({exc})") from None
    for issue in result.issues:
        log.warning("skipped %s", issue)
    return result


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def local_copy_dirs() -> tuple[Path, ...]:
    """Folders that may hold copies of the published catalog files: the shared data folder
    (``$MOODLIFT_SHARED_DATA/music``, else ``../shared/data/music`` beside the clone)."""
    return (default_music_dir(),)


def fetch(
    spec: SourceSpec,
    cache_dir: Path,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    local_copies: Sequence[Path] | None = None,
) -> Path:
    """A local file for ``spec``: the path itself, or a verified download in ``cache_dir``.

    A pinned URL is downloaded once and reused while its bytes still match the pin; an unpinned
    URL is downloaded every time (nothing tells a stale copy from a fresh one). Before
    downloading a pinned URL, a file of the same name in ``local_copies`` (by default
    :func:`local_copy_dirs`) whose bytes match the pin is used instead: it *is* the pinned file,
    so a machine that has one starts offline with the whole catalog.
    """
    if not spec.is_url:
        path = Path(spec.location).expanduser()
        if not path.is_file():
            where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
            raise SourceUnavailable(f"{path}: no such file{where}")
        if spec.sha256:
            actual = sha256_of(path)
            if actual != spec.sha256:
                raise ChecksumMismatch(str(path), spec.sha256, actual)
        return path

    cache_dir.mkdir(parents=True, exist_ok=True)
    url_key = hashlib.sha256(spec.location.encode()).hexdigest()[:16]
    target = cache_dir / f"{url_key}-{spec.name}"
    if spec.sha256 and target.is_file() and sha256_of(target) == spec.sha256:
        log.info("using cached %s", target)
        return target
    folders = local_copy_dirs() if local_copies is None else local_copies
    if not spec.sha256:
        log.warning("%s has no #sha256= pin; its content is not verified", spec.location)
    else:
        for folder in folders:
            copy = folder / spec.name
            try:
                same = copy.is_file() and sha256_of(copy) == spec.sha256
            except OSError as exc:  # unreadable here: the download is still there
                log.info("cannot read %s (%s); downloading instead", copy, exc)
                same = False
            if same:
                log.info("using %s: the pinned file of %s", copy, spec.location)
                return copy
    try:
        _download(spec, target, progress=progress, timeout=timeout)
    except SourceUnavailable as error:
        if not (spec.sha256 and folders):
            raise
        # Say where a copy was looked for too: a wrong MOODLIFT_SHARED_DATA is otherwise silent.
        places = ", ".join(str(folder) for folder in folders)
        raise SourceUnavailable(f"{error}; no copy with its pin in {places} either") from None
    return target


def _download(spec: SourceSpec, target: Path, *, progress: bool, timeout: float) -> None:
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".part-", suffix=target.suffix)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as out,
            httpx.stream("GET", spec.location, follow_redirects=True, timeout=timeout) as response,
        ):
            if response.status_code != 200:
                raise SourceUnavailable(
                    f"{spec.location}: HTTP {response.status_code} {response.reason_phrase}"
                )
            total = int(response.headers.get("content-length") or 0) or None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=spec.name,
                disable=not progress,
                leave=False,
            ) as bar:
                for chunk in response.iter_bytes(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        actual = digest.hexdigest()
        if spec.sha256 and actual != spec.sha256:
            raise ChecksumMismatch(spec.location, spec.sha256, actual)
        tmp.replace(target)
        log.info("downloaded %s to %s", spec.location, target)
    except httpx.HTTPError as exc:
        raise SourceUnavailable(f"{spec.location}: download failed ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)
