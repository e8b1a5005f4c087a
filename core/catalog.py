"""Import catalog files into ``tracks``, idempotently, and assign moods from a model.

Upsert by Spotify id. A labelled row sets the track's mood (a human label beats a model's
guess); an unlabelled row never touches the mood, so re-importing the unlabelled file keeps
labels and model moods alike. Known metadata is never erased by a file that lacks it (the hit
predictor file has no album, for instance).

:func:`classify_catalog` gives every track without a label the song-mood model's mood, its
confidence and the model's version; re-running it with the same model changes nothing, and
after a model change it re-assigns exactly the model's tracks.

Each source imported in full gets a row in ``catalog_imports``, in the transaction that stored
its tracks: :func:`ensure_catalog` imports at start-up the configured sources without one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import CatalogError
from core.moods import MOODS, check_mood
from core.store import Store
from core.store.schema import CatalogImport, Track, utcnow
from data.catalog_sources import (
    ReadResult,
    RowIssue,
    SourceError,
    SourceSpec,
    SourceUnavailable,
    TrackRow,
    fetch,
    parse_source,
    read_catalog,
    sha256_of,
)

if TYPE_CHECKING:
    from core.config import Settings
    from models.music_mood import MusicMoodModel

log = logging.getLogger(__name__)

_BATCH = 500
_MOOD_COLUMNS = ("mood", "mood_source", "mood_confidence", "mood_model_version")
_CONFIDENCE_TOLERANCE = 1e-9  # float noise between runs is not a change


@dataclass(frozen=True)
class ImportReport:
    """What one source did to the catalog."""

    source: str
    format: str
    rows: int  # good rows read
    inserted: int
    updated: int  # already in the catalog: their details refreshed from the file (a label wins)
    duplicates: int  # repeated ids inside the file (the last one wins)
    issues: tuple[RowIssue, ...] = field(default_factory=tuple)

    @property
    def skipped(self) -> int:
        return len(self.issues)


@dataclass(frozen=True)
class MoodPrediction:
    """A model's mood for one track."""

    track_id: str
    mood: str
    confidence: float


@dataclass(frozen=True)
class ClassifyReport:
    """What one ``classify`` run did; a re-run with the same model has ``changed == 0``."""

    model_version: str
    considered: int  # tracks without a label (model moods and tracks waiting for one)
    assigned: int  # had no mood, got one
    mood_changed: int  # the model's mood changed
    rescored: int  # same mood, new confidence or model version
    unchanged: int

    @property
    def changed(self) -> int:
        return self.assigned + self.mood_changed + self.rescored


def parse_sources(texts: Sequence[str]) -> list[SourceSpec]:
    """Catalog sources as typed (a path or URL, optionally ``#sha256=...``); a malformed one is
    a :class:`CatalogError` naming it."""
    try:
        return [parse_source(text) for text in texts]
    except ValueError as bad:
        raise CatalogError(str(bad)) from None


async def import_sources(
    store: Store,
    sources: Sequence[SourceSpec],
    cache_dir: Path,
    *,
    progress: bool = False,
    download_timeout: float = 60.0,
) -> list[ImportReport]:
    """Fetch (download or open) and import each source in turn, each in one transaction that
    also records the import (see :func:`record_import`)."""
    reports = []
    for spec in sources:
        try:
            path = await asyncio.to_thread(
                fetch, spec, cache_dir, progress=progress, timeout=download_timeout
            )
            read, digest = await asyncio.to_thread(_read, spec, path)
        except SourceError as exc:  # incl. ChecksumMismatch: the message says what to do
            raise CatalogError(str(exc)) from None
        async with store.sessions() as session:
            report = await import_rows(session, read.rows, source=read.source, format=read.format)
            report = replace(report, issues=tuple(read.issues))
            await record_import(session, report, sha256=digest)
            await session.commit()
        log.info(
            "%s: %d rows, %d new, %d already in the catalog, %d skipped",
            report.source,
            report.rows,
            report.inserted,
            report.updated,
            report.skipped,
        )
        reports.append(report)
    return reports


