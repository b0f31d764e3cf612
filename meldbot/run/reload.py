"""Configuration changes without a restart: on SIGHUP, and by itself when the file's content changes.

Every process on every machine looks at the configuration file's hash every CHECK_SECONDS, so an AF removed
or added reaches all of them without a signal (`systemctl reload` only makes it happen at once). The file is
read and validated as at start (meldbot.core.config.load_config). An invalid file changes nothing: the
process keeps its configuration and logs the wrong keys (never their values). A valid one is applied to
every component that holds the configuration, and the open signals of an AF who left are handled as at
start (meldbot.service.services.release_removed_afs). What only a restart can change (the database, the
platforms, their accounts, the listen addresses, the data key) is kept as it was, with a warning that names
the keys."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from meldbot.core.config import Config, ConfigError, load_config
from meldbot.core.logs import where
from meldbot.service.services import release_removed_afs

log = logging.getLogger("meldbot.run.reload")

CHECK_SECONDS = 15.0
# Sections a running process cannot change: the database and its key, the HTTP listeners, each platform's
# account and switch (its connection is made at start), the log setup.
RESTART_SECTIONS = ("storage", "http", "matrix", "teams", "logging")
# Single keys elsewhere that are read once at start (the reminder sweep's interval is a scheduled job's).
RESTART_KEYS = (("reminders", "sweep_seconds"),)


def needs_restart(old: Config, new: Config) -> list[str]:
    """The keys whose change a running process does not apply, e.g. ["teams.app_id", "storage.url"]."""
    changed = []
    for section in RESTART_SECTIONS:
        before, after = getattr(old, section), getattr(new, section)
        changed += [f"{section}.{name}" for name in type(before).model_fields
                    if getattr(before, name) != getattr(after, name)]
    for section, name in RESTART_KEYS:
        if getattr(getattr(old, section), name) != getattr(getattr(new, section), name):
            changed.append(f"{section}.{name}")
    if old.data_key != new.data_key:
        changed.append("MELDBOT_DATA_KEY")
    if old.data_key_previous != new.data_key_previous:
        changed.append("MELDBOT_DATA_KEY_PREVIOUS")
    return changed


def runtime_part(old: Config, new: Config) -> Config:
    """`new`, with what only a restart can change kept as in `old`."""
    kept: dict[str, Any] = {section: getattr(old, section) for section in RESTART_SECTIONS}
    kept["data_key"], kept["data_key_previous"] = old.data_key, old.data_key_previous
    for section, name in RESTART_KEYS:
        kept[section] = getattr(new, section).model_copy(update={name: getattr(getattr(old, section), name)})
    return new.model_copy(update=kept)


async def apply(app: Any, config: Config) -> int:
    """Give every component of a running App the new configuration; then the signals of AFs who left
    become unassigned and the remaining AFs are told, as at start. Returns how many signals that were."""
    app.config = config
    app.bot.config = config
    app.reminders.config = config
    trouble = app.dispatcher.on_trouble
    if trouble is not None and hasattr(trouble, "config"):
        trouble.config = config
    for adapter in app.adapters:
        reconfigure = getattr(adapter, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(config)
    async with app.uow() as uow:
        released = await release_removed_afs(uow, config, app.clock, tuple(app.notifiers))
        await uow.commit()
    return released


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Reloader:
    """Reloads the configuration of one running App from `path`."""

    def __init__(self, app: Any, path: str | Path, *, every: float = CHECK_SECONDS,
                 load: Callable[[Path], Config] = load_config) -> None:
        self._app = app
        self._path = Path(path)
        self._every = every
        self._load = load
        self._lock = asyncio.Lock()
        self._seen = digest(self._path)
        self._tasks: set[asyncio.Task] = set()
        self.reloads = 0        # valid configurations applied
        self.refused = 0        # invalid ones kept out

    async def reload(self, why: str) -> bool:
        """Read, validate and apply the file; False (and the old configuration kept) when it is invalid."""
        async with self._lock:
            self._seen = digest(self._path)
            try:
                new = self._load(self._path)
            except ConfigError as err:
                self.refused += 1
                # The keys only: a message may quote what was written (a name, a number).
                log.error("configuration not reloaded: it has errors; the old configuration stays (see "
                          "meldbot check-config)", extra={"why": why, "keys": [key for key, _ in err.problems]})
                return False
            old = self._app.config
            restart = needs_restart(old, new)
            if restart:
                log.warning("configuration changes that need a restart are not applied",
                            extra={"keys": restart, "why": why})
            config = runtime_part(old, new)
            try:
                released = await apply(self._app, config)
            except Exception as exc:   # the new configuration is in place; the release is retried at the next reload
                log.error("reloaded configuration applied, but releasing removed AFs' signals failed",
                          extra={"error": type(exc).__name__, "where": where(exc)})
                released = 0
            self.reloads += 1
            log.info("configuration reloaded", extra={
                "why": why, "meldpunten": len(config.meldpunten),
                "afs": sum(len(m.af) for m in config.meldpunten), "released": released})
            return True

    def on_hangup(self) -> None:
        """SIGHUP: reload now (the signal handler itself only schedules it)."""
        task = asyncio.ensure_future(self.reload("SIGHUP"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def watch(self) -> None:
        """Reload whenever the file's content changes; looks every `every` seconds."""
        while True:
            await asyncio.sleep(self._every)
            if digest(self._path) not in (None, self._seen):
                try:
                    await self.reload("file changed")
                except Exception as exc:   # its own boundary: keep watching
                    log.error("configuration reload failed", extra={"error": type(exc).__name__, "where": where(exc)})


@contextlib.asynccontextmanager
async def reloading(app: Any, path: str | Path, *, every: float = CHECK_SECONDS) -> AsyncIterator[Reloader]:
    """While inside: SIGHUP reloads the configuration, and so does a change of the file's content."""
    reloader = Reloader(app, path, every=every)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, reloader.on_hangup)
    watcher = asyncio.ensure_future(reloader.watch())
    try:
        yield reloader
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for task in list(reloader._tasks):
            task.cancel()
