"""The ``moodlift`` command: database, catalog, a recommendation from the shell, training.

Every command returns an exit status; our own errors become one line on stderr (no traceback)
and a non-zero exit. Training and evaluation commands hand their arguments to the model
packages, imported only when asked for (TensorFlow is slow to import).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from core.config import Settings, load_settings
from core.errors import CatalogError, ConfigError, ModelFileError, MoodLiftError
from core.moods import EMOTIONS, MOODS, Mode

if TYPE_CHECKING:
    from core.store import CatalogCounts, Store

log = logging.getLogger(__name__)

_DELEGATES = {
    ("train", "emotion"): "models.train_emotion",
    ("train", "music"): "models.train_music",
    ("eval", "emotion"): "models.evaluate_emotion",
    ("eval", "music"): "models.evaluate_music",
}
_MAX_ISSUES_SHOWN = 20


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moodlift",
        description="Music Mood Lifter: a song for the mood on your face.",
    )
    parser.add_argument(
        "--config", metavar="PATH", help="TOML settings file (default: $MOODLIFT_CONFIG, if set)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    db = commands.add_parser("db", help="database schema (migrations)")
    db_commands = db.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = db_commands.add_parser("upgrade", help="upgrade the schema (to head by default)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_commands.add_parser("downgrade", help="downgrade the schema to REVISION")
    down.add_argument("revision", help='a revision id, "-1", or "base" to drop every table')
    db_commands.add_parser("current", help="show the schema revision of the database")

    catalog = commands.add_parser("catalog", help="the song catalog")
    catalog_commands = catalog.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = catalog_commands.add_parser("import", help="import catalog files (upsert by track id)")
    imp.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="a path or URL, optionally LOCATION#sha256=HEX (default: catalog.sources)",
    )
    catalog_commands.add_parser(
        "stats", help="tracks by mood and source (label, model, held back, waiting)"
    )
    catalog_commands.add_parser(
        "classify",
        help="give every track without a label the song-mood model's mood (idempotent; "
        "run after changing models.music_path)",
    )
    art = catalog_commands.add_parser(
        "art", help="look up album art ahead of time (resumable: checked tracks are skipped)"
    )
    art.add_argument("--limit", type=_positive(int), metavar="N", help="at most N tracks this run")
    art.add_argument(
        "--rate", type=_positive(float), default=5.0, help="requests per second at most (default 5)"
    )

    rec = commands.add_parser("recommend", help="pick a song for an emotion, as the bot would")
    rec.add_argument(
        "--user", required=True, type=_name, help="a local user name (kept in the database)"
    )
    rec.add_argument("--emotion", required=True, type=str.lower, choices=EMOTIONS)
    rec.add_argument("--mode", type=str.lower, choices=[m.value for m in Mode])

    run = commands.add_parser("run", help="run the bots that have a token")
    run.add_argument(
        "platforms",
        nargs="*",
        metavar="PLATFORM",
        help="telegram and/or discord (default: every platform with a token)",
    )

    analyze = commands.add_parser("analyze", help="read the faces in photos and pick a song")
    analyze.add_argument("photos", nargs="+", metavar="PHOTO", help="image files")
    analyze.add_argument("--json", action="store_true", help="one JSON object per file")
    analyze.add_argument(
        "--user", default="analyze", type=_name, help="the local user the songs go to"
    )

    for verb, helptext in (("train", "train a model"), ("eval", "evaluate a trained model")):
        sub = commands.add_parser(verb, help=f"{helptext} (arguments go to the model command)")
        sub.add_argument("model", choices=("emotion", "music"))
        sub.add_argument("args", nargs=argparse.REMAINDER, help="passed on; try: -- --help")
    return parser


def _name(text: str) -> str:
    """An argparse type: a user name, refused when blank (it would be a user nobody can name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("a user name cannot be blank")
    return text.strip()


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: ``kind`` of the text, refused unless > 0."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not > 0")
        return value

    return convert