def _read(spec: SourceSpec, path: Path) -> tuple[ReadResult, str]:
    """The file's rows and the SHA-256 of its content (a pinned one: ``fetch`` checked it)."""
    read = read_catalog(path, moods=MOODS, source=spec.name)
    try:
        return read, spec.sha256 or sha256_of(path)
    except OSError as exc:
        raise SourceUnavailable(f"{path}: cannot read ({exc.strerror or exc})") from None


async def record_import(session: AsyncSession, report: ImportReport, *, sha256: str) -> None:
    """Record in the caller's transaction that ``report.source`` was imported in full (a row of
    ``catalog_imports``; an import of the same source again replaces it)."""
    values: dict[str, object] = {
        "source": report.source,
        "sha256": sha256,
        "rows_read": report.rows,
        "inserted": report.inserted,
        "updated": report.updated,
        "skipped": report.skipped,
        "imported_at": utcnow(),
    }
    dialect = session.bind.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        await session.merge(CatalogImport(**values))
        await session.flush()
        return
    table: Table = CatalogImport.__table__  # type: ignore[assignment]
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(table).values(values)
    update_ = {name: statement.excluded[name] for name in values if name != "source"}
    await session.execute(
        statement.on_conflict_do_update(index_elements=[table.c.source], set_=update_)
    )


async def ensure_catalog(
    settings: Settings, store: Store, *, progress: bool = False
) -> list[ImportReport]:
    """At start-up: import the configured sources not imported yet (all of them into an
    empty catalog; when ``catalog.import_if_empty`` allows), then give tracks still waiting for a
    mood the model's, so a fresh install serves them all.

    A source counts as imported once it has an import record (:func:`imported_sources`),
    written in the transaction that stored its tracks, so a start after a failed one imports
    just the sources still missing, and an imported one is never read again, whatever became
    of its tracks' ``source``, until its ``#sha256=`` pin changes. One that cannot be fetched
    does not stop the others: the tracks imported are classified, then a :class:`CatalogError`
    names what failed. A missing or broken model is logged, not fatal: labelled tracks can
    still be served.
    """
    reports: list[ImportReport] = []
    failures: list[str] = []
    if settings.catalog.import_if_empty:
        sources = settings.catalog.sources
        recorded = await imported_sources(store, [spec.name for spec in sources])
        missing = [spec for spec in sources if not _is_current(spec, recorded)]
        if missing:
            log.info(
                "importing %d of %d catalog source(s): %s",
                len(missing),
                len(sources),
                ", ".join(spec.name for spec in missing),
            )
        for spec in missing:
            try:
                reports += await import_sources(
                    store,
                    [spec],
                    settings.paths.cache_dir,
                    progress=progress,
                    download_timeout=settings.catalog.download_timeout,
                )
            except CatalogError as error:
                failures.append(str(error))
    counts = await store.catalog_counts()
    if counts.unassigned:
        try:
            model = await load_music_model(settings.models.music_path)
        except CatalogError as error:
            log.warning("%d tracks stay without a mood: %s", counts.unassigned, error)
        else:
            await classify_catalog(store, model)
    if failures:
        raise CatalogError("; ".join(failures))
    return reports


def _is_current(spec: SourceSpec, recorded: dict[str, str | None]) -> bool:
    """Imported, and with the pinned content if the source is pinned: a new ``#sha256=`` pin
    means a new version of the file, to be imported again (idempotently). A record without a
    hash (made by migration 0003) is taken as current: its content is not known."""
    if spec.name not in recorded:
        return False
    digest = recorded[spec.name]
    if spec.sha256 and digest and digest != spec.sha256:
        log.info("%s: its pin changed since it was imported; importing it again", spec.name)
        return False
    return True


