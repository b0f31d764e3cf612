"""`meldbot doctor`: checks what usually goes wrong, in plain words with what to do."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from meldbot.core.config import config_warnings
from meldbot.service.outbox import RetryPolicy
from meldbot.service.deliveries import plain_reason, reference_in
from meldbot.core.i18n import Texts
from meldbot.storage.db import Database, DatabaseUnavailable, head_revision, probe
from meldbot.storage.tables import OutboxRow
from meldbot.storage import canary
from meldbot.storage.canary import KeyState
from meldbot.storage.sealing import KeyringSealer, PlainSealer, sealer_for


PARKED_SHOWN = 20


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str
    warning: bool = False   # not wrong, but not [ok] either: printed with its own mark, exit code stays 0


async def examine(config, t: Texts, now: datetime | None = None) -> list[Finding]:
    now = now or datetime.now(timezone.utc)
    found = [Finding(True, t("doctor.config_ok", meldpunten=len(config.meldpunten)))]
    # A blocking one (Teams users all refused for want of a tenant) is a fault, not a point to watch.
    found += [Finding(not w.blocking, t(w.text_key, **w.params), warning=not w.blocking)
              for w in config_warnings(config)]
    missing = await _missing_sqlite(config.storage.url, t)
    if missing is not None:
        return found + [missing]
    db = Database(config.storage.url)
    try:
        try:
            current = await db.current_revision()
        except Exception as exc:
            found.append(Finding(False, t("doctor.db_down", error=type(exc).__name__)))
            return found
        head = head_revision()
        found.append(Finding(current == head, t("doctor.schema_ok", head=head) if current == head
                             else t("doctor.schema_old", current=current or "leeg", head=head)))
        sealer = sealer_for(config)
        key = await _key(db, sealer, t) if current == head else []
        # "Stored in clear" only where it is true: not when a sealed database is refused for want of a key.
        if isinstance(sealer, PlainSealer) and all(f.ok for f in key):
            platforms = config.matrix.enabled or config.teams.enabled
            found.append(Finding(not platforms, t("doctor.plaintext_platforms" if platforms else "doctor.plaintext"),
                                 warning=True))
        found += key
        if current == head:
            found += await _data(db, config, t)
            found += await _waiting(db, config, t, now)
            if config.matrix.enabled and all(f.ok for f in key):
                found += await _matrix_holder(db, sealer, config, t, now)
    finally:
        await db.dispose()
    found += await _platforms(config, t)
    return found


async def _missing_sqlite(url: str, t: Texts) -> Finding | None:
    """A SQLite file or folder that is not there, looked up on disk only: opening the database would
    create both, and doctor changes nothing."""
    if make_url(url).get_backend_name() != "sqlite":
        return None
    try:
        await probe(url)
    except DatabaseUnavailable as exc:
        return Finding(False, t(f"doctor.db_{exc.reason}", **exc.place))
    return None


async def _key(db: Database, sealer, t: Texts) -> list[Finding]:
    """The key against the canary (and, thoroughly, the rows): "past" only when a key opens it."""
    verdict = await canary.examine(db, sealer, thorough=True)
    state, params = verdict.state, verdict.refusal().params
    if state is KeyState.SEALED:
        async with db.engine.connect() as conn:
            sample = (await conn.execute(sa.text("SELECT content_sealed FROM signal ORDER BY id DESC LIMIT 1"))).first()
        if sample is not None and isinstance(sealer, KeyringSealer) and not sealer.is_current(sample[0]):
            return [Finding(False, t("doctor.key_rotation_pending"))]
        return [Finding(True, t("doctor.key_ok"))]
    if state is KeyState.NEW:
        if not isinstance(sealer, KeyringSealer):
            return []
        # Migrated without a key, nothing written yet: the first start with the key marks it sealed.
        made_plain = verdict.canary == canary.PLAINTEXT
        return [Finding(True, t("doctor.key_new_plaintext" if made_plain else "doctor.key_new"))]
    if state is KeyState.PLAINTEXT:
        return []   # said above: stored in clear
    text = {KeyState.NO_KEY: "doctor.key_missing", KeyState.WRONG_KEY: "doctor.key_wrong"}.get(
        state, "doctor.key_needs_sealing")
    return [Finding(False, t(text, **params))]


def _local(config, meldpunt_id: str, moment: datetime) -> str:
    """A moment on the clock of the row's meldpunt (else the first), with the zone: "30-11-2026 09:15 CET"."""
    meldpunt = config.meldpunt_by_id(meldpunt_id) or config.meldpunten[0]
    return moment.astimezone(meldpunt.tz).strftime("%d-%m-%Y %H:%M %Z")


async def _data(db: Database, config, t: Texts) -> list[Finding]:
    out = []
    outbox = OutboxRow.__table__.c
    async with db.engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).where(outbox.parked_at.is_not(None)))).scalar_one()
        parked = (await conn.execute(
            sa.select(outbox.id, outbox.kind, outbox.idempotency_key, outbox.attempts, outbox.parked_at,
                      outbox.last_error, outbox.meldpunt_id).where(outbox.parked_at.is_not(None)).order_by(outbox.id).limit(PARKED_SHOWN)
        )).all()
    if total:
        # Each parked row by its number (for `meldbot outbox resend`), never its recipient or content.
        lines = [t("doctor.parked", count=total)]
        for row_id, kind, key, attempts, parked_at, error, meldpunt_id in parked:
            reference = reference_in(key)
            lines.append(t("doctor.parked_row", id=row_id, kind=kind, attempts=attempts,
                           about=t("delivery.about", reference=reference) if reference else "",
                           since=_local(config, meldpunt_id, parked_at),
                           reason=plain_reason(t, error), error=error or "?"))
        if total > len(parked):
            lines.append(t("doctor.parked_more", count=total - len(parked)))
        lines.append(t("doctor.parked_todo"))
        out.append(Finding(False, "\n".join(lines)))
    else:
        out.append(Finding(True, t("doctor.parked_none")))
    return out


