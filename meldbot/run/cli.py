"""The `meldbot` command: chat, run, migrate, check-config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from meldbot.core import logs
from meldbot.core.config import ConfigError, ListenFailed, config_warnings, load_config
from meldbot.core.i18n import texts
from meldbot.core.ports import StorageUnavailable
from meldbot.storage.canary import DataKeyRefused
from meldbot.storage.db import Database, DatabaseUnavailable, SchemaOutdated, probe, unavailable

EXIT_CONFIG, EXIT_DATABASE = 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meldbot", description="Intern meldpunt mensenhandel als chat-bot.")
    parser.add_argument("--config", help="pad naar het configuratiebestand (anders MELDBOT_CONFIG of config.toml)")
    parser.add_argument("--log-level", default=None, help="overschrijft logging.level")
    parser.add_argument("--log-json", action="store_true", help="logregels als JSON (overschrijft logging.format)")
    sub = parser.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("chat", help="meldbot in de terminal (lokaal, zonder accounts)")
    chat.add_argument("--beheer", action="store_true",
                      help="ook op een echte database (Matrix of Teams staat aan in de configuratie): "
                           "je leest dan echte meldingen, en de audit legt vast dat het via de terminal was")
    run = sub.add_parser("run", help="start de ingestelde platforms en de HTTP-server")
    run.add_argument("--instance", default=None,
                     help="naam van dit proces bij meer processen op één database (anders MELDBOT_INSTANCE); "
                          "elk proces krijgt dan een eigen Matrix-apparaat in <matrix.store_path>/<naam>")
    migrate = sub.add_parser("migrate", help="werk het databaseschema bij, of zet het terug naar een oudere versie")
    migrate.add_argument("--to", default="head", metavar="VERSIE",
                         help="naar deze versie (zoals 0011) in plaats van de nieuwste; ook terug, bij een rollback")
    migrate.add_argument("--yes", action="store_true",
                         help="ook terugzetten als daarbij gegevens gewist worden (maak eerst een back-up)")
    sub.add_parser("check-config", help="controleer de configuratie")
    audit = sub.add_parser("audit", help="toon wie een melding las of er iets mee deed")
    audit.add_argument("reference", help="het nummer, bijvoorbeeld MH-2026-0007 of 7")
    rotate = sub.add_parser("rotate-key", help="versleutel alles opnieuw met de nieuwe sleutel")
    rotate.add_argument("--batch-size", type=int, default=200)
    seal = sub.add_parser("seal-plaintext", help="versleutel gegevens die onversleuteld in de database staan "
                                                 "(stop eerst elke meldbot die draait)")
    seal.add_argument("--batch-size", type=int, default=200)
    sub.add_parser("new-key", help="maak een nieuwe sleutel voor MELDBOT_DATA_KEY")
    sub.add_parser("reminders", help="welke herinneringen aan de beurt zijn, wanneer en voor wie")
    sub.add_parser("doctor", help="controleer configuratie, database, sleutel, platforms en vastgelopen berichten")
    report = sub.add_parser("report", help="anonieme cijfers voor de regio (ketenregisseur)")
    report.add_argument("--anonymous", action="store_true", required=True,
                        help="alleen aantallen, zonder persoonsgegevens of vrije tekst (verplicht)")
    report.add_argument("--format", choices=("csv", "json"), default="csv")
    report.add_argument("--period", default="", help="2026, 2026-11 of 2026-Q4; standaard het huidige jaar")
    reset = sub.add_parser("matrix-reset-identity",
                           help="maak bewust een nieuwe Matrix-identiteit (cross-signing) voor de bot")
    reset.add_argument("--yes", action="store_true", help="niet om bevestiging vragen")
    from meldbot.run.matrix_trust import add_command as add_matrix_trust
    from meldbot.run.outbox_cli import add_command as add_outbox
    from meldbot.run.teams_manifest import add_command as add_teams_manifest

    add_matrix_trust(sub)
    add_outbox(sub)

    add_teams_manifest(sub)
    return parser


def _config_path(args) -> str:
    return args.config or os.environ.get("MELDBOT_CONFIG") or "config.toml"


def _platforms_in_file(config, path: str) -> list[str]:
    """Matrix and Teams as the configuration switches them on, also when the environment switches them off:
    a configuration with a platform belongs to a real meldpunt, and `meldbot chat` on it reads real reports."""
    import tomllib

    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = {}
    return [name.capitalize() for name in ("matrix", "teams")
            if getattr(config, name).enabled or (raw.get(name) or {}).get("enabled") is True]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "new-key":
        from meldbot.storage.sealing import new_key

        print(new_key())
        return 0
    logs.setup((args.log_level or "INFO").upper(), args.log_json)
    path = _config_path(args)
    try:
        config = load_config(path)
    except ConfigError as err:
        print(texts("nl")("cli.config_error", path=path), file=sys.stderr)
        print(str(err), file=sys.stderr)
        return EXIT_CONFIG
    t = texts(config.language)
    logs.setup((args.log_level or config.logging.level).upper(), args.log_json or config.logging.format == "json")
    if args.command == "check-config":
        platforms = [p for p in ("matrix", "teams") if getattr(config, p).enabled] or ["geen"]
        afs = sum(len(m.af) for m in config.meldpunten)
        print(t("cli.config_ok", path=path, meldpunten=len(config.meldpunten), afs=afs, platforms=", ".join(platforms)))
        for warning in config_warnings(config):
            print(t("doctor.warn_mark") + t(warning.text_key, **warning.params))
        return 0
    if args.command == "chat" and not args.beheer and _platforms_in_file(config, path):
        print(t("cli.chat.on_platforms", platforms=t("cli.chat.and").join(_platforms_in_file(config, path))), file=sys.stderr)
        return EXIT_CONFIG
    try:
        return asyncio.run(_start(config, t, args))
    except SchemaOutdated as exc:
        print(t("cli.schema_outdated", current=exc.current or "leeg", head=exc.head), file=sys.stderr)
        return EXIT_DATABASE
    except DataKeyRefused as exc:
        print(t(exc.text_key, **exc.params), file=sys.stderr)
        return EXIT_CONFIG
    except ListenFailed as exc:    # before OSError: a port in use is not an unreachable database
        print(t(f"cli.listen.{exc.reason}", setting=exc.setting, address=exc.address,
                error=exc.error.strerror or type(exc.error).__name__), file=sys.stderr)
        return EXIT_CONFIG
    except DatabaseUnavailable as exc:
        print(t(f"cli.database.{exc.reason}", **exc.place), file=sys.stderr)
        return EXIT_DATABASE
    except StorageUnavailable as exc:     # the database failed in the middle of a command
        print(t("cli.db_unreachable", error=exc.cause), file=sys.stderr)
        return EXIT_DATABASE
    except (OSError, ConnectionError) as exc:
        print(t("cli.db_unreachable", error=type(exc).__name__), file=sys.stderr)
        return EXIT_DATABASE
    except Exception as exc:
        if type(exc).__name__ == "MatrixStoreInUse":   # another process uses this Matrix device
            print(t("cli.matrix_store_in_use", folder=getattr(exc, "folder", "?")), file=sys.stderr)
            return EXIT_CONFIG
        if type(exc).__name__ == "MatrixStoreLocked":   # the device's keys fit no data key this process has
            print(t(f"cli.matrix_store_{getattr(exc, 'reason', 'wrong_key')}", folder=getattr(exc, "folder", "?")),
                  file=sys.stderr)
            return EXIT_CONFIG
        if type(exc).__name__ == "InstanceWithAccessToken":   # one token is one device for every process
            print(t("cli.instance_with_access_token"), file=sys.stderr)
            return EXIT_CONFIG
        if type(exc).__name__ == "InstanceNameInvalid":
            print(t("cli.instance_invalid", name=str(exc)), file=sys.stderr)
            return EXIT_CONFIG
        if type(exc).__name__ != "MatrixLoginError":
            raise
        print(t("cli.matrix_login"), file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0


# Commands that do not need the database (doctor reports a missing one among its findings).
_WITHOUT_DATABASE = {"doctor", "teams-manifest"}


async def _start(config, t, args) -> int:
    """Run the command; first make sure its database is there (a missing one is one Dutch line, not a
    traceback, and nothing is created where it was not found; `migrate` makes a new SQLite file)."""
    from sqlalchemy.exc import DBAPIError

    if args.command not in _WITHOUT_DATABASE:
        await probe(config.storage.url, create=args.command == "migrate")
    try:
        return await _COMMANDS[args.command](config, t, args)
    except (DBAPIError, StorageUnavailable) as exc:
        # E.g. the database was dropped just now: the same one line as at the start. A unit of work
        # hands its database error on as the core's StorageUnavailable, with the driver's as the cause.
        problem = unavailable(exc, config.storage.url)
        if problem is None:
            raise
        raise problem from exc


@contextlib.asynccontextmanager
async def _unit_of_work(config):
    """One unit of work on a schema-checked database, for the administrator's commands."""
    from meldbot.storage import canary
    from meldbot.storage.sealing import sealer_for
    from meldbot.storage.uow import UnitOfWorkFactory

    db = Database(config.storage.url)
    try:
        await db.check_schema()
        sealer = sealer_for(config)
        await canary.ensure(db, sealer)
        async with UnitOfWorkFactory(db, sealer)() as uow:
            yield uow
    finally:
        await db.dispose()