async def imported_sources(store: Store, names: Iterable[str]) -> dict[str, str | None]:
    """Which of ``names`` (:attr:`SourceSpec.name`) were imported in full, each with the SHA-256
    of the content imported (None if not known): those with a row in ``catalog_imports``, by the
    start-up import or ``moodlift catalog import``.

    Not the tracks' ``source``: a track keeps the source it was first imported from, or last
    labelled by, so a source all of whose tracks are in another file too may name none. (A
    database made before the table got a row for each source its tracks named, migration 0003.)
    """
    wanted = set(names)
    if not wanted:
        return {}
    async with store.sessions() as session:
        found = await session.execute(
            select(CatalogImport.source, CatalogImport.sha256).where(
                CatalogImport.source.in_(wanted)
            )
        )
        return {source: digest for source, digest in found}


async def load_music_model(path: Path) -> MusicMoodModel:
    """Load the song-mood model off the event loop; a bad file becomes a :class:`CatalogError`."""
    from models.music_mood import ModelArtifactError, MusicMoodModel  # sklearn: import on use

    try:
        return await asyncio.to_thread(MusicMoodModel.load, path)
    except ModelArtifactError as error:
        raise CatalogError(str(error)) from None


async def classify_catalog(store: Store, model: MusicMoodModel) -> ClassifyReport:
    """(Re-)assign ``model``'s mood to every track without a label, in one transaction.

    Only rows whose mood, confidence or model version would change are written, so a re-run
    with the same model reports (and does) nothing; labels are never read nor touched.
    """
    from models.music_features import RAW_FEATURES

    table: Table = Track.__table__  # type: ignore[assignment]
    current = (table.c.mood, table.c.mood_confidence, table.c.mood_model_version)
    columns = [table.c.id, *current, *(table.c[name] for name in RAW_FEATURES)]
    unlabelled = or_(table.c.mood_source.is_(None), table.c.mood_source == "model")
    async with store.sessions() as session:
        rows = (await session.execute(select(*columns).where(unlabelled))).all()
        features = [dict(zip(RAW_FEATURES, row[4:], strict=True)) for row in rows]
        predicted = await asyncio.to_thread(_predict, model, features)
        counts = {"assigned": 0, "mood_changed": 0, "rescored": 0, "unchanged": 0}
        changes = []
        for row, (mood, confidence) in zip(rows, predicted, strict=True):
            kind = _change(row[1], row[2], row[3], mood, confidence, model.version)
            counts[kind] += 1
            if kind != "unchanged":
                changes.append(MoodPrediction(row[0], mood, confidence))
        await assign_moods(session, changes, model.version)
        await session.commit()
    report = ClassifyReport(model.version, len(rows), **counts)
    log.info(
        "model %s: %d tracks without a label, %d newly assigned, %d changed mood, "
        "%d re-scored, %d unchanged",
        report.model_version,
        report.considered,
        report.assigned,
        report.mood_changed,
        report.rescored,
        report.unchanged,
    )
    return report


def _predict(model: MusicMoodModel, features: list[dict[str, object]]) -> list[tuple[str, float]]:
    """One thread: a catalog is a small batch, and BLAS/OpenMP threads fighting a busy CPU
    turned a 0.3 s prediction of 6,400 tracks into 7 s (measured)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return model.predict(features)


def _change(
    mood: str | None,
    confidence: float | None,
    version: str | None,
    new_mood: str,
    new_confidence: float,
    new_version: str,
) -> str:
    if mood is None:
        return "assigned"
    if mood != new_mood:
        return "mood_changed"
    same_score = confidence is not None and abs(confidence - new_confidence) <= (
        _CONFIDENCE_TOLERANCE
    )
    return "unchanged" if same_score and version == new_version else "rescored"


async def import_rows(
    session: AsyncSession, rows: Iterable[TrackRow], *, source: str = "", format: str = ""
) -> ImportReport:
    """Upsert ``rows`` into ``tracks`` in the caller's transaction."""
    unique: dict[str, TrackRow] = {}
    count = 0
    for row in rows:
        count += 1
        unique[row.id] = row
    ids = list(unique)
    existing: set[str] = set()
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        existing.update(await session.scalars(select(Track.id).where(Track.id.in_(chunk))))

    table: Table = Track.__table__  # type: ignore[assignment]
    now = utcnow()
    values = [_values(row, now) for row in unique.values()]
    dialect = session.bind.dialect.name
    for start in range(0, len(values), _BATCH):
        batch = values[start : start + _BATCH]
        labelled = [v for v in batch if v["mood"] is not None]
        unlabelled = [v for v in batch if v["mood"] is None]
        if labelled:
            await _upsert(session, dialect, table, labelled, keep_mood=False)
        if unlabelled:
            await _upsert(session, dialect, table, unlabelled, keep_mood=True)
    return ImportReport(
        source=source,
        format=format,
        rows=count,
        inserted=len(ids) - len(existing),
        updated=len(existing),
        duplicates=count - len(ids),
    )


