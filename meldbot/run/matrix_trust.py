"""`meldbot matrix-trust @af:server`: an administrator confirms an AF's Matrix identity (cross-signing).

With `af_device_policy = "signed"` nothing goes to an AF before this; with "tofu" it is needed after an AF's
identity changed (a reset in Element, or someone else's keys). The command shows the identity's master key
and the AF's devices, signed by it or not, so the administrator can check them with the AF (Element:
Instellingen > Sessies), then pins it and wakes what waited in the outbox for that AF.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone

from meldbot.core.messaging import Identity
from meldbot.core.text import clean_name

EXIT_CONFIG = 2


def add_command(sub) -> None:
    trust = sub.add_parser("matrix-trust", help="bevestig de sleutels (cross-signing) van een AF op Matrix")
    trust.add_argument("user_id", help="het Matrix-id van de AF, bijvoorbeeld @anna:bergeijk.nl")
    trust.add_argument("--yes", action="store_true", help="niet om bevestiging vragen")


def fingerprint(key: str) -> str:
    """A public key in groups of four, as Element shows session keys. The homeserver passes on whatever
    the account holder uploaded: anything but an ed25519 key (43 characters of unpadded base64) is shown
    escaped on one line, as an unusual device id is."""
    if not re.fullmatch(r"[A-Za-z0-9+/]{43}", key):
        from meldbot.adapters.matrix.trust import shown_device_id

        return shown_device_id(key)
    return " ".join(key[i:i + 4] for i in range(0, len(key), 4))


async def run_command(config, t, args) -> int:
    from meldbot.adapters.matrix.cross_signing import CrossSigningError, device_trust, master_public_of, query_keys
    from meldbot.adapters.matrix.trust import shown_device_id
    from meldbot.run.cli import _matrix_admin_client, _MatrixAdminLoginError
    from meldbot.storage.db import Database
    from meldbot.storage.sealing import sealer_for
    from meldbot.storage.uow import UnitOfWorkFactory

    settings, af_id = config.matrix, args.user_id
    if not settings.homeserver or not settings.user_id:
        print(t("cli.trust.not_configured"), file=sys.stderr)
        return EXIT_CONFIG
    if not config.af_for("matrix", af_id):
        # Ids compare exactly; one that differs only in capitals is named, so the fix is plain.
        alike = sorted({af.matrix for m in config.meldpunten for af in m.af
                        if af.matrix and af.matrix.casefold() == af_id.casefold()})
        if alike:
            print(t("cli.trust.not_an_af_case", user_id=af_id, configured=alike[0]), file=sys.stderr)
        else:
            print(t("cli.trust.not_an_af", user_id=af_id), file=sys.stderr)
        return EXIT_CONFIG
    af_id = config.af_for("matrix", af_id)[0][1].matrix  # as configured: the outbox knows it so
    try:
        async with _matrix_admin_client(settings, settings.password.get_secret_value()) as client:
            answer = await query_keys(client, [af_id])
    except _MatrixAdminLoginError as exc:
        print(t("cli.trust.login_refused", error=str(exc)), file=sys.stderr)
        return 1
    except CrossSigningError as exc:
        print(t("cli.trust.homeserver", homeserver=settings.homeserver, error=str(exc)), file=sys.stderr)
        return 1
    master = master_public_of(answer, af_id)
    if master is None:
        print(t("cli.trust.no_identity", user_id=af_id), file=sys.stderr)
        return 1
    devices = (answer.get("device_keys") or {}).get(af_id) or {}
    print(t("cli.trust.explain", user_id=af_id, master=fingerprint(master)))
    for device_id, keys in sorted(devices.items()):
        # Name and id are both chosen by whoever holds the account (a login takes any device id): no
        # terminal escapes, no bidi tricks, one line each; an unusual id is shown escaped, not cleaned.
        name = clean_name(str((keys.get("unsigned") or {}).get("device_display_name") or "")) or "?"
        signed = device_trust(answer, af_id, device_id).signed_by_owner
        print(t("cli.trust.device_signed" if signed else "cli.trust.device_unsigned", name=name,
                device_id=shown_device_id(device_id)))
    if not args.yes:
        if not sys.stdin.isatty():
            print(t("cli.trust.needs_yes"), file=sys.stderr)
            return 1
        if input(t("cli.trust.confirm")).strip().casefold() not in ("ja", "j", "yes", "y"):
            print(t("cli.trust.cancelled"))
            return 1
    db = Database(config.storage.url)
    try:
        await db.check_schema()
        from meldbot.storage import canary

        await canary.ensure(db, sealer_for(config))
        now = datetime.now(timezone.utc)
        async with UnitOfWorkFactory(db, sealer_for(config))() as uow:
            state = dict(await uow.matrix_trust.get(settings.user_id, af_id) or {})
            state.update(master=master, confirmed=True, pending=None, alerted=None,
                         devices=sorted(set(state.get("devices", [])) | set(devices)))
            await uow.matrix_trust.put(settings.user_id, af_id, state, now)
            await uow.outbox.wake(Identity("matrix", af_id), now)
            await uow.commit()
    finally:
        await db.dispose()
    print(t("cli.trust.done", user_id=af_id))
    return 0