async def _migrate(config, t, args) -> int:
    """Upgrade to the newest schema, or with --to to any revision, also back (a rollback to older code).
    A downgrade that deletes data (DOWNGRADE_KEEPS_DATA) needs --yes; nothing here asks a question."""
    from meldbot.storage import canary
    from meldbot.storage.db import DOWNGRADE_KEEPS_DATA, UnknownRevision, downgrades_between, head_revision, resolve
    from meldbot.storage.sealing import sealer_for

    try:
        target = resolve(args.to)
    except UnknownRevision as exc:
        print(t("cli.migrate.unknown", revision=exc.revision, known=", ".join([*exc.known, "head", "base"])),
              file=sys.stderr)
        return EXIT_CONFIG
    db = Database(config.storage.url)
    try:
        try:
            steps = downgrades_between(await db.current_revision(), target)
        except UnknownRevision as exc:   # the database is newer than this code: only its own code can go back
            print(t("cli.migrate.newer", current=exc.revision, head=head_revision()), file=sys.stderr)
            return EXIT_DATABASE
        lossy = [rev for rev in steps if rev not in DOWNGRADE_KEEPS_DATA]
        if lossy and not args.yes:
            lost = "; ".join(t("cli.migrate.lost_list", revision=rev,
                               what=t(f"cli.migrate.lost.{rev}") if t.has(f"cli.migrate.lost.{rev}")
                               else t("cli.migrate.lost_other", revision=rev)) for rev in lossy)
            print(t("cli.migrate.loses_data", revision=args.to, lost=lost), file=sys.stderr)
            return 1
        before, after = await db.move_to(args.to)
        if after == head_revision():
            # Marks a new database as sealed with this key (or as plaintext); refuses a key that does not fit.
            await canary.ensure(db, sealer_for(config))
    finally:
        await db.dispose()
    if steps:
        print(t("cli.migrate.down", before=before, after=after or "leeg"))
    elif before == after:
        print(t("cli.up_to_date", head=after) if after == head_revision()
              else t("cli.migrate.already", revision=after or "leeg"))
    else:
        print(t("cli.migrated", before=before or "leeg", after=after))
    return 0