_ROW_FIELDS = tuple(f.name for f in fields(TrackRow))


def _values(row: TrackRow, now: object) -> dict[str, object]:
    values = {name: getattr(row, name) for name in _ROW_FIELDS}  # asdict() deep-copies: slow
    values["mood_source"] = "label" if row.mood is not None else None
    values["imported_at"] = now
    return values


async def _upsert(
    session: AsyncSession, dialect: str, table: Table, batch: list[dict[str, object]], *,
    keep_mood: bool,
) -> None:  # fmt: skip
    if dialect not in ("sqlite", "postgresql"):
        for values in batch:  # portable, slower path for other backends
            existing = await session.get(Track, values["id"])
            if existing is None:
                session.add(Track(**values))
                continue
            for column, value in values.items():
                if keep_mood and column in _MOOD_COLUMNS:
                    continue
                if value is not None or column in _MOOD_COLUMNS:
                    setattr(existing, column, value)
        await session.flush()
        return
    insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = insert(table)  # executed with a parameter list: compiled once, sent in bulk
    excluded = statement.excluded
    updates: dict[str, object] = {}
    for column in table.columns:
        if column.name in ("id", "art_url", "art_checked_at"):
            continue
        if keep_mood and column.name == "source":
            continue  # a track keeps the source it was first (or last labelled) from
        if column.name in _MOOD_COLUMNS:
            if not keep_mood:
                updates[column.name] = excluded[column.name]
        else:
            updates[column.name] = func.coalesce(excluded[column.name], column)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[table.c.id], set_=updates), batch
    )


async def assign_moods(
    session: AsyncSession, predictions: Iterable[MoodPrediction], model_version: str
) -> int:
    """Store a model's moods; tracks with a human label keep it. Returns tracks updated."""
    params = [
        {
            "b_id": p.track_id,
            "b_mood": check_mood(p.mood),
            "b_confidence": float(p.confidence),
        }
        for p in predictions
    ]
    if not params:
        return 0
    table: Table = Track.__table__  # type: ignore[assignment]
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .where(table.c.mood_source.is_(None) | (table.c.mood_source == "model"))
        .values(
            mood=bindparam("b_mood"),
            mood_source="model",
            mood_confidence=bindparam("b_confidence"),
            mood_model_version=model_version,
        )
    )
    result = await session.execute(statement, params)  # one statement, executed in bulk
    changed = result.rowcount  # type: ignore[attr-defined]
    if changed is None or changed < 0:  # asyncpg reports no count for a bulk execution
        changed = await _count_model_moods(session, [p["b_id"] for p in params])
    log.info("model %s assigned moods to %d tracks", model_version, changed)
    return changed


async def _count_model_moods(session: AsyncSession, ids: list[str]) -> int:
    """How many of ``ids`` hold a model mood: after :func:`assign_moods`, the ones it updated."""
    total = 0
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start : start + _BATCH]
        total += (
            await session.scalar(
                select(func.count()).where(Track.id.in_(chunk), Track.mood_source == "model")
            )
            or 0
        )
    return total