def setup_logging(level: str) -> None:
    """Log to stderr at ``level``; Alembic's step-by-step chatter only when debugging."""
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if logging.getLevelName(level) > logging.DEBUG:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "eval"):
            return _delegate(args.command, args.model, args.args)
        settings = load_settings(args.config)
        setup_logging(settings.logging.level)
        handler = {
            "db": _db,
            "catalog": _catalog,
            "recommend": _recommend,
            "run": _run,
            "analyze": _analyze,
        }[args.command]
        return asyncio.run(handler(settings, args))
    except (MoodLiftError, ModelFileError, OSError) as error:
        # Ours, a model file that cannot be used, or the system's (a path, a port, a server
        # that does not answer): the message says what and where. The traceback, for the rare
        # OSError that is a bug, is logged at DEBUG (MOODLIFT_LOGGING_LEVEL=DEBUG).
        logging.getLogger(__name__).debug("the error in full", exc_info=True)
        print(f"moodlift: error: {str(error) or type(error).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("moodlift: interrupted", file=sys.stderr)
        return 130


def _delegate(verb: str, model: str, rest: list[str]) -> int:
    if rest[:1] == ["--"]:
        rest = rest[1:]
    module_name = _DELEGATES[(verb, model)]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        if missing.name != module_name:
            raise
        print(f"moodlift: error: {verb} {model} is not available ({module_name})", file=sys.stderr)
        return 1
    return int(module.main(list(rest)) or 0)


async def _db(settings: Settings, args: argparse.Namespace) -> int:
    from core.store import current_revision, downgrade, head_revision, upgrade
    from core.store.engine import normalize_url, sqlite_file

    url = settings.database_url
    if args.action == "upgrade":
        now = await upgrade(url, args.revision)
        print(f"database at revision {now}")
    elif args.action == "downgrade":
        now = await downgrade(url, args.revision)
        print(f"database at revision {now or 'base (empty)'}")
    else:
        head = head_revision()
        file = sqlite_file(normalize_url(url))
        if file is not None and not file.is_file():
            # Asking must not create it: a mistyped path would look like an empty database.
            print(f"no database at {file} yet (head is {head}); `moodlift db upgrade` makes one")
            return 0
        now = await current_revision(url)
        state = "up to date" if now == head else f"head is {head}"
        print(f"{now or 'base (empty)'} ({state})")
    return 0


async def _catalog(settings: Settings, args: argparse.Namespace) -> int:
    from core.catalog import classify_catalog, import_sources, load_music_model, parse_sources
    from core.store import Store

    store = await Store.open(settings)
    try:
        if args.action == "art":
            return await _catalog_art(settings, store, args)
        if args.action == "import":
            sources = parse_sources(args.sources) or list(settings.catalog.sources)
            reports = await import_sources(
                store,
                sources,
                settings.paths.cache_dir,
                progress=sys.stderr.isatty(),
                download_timeout=settings.catalog.download_timeout,
            )
            for report in reports:
                print(
                    f"{report.source}: {report.rows} rows, {report.inserted} new, "
                    f"{report.updated} already in the catalog, {report.duplicates} repeated ids, "
                    f"{report.skipped} skipped"
                )
                for issue in report.issues[:_MAX_ISSUES_SHOWN]:
                    print(f"  skipped {issue}", file=sys.stderr)
                if report.skipped > _MAX_ISSUES_SHOWN:
                    print(f"  ... and {report.skipped - _MAX_ISSUES_SHOWN} more", file=sys.stderr)
        if args.action == "classify":
            model = await load_music_model(settings.models.music_path)
            result = await classify_catalog(store, model)
            print(
                f"model {result.model_version}: {result.considered} tracks without a label; "
                f"{result.assigned} newly assigned, {result.mood_changed} changed mood, "
                f"{result.rescored} re-scored, {result.unchanged} unchanged"
            )
        counts = await store.catalog_counts()
    finally:
        await store.close()
    _print_counts(counts)
    return 0


def _print_counts(counts: CatalogCounts) -> None:
    """The catalog as a table: served tracks by mood and source, then what is not served."""
    rows = [
        (mood, counts.by_mood[mood], counts.labelled[mood], counts.modelled[mood],
         counts.held_back[mood])
        for mood in MOODS
    ]  # fmt: skip
    rows.append(("total", *(sum(column) for column in list(zip(*rows, strict=True))[1:])))
    print(f"{'mood':<11}  {'served':>6}  {'label':>6}  {'model':>6}  {'held back':>9}")
    for name, served, label, model, held in rows:
        print(f"{name:<11}  {served:>6}  {label:>6}  {model:>6}  {held:>9}")
    print(f"{'no mood yet':<11}  {counts.unassigned:>6}")
    print(f"{'all tracks':<11}  {counts.total:>6}")
    if not counts.total:
        print("the catalog is empty: `moodlift run` (or `moodlift catalog import`) fills it")
    if counts.unassigned:
        print("tracks without a mood get the model's with `moodlift catalog classify`")
    held = sum(counts.held_back.values())
    print(
        f"held back: {held} model moods below catalog.min_mood_confidence = "
        f"{counts.min_confidence:g}"
    )
    for version, n in sorted(counts.model_versions.items()):
        print(f"model {version}: {n} tracks")


async def _catalog_art(settings: Settings, store: Store, args: argparse.Namespace) -> int:
    from core.artwork import ArtResolver, Pacer, prefetch_art

    resolver = ArtResolver.from_settings(settings.spotify, store, pace=Pacer(args.rate))
    try:
        report = await prefetch_art(store, resolver, limit=args.limit, progress=sys.stderr.isatty())
    finally:
        await resolver.close()
    print(
        f"album art: {report.checked} checked ({report.found} found, {report.without_art} "
        f"without art), {report.unanswered} unanswered; {report.left} tracks left to check"
    )
    if report.stopped:
        print(f"moodlift: stopped early: {report.stopped}; run again later", file=sys.stderr)
        return 1
    return 0


async def _recommend(settings: Settings, args: argparse.Namespace) -> int:
    from core.recommend import Recommender
    from core.store import Store

    store = await Store.open(settings)
    try:
        user = await store.get_or_create_user("cli", args.user)
        recommender = Recommender(store, settings.recommender.default_mode)
        card = await recommender.for_emotion(user, args.emotion, mode=args.mode)
    finally:
        await store.close()
    print(f"{card.title} — {card.artist}")
    if card.album:
        print(f"  album:  {card.album}")
    print(f"  mood:   {card.mood} ({card.reason})")
    print(f"  listen: {card.spotify_url}")
    from bot.wording import card_notes

    for note in card_notes(card):
        print(f"  note:   {note}")
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from bot.runtime import PLATFORMS, configured_platforms, limit_malloc_arenas, serve

    limit_malloc_arenas()  # a long-lived process with many threads: see MALLOC_ARENAS
    available = configured_platforms(settings)
    unknown = [name for name in args.platforms if name not in PLATFORMS]
    if unknown:
        raise ConfigError(f"unknown platform {unknown[0]!r}; expected telegram or discord")
    wanted = list(dict.fromkeys(args.platforms)) or available
    missing = [name for name in wanted if name not in available]
    if missing:
        key = f"MOODLIFT_{missing[0].upper()}_TOKEN"
        raise ConfigError(f"{missing[0]} has no token: set {key} or [{missing[0]}] token")
    if not wanted:
        # Still prepare everything, so the first real start is quick and problems show now.
        stop = asyncio.Event()
        stop.set()
        await serve(settings, [], stop_event=stop)
        songs = await _servable_songs(settings)
        catalog = (
            f"{songs:,} songs to serve"
            if songs
            else "no songs to serve yet (the catalog could not be imported: see the warning "
            "above; a bot would answer every selfie that it has no song)"
        )
        print(
            f"Ready ({catalog}), but no bot token is configured, so no bot was started.\n"
            "Set MOODLIFT_TELEGRAM_TOKEN and/or MOODLIFT_DISCORD_TOKEN (see README.md) and run "
            "`moodlift run` again; meanwhile `moodlift analyze PHOTO.jpg` reads a photo here."
        )
        return 0
    await serve(settings, wanted)
    return 0


async def _servable_songs(settings: Settings) -> int:
    from core.store import Store

    async with await Store.open(settings, upgrade=False) as store:
        return (await store.catalog_counts()).servable


async def _analyze(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.images import ImageError
    from core.reading import group_emotion
    from core.service import NO_FACE, MoodLifter

    service = await MoodLifter.create(settings)
    failures = 0
    try:
        account = await service.store.get_or_create_user("cli", args.user)
        for name in args.photos:
            # The same keys for every file, null where there is nothing to say.
            result: dict[str, object] = dict.fromkeys(
                ("file", "faces", "emotion", "mood", "track", "note", "error")
            )
            result.update(file=name, faces=[])
            try:
                data = await asyncio.to_thread(Path(name).read_bytes)
                faces = await asyncio.to_thread(service.reader.read, data)
            except (OSError, ImageError) as error:
                failures += 1
                message = getattr(error, "user_message", None) or f"cannot read: {error}"
                result["error"] = message
                _show_analysis(result, args.json)
                continue
            result["faces"] = [
                {
                    "box": list(face.box),
                    "emotion": face.emotion,
                    "confidence": round(face.confidence, 4),
                    "probabilities": {k: round(v, 4) for k, v in face.probabilities.items()},
                }
                for face in faces
            ]
            if not faces:
                result["note"] = NO_FACE
            else:
                emotion, _ = group_emotion(faces)
                result["emotion"] = emotion
                try:
                    card = await service.recommender.for_emotion(account, emotion)
                except CatalogError as error:
                    result["note"] = str(error)
                else:
                    result["mood"] = card.mood
                    result["track"] = {
                        "id": card.track_id,
                        "title": card.title,
                        "artist": card.artist,
                        "url": card.spotify_url,
                        "reason": card.reason,
                    }
            _show_analysis(result, args.json)
    finally:
        await service.close()
    return 1 if failures else 0  # every file was reported; a script still learns of failures


def _show_analysis(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, ensure_ascii=False), flush=True)
        return
    print(result["file"])
    if result["error"]:
        print(f"  error: {result['error']}")
        return
    faces = result["faces"]
    if not faces:
        print(f"  no face found: {result['note']}")
    for i, face in enumerate(faces, 1):
        x, y, w, h = face["box"]
        print(f"  face {i} at ({x}, {y}) {w}x{h}: {face['emotion']} {face['confidence']:.0%}")
    track = result.get("track")
    if track:
        print(f"  mood: {result['mood']} — {track['title']} by {track['artist']}")
        print(f"  {track['reason']}; listen: {track['url']}")
    elif faces and result["note"]:
        print(f"  no song: {result['note']}")


if __name__ == "__main__":
    raise SystemExit(main())