async def _chat(config, t, args) -> int:
    from meldbot.adapters.console import ConsoleSession
    from meldbot.run.app import build_app

    async with build_app(config, mode="chat", clock=_clock()) as app:
        session = ConsoleSession(config, app.notifiers["console"], handle=app.bot.handle, wake=app.dispatcher.wake,
                                 deliver_pending=app.dispatcher.deliver_pending)
        await _until_refused(app, session.run())
    return _refused(app, t)


async def _run(config, t, args) -> int:
    from meldbot.run.app import build_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    from meldbot.run.reload import reloading

    # SIGHUP, or a change of the file's content, reloads the configuration (meldbot.run.reload).
    async with build_app(config, mode="run", clock=_clock(), instance=args.instance,
                         outbox_policy=_outbox_policy()) as app, \
            reloading(app, _config_path(args)):
        if not app.notifiers:
            print(t("cli.no_platforms"), file=sys.stderr)
        from meldbot.run.tuning import tune_gc

        tune_gc()   # after start-up, before the first turn (meldbot/run/tuning.py)
        print(t("cli.running"), file=sys.stderr)
        await _until_refused(app, stop.wait())
    if app.refusal is not None:
        return _refused(app, t)
    print(t("cli.stopped"), file=sys.stderr)
    return 0