async def _waiting(db: Database, config, t: Texts, now: datetime) -> list[Finding]:
    """Messages due for more than an hour that nobody claims: no `meldbot run` with their platform is
    running, or the platform is switched off in the configuration (the bot parks those after the hour)."""
    outbox = OutboxRow.__table__.c
    late = now - RetryPolicy().switched_off_after
    where = (outbox.delivered_at.is_(None), outbox.parked_at.is_(None), outbox.next_attempt_at < late,
             sa.or_(outbox.claimed_until.is_(None), outbox.claimed_until < now))
    async with db.engine.connect() as conn:
        total = (await conn.execute(sa.select(sa.func.count()).where(*where))).scalar_one()
        rows = (await conn.execute(
            sa.select(outbox.id, outbox.kind, outbox.idempotency_key, outbox.recipient_platform, outbox.next_attempt_at,
                      outbox.meldpunt_id)
            .where(*where).order_by(outbox.id).limit(PARKED_SHOWN))).all()
    if not total:
        return []
    off = config.platforms_off
    lines = [t("doctor.waiting", count=total)]
    for row_id, kind, key, platform, due, meldpunt_id in rows:
        reference = reference_in(key)
        lines.append(t("doctor.waiting_row", id=row_id, kind=kind, platform=platform,
                       about=t("delivery.about", reference=reference) if reference else "",
                       since=_local(config, meldpunt_id, due),
                       off=t("doctor.waiting_off") if platform in off else ""))
    if total > len(rows):
        lines.append(t("doctor.parked_more", count=total - len(rows)))
    lines.append(t("doctor.waiting_todo"))
    return [Finding(False, "\n".join(lines))]


def _status_files(store: Path) -> list[dict]:
    """What each process wrote in its store folder: the folder itself (one process) and one subfolder per
    `--instance` (several processes on one machine)."""
    found = []
    for path in [store / "status.json", *sorted(store.glob("*/status.json"))]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            found.append(data)
    return found


def _matrix_status(config, t: Texts) -> list[Finding]:
    """What the running bot wrote in its store folder(s): its cross-signing identity, unreadable messages."""
    statuses = _status_files(Path(config.matrix.store_path))
    identities = {s.get("identity") for s in statuses}
    if "mismatch" in identities:
        found = [Finding(False, t("doctor.matrix_identity_mismatch"))]
    elif "error" in identities:
        found = [Finding(False, t("doctor.matrix_identity_error"))]
    elif identities & {"created", "present"}:
        found = [Finding(True, t("doctor.matrix_identity_ok"))]
    else:
        found = [Finding(True, t("doctor.matrix_identity_unknown"))]
    # Only the last week counts as a problem: one failure long ago is not a reason to alarm now.
    week_ago = time.time() - 7 * 86400
    recent = sum(1 for status in statuses for moment in status.get("undecryptable_times", [])
                 if isinstance(moment, (int, float)) and moment >= week_ago)
    total = sum(int(status.get("undecryptable") or 0) for status in statuses)
    found.append(Finding(recent == 0, t("doctor.matrix_undecryptable", count=recent, total=total) if recent
                         else t("doctor.matrix_undecryptable_none", total=total)))
    return found


async def _matrix_holder(db: Database, sealer, config, t: Texts, now: datetime) -> list[Finding]:
    """Which process reads Matrix (several processes on one database: one holds the sync stream)."""
    from meldbot.storage.matrix import MatrixSyncState
    from meldbot.storage.uow import UnitOfWorkFactory

    try:
        _position, holder, since = await MatrixSyncState(UnitOfWorkFactory(db, sealer), config.matrix.user_id).get()
    except Exception as exc:   # a doctor reports; it does not stop at one question it cannot answer
        return [Finding(False, t("doctor.db_down", error=type(exc).__name__))]
    if holder is None:
        return [Finding(True, t("doctor.matrix_holder_none"))]
    return [Finding(True, t("doctor.matrix_holder", name=holder,
                            since=_local(config, "", since) if since else "?"))]


async def _platforms(config, t: Texts) -> list[Finding]:
    out = []
    if not config.matrix.enabled and not config.teams.enabled:
        out.append(Finding(True, t("doctor.no_platform")))
    if config.matrix.enabled:
        url = config.matrix.homeserver.rstrip("/") + "/_matrix/client/versions"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                async with http.get(url) as response:
                    ok = response.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            ok = False
        out.append(Finding(ok, t("doctor.matrix_ok", url=config.matrix.homeserver) if ok
                           else t("doctor.matrix_down", url=config.matrix.homeserver)))
        out += _matrix_status(config, t)
        if config.data_key is None:   # nio's own default pickle key: a copy of the folder reads the bot's chats
            out.append(Finding(False, t("doctor.matrix_store_unprotected"), warning=True))
    if config.teams.enabled:
        if config.teams.anonymous:
            out.append(Finding(False, t("doctor.teams_anonymous")))
        else:
            out.append(Finding(True, t("doctor.teams_ok", app_id=config.teams.app_id)))
    return out
