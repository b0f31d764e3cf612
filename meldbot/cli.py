"""The `meldbot` command: chat, run, migrate, check-config."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from meldbot import logs
from meldbot.config import ConfigError, load_config
from meldbot.i18n import texts
from storage.db import Database, SchemaOutdated

EXIT_CONFIG, EXIT_DATABASE = 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meldbot", description="Intern meldpunt mensenhandel als chat-bot.")
    parser.add_argument("--config", help="pad naar het configuratiebestand (anders MELDBOT_CONFIG of config.toml)")
    parser.add_argument("--log-level", default=os.environ.get("MELDBOT_LOG_LEVEL", "INFO"))
    parser.add_argument("--log-json", action="store_true", help="logregels als JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("chat", help="meldbot in de terminal (lokaal, zonder accounts)")
    sub.add_parser("run", help="start de ingestelde platforms en de HTTP-server")
    sub.add_parser("migrate", help="werk het databaseschema bij")
    sub.add_parser("check-config", help="controleer de configuratie")
    return parser


def _config_path(args) -> str:
    return args.config or os.environ.get("MELDBOT_CONFIG") or "config.toml"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.setup(args.log_level.upper(), args.log_json)
    path = _config_path(args)
    try:
        config = load_config(path)
    except ConfigError as err:
        print(texts("nl")("cli.config_error", path=path), file=sys.stderr)
        print(str(err), file=sys.stderr)
        return EXIT_CONFIG
    t = texts(config.language)
    if args.command == "check-config":
        platforms = [p for p in ("matrix", "teams") if getattr(config, p).enabled] or ["geen"]
        afs = sum(len(m.af) for m in config.meldpunten)
        print(t("cli.config_ok", path=path, meldpunten=len(config.meldpunten), afs=afs, platforms=", ".join(platforms)))
        return 0
    try:
        return asyncio.run(_COMMANDS[args.command](config, t))
    except SchemaOutdated as exc:
        print(t("cli.schema_outdated", current=exc.current or "leeg", head=exc.head), file=sys.stderr)
        return EXIT_DATABASE
    except (OSError, ConnectionError) as exc:
        print(t("cli.db_unreachable", error=type(exc).__name__), file=sys.stderr)
        return EXIT_DATABASE
    except KeyboardInterrupt:
        return 0


async def _migrate(config, t) -> int:
    db = Database(config.storage.url)
    try:
        before, after = await db.migrate()
    finally:
        await db.dispose()
    if before == after:
        print(t("cli.up_to_date", head=after))
    else:
        print(t("cli.migrated", before=before or "leeg", after=after))
    return 0


async def _chat(config, t) -> int:
    from adapters.console import ConsoleSession
    from meldbot.app import build_app

    async with build_app(config, mode="chat") as app:
        await ConsoleSession(app).run()
    return 0


async def _run(config, t) -> int:
    from meldbot.app import build_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with build_app(config, mode="run") as app:
        if not app.notifiers:
            print(t("cli.no_platforms"), file=sys.stderr)
        print(t("cli.running"), file=sys.stderr)
        await stop.wait()
    print(t("cli.stopped"), file=sys.stderr)
    return 0


_COMMANDS = {"migrate": _migrate, "chat": _chat, "run": _run}

if __name__ == "__main__":
    sys.exit(main())