async def _until_refused(app, work) -> None:
    """Run `work` until it ends or this keyless process may no longer write (the database was sealed
    meanwhile, meldbot.storage.canary.PlaintextGuard)."""
    task, refused = asyncio.ensure_future(work), asyncio.ensure_future(app.refused.wait())
    try:
        await asyncio.wait({task, refused}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, refused):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


def _refused(app, t) -> int:
    if app.refusal is None:
        return 0
    # Printed here, not by main(): a chat may wait for one more line on stdin before the process can end.
    print(t(app.refusal.text_key, **app.refusal.params), file=sys.stderr)
    return EXIT_CONFIG


async def _audit(config, t, args) -> int:
    """Print a signal's audit trail; this read by the administrator is itself recorded."""
    import getpass

    from meldbot.core.calendar import labelled
    from meldbot.core.domain import RefQuery

    query = RefQuery.parse(args.reference)
    if query is None:
        print(t("cli.bad_reference", reference=args.reference), file=sys.stderr)
        return 1
    async with _unit_of_work(config) as uow:
        signal = await uow.signals.find(query, [m.id for m in config.meldpunten])
        if signal is None:
            print(t("cli.unknown_reference", reference=args.reference), file=sys.stderr)
            return 1
        await uow.audit.append(meldpunt_id=signal.meldpunt_id, signal_id=signal.id, actor_kind="cli",
                               actor=f"cli:{getpass.getuser()}", action="audit-gelezen", at=_now())
        entries = await uow.audit.of_signal(signal.id)
        await uow.commit()
    # In the meldpunt's own time zone, as the chat shows it, and said so: the server may run on UTC.
    meldpunt = _meldpunt_of(config, signal.meldpunt_id)
    print(t("cli.audit_header", reference=signal.reference))
    print(t("cli.times.zone", zone=meldpunt.timezone, meldpunt=meldpunt.name))
    for e in entries:
        detail = f" ({e.detail})" if e.detail else ""
        print(f"{labelled(e.at, meldpunt.tz, seconds=True)}  {e.actor_kind:6}  {e.actor:20}  {e.action}{detail}")
    return 0


def _meldpunt_of(config, meldpunt_id: str):
    """The meldpunt a row names; the first one for a row of a meldpunt no longer configured."""
    return config.meldpunt_by_id(meldpunt_id) or config.meldpunten[0]


def _clock():
    """The system clock; MELDBOT_TEST_CLOCK (an ISO time) freezes it, for tests of real processes only."""
    from datetime import datetime

    from meldbot.core.clock import ManualClock, SystemClock

    frozen = os.environ.get("MELDBOT_TEST_CLOCK")
    if frozen:
        logging.getLogger("meldbot.run.cli").warning("clock frozen by MELDBOT_TEST_CLOCK; for tests only")
        return ManualClock(datetime.fromisoformat(frozen))
    return SystemClock()


