"""`meldbot outbox list` and `meldbot outbox resend <nummer>|--all-parked`: the administrator's view of
messages that could not be delivered, and a way to send them again once the cause is fixed.

What is shown: the row's number, its kind, the signal reference its key names, whether it is for a melder or
an AF, the platform, attempts, since when, and the reason in plain words. Never the content or who the
recipient is. Besides parked and failing rows, rows due for more than an hour that nobody claims: no
`meldbot run` with their platform is running, or the platform is switched off in the configuration.
The running bot (`meldbot run`) does the sending: `resend` only makes the rows due now.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime, timezone

from meldbot.service.outbox import RetryPolicy

log = logging.getLogger("meldbot.outbox")


def add_command(sub) -> None:
    outbox = sub.add_parser("outbox", help="berichten die niet bezorgd konden worden: bekijken en opnieuw versturen")
    actions = outbox.add_subparsers(dest="outbox_command", required=True)
    listing = actions.add_parser("list", help="berichten die stil staan, mislukken of al lang wachten "
                                 "(nooit inhoud of namen)")
    listing.add_argument("--all", action="store_true", help="ook berichten die nog gewoon wachten")
    resend = actions.add_parser("resend", help="zet een bericht dat stil staat opnieuw klaar; de bot verstuurt het")
    resend.add_argument("id", nargs="?", type=int, help="het nummer uit meldbot outbox list")
    resend.add_argument("--all-parked", action="store_true", help="alle berichten die stil staan")


def _now() -> datetime:
    from meldbot.run.cli import _now as cli_now

    return cli_now()


async def run_command(config, t, args) -> int:
    from meldbot.run.cli import _unit_of_work

    if args.outbox_command == "list":
        late = _now() - RetryPolicy().switched_off_after
        async with _unit_of_work(config) as uow:
            rows = await uow.outbox.troubled(every=True)
            stuck = {r.id for r in rows if r.parked_at is None and not r.attempts and r.next_attempt_at < late}
            rows = [r for r in rows if args.all or r.parked_at is not None or r.attempts or r.id in stuck]
            platforms = await _platforms(uow, [r.id for r in rows])
        _print_list(config, t, rows, platforms, stuck)
        return 0
    if (args.id is None) == (not args.all_parked):
        print(t("cli.outbox.resend_usage"), file=sys.stderr)
        return 1
    now = _now()
    async with _unit_of_work(config) as uow:
        ids = await uow.outbox.resend(None if args.all_parked else [args.id], now)
        await uow.commit()
    if not ids:
        if args.all_parked:
            print(t("cli.outbox.resent_none"))
            return 0
        print(t("cli.outbox.resend_unknown", id=args.id), file=sys.stderr)
        return 1
    log.warning("outbox rows queued again by the administrator", extra={"count": len(ids)})
    print(t("cli.outbox.resent", count=len(ids), ids=", ".join(str(i) for i in ids)))
    return 0


async def _platforms(uow, ids: list[int]) -> dict[int, str]:
    """The platform of each row (a column in clear; the recipient itself is sealed)."""
    import sqlalchemy as sa

    from meldbot.storage.tables import OutboxRow

    found: dict[int, str] = {}
    for start in range(0, len(ids), 500):
        rows = await uow.session.exec(sa.select(OutboxRow.id, OutboxRow.recipient_platform)
                                      .where(OutboxRow.id.in_(ids[start:start + 500])))
        found.update((row_id, platform) for row_id, platform in rows.all())
    return found


def _print_list(config, t, rows, platforms: dict[int, str], stuck: set[int]) -> None:
    from meldbot.service.deliveries import MELDER_KINDS, plain_reason, reference_in

    if not rows:
        print(t("cli.outbox.list_none"))
        return
    print(t("cli.outbox.list_header", count=len(rows)))
    print(t("cli.outbox.columns"))
    for row in rows:
        meldpunt = config.meldpunt_by_id(row.meldpunt_id)
        since = (row.parked_at or row.created_at).astimezone(meldpunt.tz if meldpunt else timezone.utc)
        platform = platforms.get(row.id, "?")
        if row.parked_at is not None:
            status = t("cli.outbox.status_parked")
        elif row.id in stuck:
            status = t("cli.outbox.status_stuck")
        elif row.attempts:
            status = t("cli.outbox.status_retrying")
        else:
            status = t("cli.outbox.status_waiting")
        to = t("cli.outbox.to_melder") if row.kind in MELDER_KINDS else t("cli.outbox.to_af")
        reason = f"{plain_reason(t, row.last_error)} ({row.last_error})" if row.last_error else "-"
        if row.id in stuck:
            reason = t("cli.outbox.stuck_off" if platform in config.platforms_off else "cli.outbox.stuck",
                       platform=platform)
        print(f"{row.id:<7} {row.kind:<16} {reference_in(row.key) or '-':<13} {to:<7} {platform:<9} "
              f"{row.attempts:<9} {since:%Y-%m-%d %H:%M %Z}  {status:<17} {reason}")
    print(t("cli.outbox.list_footer"))
    if stuck & {row.id for row in rows}:
        print(t("cli.outbox.stuck_footer"))