def _outbox_policy():
    """The outbox's defaults; MELDBOT_TEST_OUTBOX_LEASE (seconds) shortens how long a claimed row stays a
    dead process's, so a test of a real process killed mid-send need not wait two minutes. Tests only."""
    from datetime import timedelta

    from meldbot.service.outbox import RetryPolicy

    lease = os.environ.get("MELDBOT_TEST_OUTBOX_LEASE")
    if not lease:
        return None
    logging.getLogger("meldbot.run.cli").warning("outbox lease set by MELDBOT_TEST_OUTBOX_LEASE; for tests only")
    return RetryPolicy(lease=timedelta(seconds=float(lease)))


def _now():
    return _clock().now()


async def _reminders(config, t, args) -> int:
    """What is due, when, for whom: read from the database, nothing is sent."""
    from meldbot.service.reminders import upcoming
    from meldbot.service.services import work_calendar

    now = _now()
    rows = []
    async with _unit_of_work(config) as uow:
        for meldpunt in config.meldpunten:
            cal, settings = work_calendar(config, meldpunt.id), config.reminders_for(meldpunt.id)
            for signal in await uow.signals.reminder_candidates(meldpunt.id):
                for due in upcoming(signal, settings, cal, now):
                    when = due.due_at if due.slot < 0 else due.next_at
                    who = signal.handler or t("cli.reminders_all_afs")
                    state = t("cli.reminders_overdue") if due.slot >= 0 else ""
                    rows.append((when, f"{when.astimezone(meldpunt.tz):%Y-%m-%d %H:%M}  {signal.reference}  "
                                       f"{due.kind:16} {who:12} {state}"))   # partner:<key>: one per partner
    # The meldpunt's zone, as the chat shows it, and said so: the server may run on UTC.
    zones = ", ".join(dict.fromkeys(m.timezone for m in config.meldpunten))
    print(t("cli.reminders_header", count=len(rows), zones=zones))
    for _, line in sorted(rows):
        print(line.rstrip())
    return 0


async def _rotate_key(config, t, args) -> int:
    from meldbot.storage.rotation import Rotation
    from meldbot.storage.sealing import KeyringSealer, sealer_for

    sealer = sealer_for(config)
    if not isinstance(sealer, KeyringSealer):
        print(t("cli.rotate_needs_key"), file=sys.stderr)
        return EXIT_CONFIG
    from meldbot.storage import canary

    db = Database(config.storage.url)
    try:
        await db.check_schema()
        await canary.ensure(db, sealer)
        progress = await Rotation(db, sealer, batch_size=args.batch_size).run()
    finally:
        await db.dispose()
    counts = ", ".join(f"{table}: {n}" for table, n in progress.counts.items()) or "-"
    print(t("cli.rotated", counts=counts, key_id=sealer.key_id))
    return 0


async def _seal_plaintext(config, t, args) -> int:
    """Repair a database that holds plaintext beside sealed values (a start without the key, before the
    canary existed): seal every row not under the current key, then mark the database as sealed."""
    from meldbot.storage import canary
    from meldbot.storage.canary import KeyState
    from meldbot.storage.rotation import RepairSealer, Rotation
    from meldbot.storage.sealing import KeyringSealer, sealer_for

    if not isinstance(sealer_for(config), KeyringSealer):
        print(t("cli.key.seal_needs_key"), file=sys.stderr)
        return EXIT_CONFIG
    sealer = RepairSealer(config.data_key.get_secret_value(),
                          [k.get_secret_value() for k in config.data_key_previous])
    db = Database(config.storage.url)
    try:
        await db.check_schema()
        verdict = await canary.examine(db, sealer_for(config), thorough=True)
        if verdict.state is KeyState.WRONG_KEY:   # sealing with a wrong key would make a second mix
            raise verdict.refusal()
        if verdict.state is not KeyState.NEEDS_SEALING:
            await canary.ensure(db, sealer_for(config))
            print(t("cli.key.nothing_to_seal", key_id=sealer.key_id))
            return 0
        print(t("cli.key.stop_first"), flush=True)
        progress = await Rotation(db, sealer, batch_size=args.batch_size).run()
        # A keyless meldbot that kept running can have written behind the rotation; from the new canary on,
        # it writes nothing more (meldbot.storage.canary.PlaintextGuard).
        written_meanwhile = await canary.plaintext_found(db)
    finally:
        await db.dispose()
    if written_meanwhile:
        print(t("cli.key.written_meanwhile"), file=sys.stderr)
        return 1
    counts = ", ".join(f"{table}: {n}" for table, n in progress.counts.items()) or "-"
    print(t("cli.key.sealed", counts=counts, key_id=sealer.key_id))
    return 0


async def _report(config, t, args) -> int:
    """Regional figures for the ketenregisseur: counts only, small cells suppressed."""
    from meldbot.service import monitoring
    from meldbot.service.services import work_calendar

    first = config.meldpunten[0]
    period = monitoring.parse_period(args.period, _now().astimezone(first.tz).date())
    if period is None:
        print(t("af.bad_period", period=args.period), file=sys.stderr)
        return 1

    async with _unit_of_work(config) as uow:
        facts = await uow.signals.facts([m.id for m in config.meldpunten])
    by_meldpunt = {m.id: [f for f in facts if f.meldpunt_id == m.id] for m in config.meldpunten}
    print(monitoring.export_anonymous(by_meldpunt, period, lambda m: work_calendar(config, m), args.format,
                                      protection=config.report.protection))
    return 0


async def _doctor(config, t, args) -> int:
    from meldbot.run.doctor import examine

    findings = await examine(config, t, now=_now())
    print(t("doctor.header"))
    for finding in findings:
        mark = "doctor.warn_mark" if finding.ok and finding.warning else "doctor.ok_mark" if finding.ok else "doctor.bad_mark"
        print(t(mark) + finding.text)
    healthy = all(f.ok for f in findings)
    warned = any(f.warning for f in findings)
    print(t("doctor.all_ok") if healthy and not warned else t("doctor.only_warnings") if healthy else t("doctor.some_bad"))
    return 0 if healthy else 1


async def _matrix_reset_identity(config, t, args) -> int:
    """A new cross-signing identity for the bot account, on purpose (ensure_identity never makes one over
    an existing identity). Every failure is a Dutch sentence and a non-zero exit, never a traceback."""
    import getpass

    from meldbot.adapters.matrix.cross_signing import (
        CrossSigningError, HomeserverError, PasswordRefused, PasswordRequired, SecretIdentityStore, UnsupportedAuth,
        reset_identity,
    )
    from meldbot.storage.matrix import MatrixIdentitySecrets
    from meldbot.storage.sealing import sealer_for
    from meldbot.storage.uow import UnitOfWorkFactory

    settings = config.matrix
    if not settings.homeserver or not settings.user_id:
        print(t("cli.identity.not_configured"), file=sys.stderr)
        return EXIT_CONFIG
    print(t("cli.identity.explain", user_id=settings.user_id))
    interactive = sys.stdin.isatty()
    if not args.yes:
        if not interactive:
            print(t("cli.identity.needs_yes"), file=sys.stderr)
            return 1
        if input(t("cli.identity.confirm")).strip().casefold() not in ("ja", "j", "yes", "y"):
            print(t("cli.identity.cancelled"))
            return 1
    password = settings.password.get_secret_value()
    if not password and interactive:
        password = getpass.getpass(t("cli.identity.password_prompt", user_id=settings.user_id))
    if not password:
        print(t("cli.identity.no_password"), file=sys.stderr)
        return EXIT_CONFIG
    db = Database(config.storage.url)
    try:
        await db.check_schema()
        from meldbot.storage import canary

        await canary.ensure(db, sealer_for(config))
        store = SecretIdentityStore(MatrixIdentitySecrets(UnitOfWorkFactory(db, sealer_for(config)),
                                                          settings.user_id, now=_now))
        async with _matrix_admin_client(settings, password) as client:
            status = await reset_identity(client, store, password)
    except _MatrixAdminLoginError as exc:
        print(t("cli.identity.login_refused", error=str(exc)), file=sys.stderr)
        return 1
    except (PasswordRequired, PasswordRefused) as exc:
        key = "cli.identity.no_password" if isinstance(exc, PasswordRequired) else "cli.identity.password_refused"
        print(t(key, user_id=settings.user_id), file=sys.stderr)
        return 1
    except UnsupportedAuth as exc:
        print(t("cli.identity.unsupported_auth", stages=", ".join(exc.stages) or "?",
                url=f" ({exc.url})" if exc.url else ""), file=sys.stderr)
        return 1
    except HomeserverError as exc:
        print(t("cli.identity.homeserver", homeserver=settings.homeserver, error=str(exc)), file=sys.stderr)
        return 1
    except CrossSigningError as exc:
        print(t("cli.identity.failed", error=str(exc)), file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    print(t("cli.identity.done", master=status.master_public))
    return 0


class _MatrixAdminLoginError(Exception):
    pass


@contextlib.asynccontextmanager
async def _matrix_admin_client(settings, password: str):
    """A client for the bot account without E2EE (the bot's crypto store is left alone): the bot's saved
    device (store_path/credentials.json), else the configured access token, else a password login that is
    logged out again afterwards."""
    import json
    from pathlib import Path

    from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse

    from meldbot.adapters.matrix.cross_signing import NETWORK_ERRORS, HomeserverError

    client = AsyncClient(settings.homeserver, settings.user_id,
                         config=AsyncClientConfig(encryption_enabled=False, request_timeout=30, max_timeouts=2,
                                                  max_timeout_retry_wait_time=2))
    temporary = False

    async def usable(user_id: str, device_id: str | None, token: str) -> bool:
        client.access_token = token
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse) or who.user_id != settings.user_id:
            return False
        client.restore_login(who.user_id, device_id or who.device_id, token)
        return True

    try:
        try:
            try:
                saved = json.loads((Path(settings.store_path) / "credentials.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = None
            token = settings.access_token.get_secret_value()
            if (isinstance(saved, dict) and saved.get("user_id") == settings.user_id
                    and saved.get("homeserver") == client.homeserver
                    and await usable(saved["user_id"], saved.get("device_id"), saved.get("access_token", ""))):
                pass
            elif token and await usable(settings.user_id, None, token):
                pass
            else:
                client.access_token = ""
                response = await client.login(password, device_name="meldbot-beheer")
                if not isinstance(response, LoginResponse):
                    raise _MatrixAdminLoginError(getattr(response, "status_code", None) or "?")
                temporary = True
        except NETWORK_ERRORS as exc:
            raise HomeserverError(f"homeserver unreachable: {type(exc).__name__}") from exc
        yield client
    finally:
        if temporary:
            with contextlib.suppress(*NETWORK_ERRORS):
                await client.logout()
        await client.close()


async def _matrix_trust(config, t, args) -> int:
    from meldbot.run.matrix_trust import run_command

    return await run_command(config, t, args)


async def _outbox(config, t, args) -> int:
    from meldbot.run.outbox_cli import run_command

    return await run_command(config, t, args)


async def _teams_manifest(config, t, args) -> int:
    from meldbot.run.teams_manifest import run_command

    return await run_command(config, t, args)


_COMMANDS = {"teams-manifest": _teams_manifest, "doctor": _doctor, "reminders": _reminders, "report": _report, "migrate": _migrate, "chat": _chat, "run": _run, "audit": _audit, "rotate-key": _rotate_key,
             "seal-plaintext": _seal_plaintext,
             "matrix-reset-identity": _matrix_reset_identity, "matrix-trust": _matrix_trust, "outbox": _outbox}

if __name__ == "__main__":
    sys.exit(main())
