"""Benchmark 5: growth. Does the cost of `toon`, `lijst` and a reminder sweep follow what is asked
and what is due, or the size of the signal table?

One fresh PostgreSQL database grows 10k -> 100k -> 1M signals (quick: 1k -> 10k); at each size:

* `toon <number>` through `app.bot.handle` as the AF would type it (the reminder's action button):
  50 different signals per size, each a fresh lookup with "reeds bekend" finding 3 earlier signals
  (same address, one also the same person); p95. "Reeds bekend" also compares, in memory, the signals
  that share a blocking key (house number and street letter, postcode digits and number, name
  skeletons; meldbot.core.similar), at most 40 per `toon`: the history stores those keys as the app does.
* `lijst` through `app.bot.handle`, 30 times; p95. The queue is the same 40 open signals at every size.
* one reminder sweep, `app.reminders.sweep()`: 9 timed sweeps, each after deleting the
  reminder_sent/outbox rows the previous sweep wrote, so each does the full work of a first sweep
  (claim and queue the same ~40 reminders plus the weekly overview); the figure is their median.
  Detail: min/max, and a steady sweep (nothing new due: every claim conflicts).

The data (one meldpunt, ten years of a gemeente's work, now = Wednesday 18 November 2026 10:30):

* The current work (the same at every size) goes through the real app at stage 1: 45 reports made in
  the chat dialog at their own dates (ManualClock), then AF commands (oppakken, doorzetten, feedback,
  terugkoppelen, sluiten) at later dates. 40 are open; 35 have a reminder due now (pick up, urgent,
  partner feedback, melder news, melder silence).
* The history is bulk-loaded with COPY: closed signals created uniformly over ten years. Retention
  (24 months) is applied as the nightly job would have: signals closed before the last run's cutoff
  are erased rows (content "{}", no melder, keys, audit or events but one "gewist" event; the
  monitoring facts stay); later ones are complete: sealed content, melder, matching keys (address
  street+postcode, organisation, sometimes an AF-added person), events, audit, and reminders sent
  in the past. Every history signal had its melder informed after closing, so it is no reminder
  candidate. Each growth stage back-fills more history into the same ten years (reference numbers
  continue per year, so within a year they are not chronological across stages).
* Sealing is the app's real AES-GCM/HMAC sealer with a data key. Content and matching keys are
  per row; identical small plaintexts (event payloads, actor names, a melder's identity) are sealed
  once and the ciphertext reused, which changes nothing for the code that reads them.

The app is built but not started (`async with app` would run the scheduler, the catch-up sweep and
retention in the background and disturb the timings); the flood guard is widened because one AF
issues 80+ commands in a few seconds.
"""

from __future__ import annotations

import bisect
import gc
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy import event

from benchmarks.common import Figure, bench_config, main, percentile, summary_ms
from meldbot.core import matching, similar
from meldbot.core.matching import MatchKey, Mention
from meldbot.run.app import build_app
from meldbot.service.bot import FloodGuard
from meldbot.core.clock import ManualClock
from meldbot.core.domain import Content, Reference
from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.service.retention import months_before
from meldbot.storage.db import Database
from tests.support import FakeNotifier

SECTION = "5 Growth"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
TZ = ZoneInfo("Europe/Amsterdam")
NOW = datetime(2026, 11, 18, 9, 30, tzinfo=UTC)          # Wednesday 10:30 in Amsterdam
MELDPUNT = "bergeijk"
RETENTION_MONTHS = 24                                       # config.example.toml
HISTORY_START = datetime(2016, 11, 18, tzinfo=UTC)          # ten years of work
HISTORY_END = NOW - timedelta(days=60)                      # later: the current work, made via the app
TOON_PER_SIZE = 50
MATCHES_PER_TARGET = 3
LIJST_RUNS = 30
SWEEPS = 9
STEADY_SWEEPS = 3
CHUNK = 25_000
TOON_TARGET_MS = 20.0
SWEEP_TARGET_MS = 100.0
RATIO_TARGET = 1.5
SLOW_STATEMENT_MS = 10.0

# --- vocabulary -----------------------------------------------------------------------------------

STREET_PARTS = (  # noqa: SIM905
    "Kerk Molen Dorps Stations School Linden Eiken Beuken Berken Wilgen Kastanje Esdoorn Populieren Heide "
    "Akker Bos Veld Beek Brug Dijk Haven Kloster Koren Vlas Hennep Klaver Rozen Tulpen Lelie Narcissen "
    "Wilhelmina Juliana Beatrix Oranje Nassau Prinsen Heren Keizers Burcht Slot Kasteel Abdij Kapel "
    "Smeden Bakkers Wevers Vissers Schippers Kuipers Mulders Hoeven Hazel Vlier Meidoorn Hulst Varen"
).split()
STREET_SUFFIXES = "straat laan weg plein dijk kade hof dreef pad singel gracht steeg".split()  # noqa: SIM905
PLACES = ("Bergeijk", "Westerhoven", "Riethoven", "Luyksgestel", "Weebosch", "Eersel", "Valkenswaard",
          "Veldhoven", "Eindhoven", "Bladel", "Reusel", "Hapert")
SURNAMES = (  # noqa: SIM905
    "Jansen Bakker Visser Smit Meijer Mulder Bos Vos Peters Hendriks Dekker Brouwer Dijkstra Kok Verhoeven "
    "Willems Hoekstra Maas Verbeek Kramer Schouten Vermeulen Post Kuipers Veenstra Prins Huisman Peeters "
    "Wouters Kuiper Schipper Blom Timmermans Jacobs Koster Molenaar Kuijpers Gerritsen Dijkman Sanders "
    "Hermans Evers Coenen Franken Martens Claassen Lambregts Hurkmans Swinkels Vissers Rovers Aarts "
    "Kusters Hoeks Michiels Biemans Donkers Schellekens Vlemmix Cuppens Lavrijsen Baijens Smolders "
    "Novak Kowalski Popescu Ionescu Horvat Petrov Ivanova Nowak Wojcik Kaminski Lewandowski Dumitru"
).split()
FIRST_NAMES = (  # noqa: SIM905
    "Piet Jan Kees Henk Anna Maria Eva Sanne Lotte Johan Willem Mark Bas Tom Lisa Iris Fleur Daan Bram "
    "Lucas Sem Noah Emma Julia Tess Sara Marek Piotr Andrei Elena Ioana Tomasz Katarzyna Mihai Vasile "
    "Olena Oksana Dmytro Ivan Natalia Agnieszka Krzysztof Jakub Adrian Ana Bogdan Stefan Irina Olga"
).split()
TRADES = ("Uitzend", "Schoonmaak", "Bouw", "Transport", "Logistiek", "Horeca", "Tuinbouw", "Nagelstudio",
          "Autowas", "Massage", "Beveiliging", "Productie", "Champignon", "Sloop", "Koeriers")
WHAT = (
    "Een man houdt de paspoorten van {n} vrouwen en schrijft steeds nieuwe mensen in.",
    "In een woning slapen {n} mensen op stapelbedden; ze worden elke ochtend met een busje opgehaald.",
    "Een jonge vrouw komt met een oudere man aan de balie en mag zelf niets zeggen.",
    "Uitzendkrachten werken {n} uur per dag, krijgen geen loonstrook en moeten contant huur betalen.",
    "Bij een huisbezoek bleken {n} bewoners zonder eigen sleutel in een kamer te wonen.",
    "Een minderjarige meldt dat zij voor een oudere vriend pakketjes moet rondbrengen.",
    "Steeds andere vrouwen op hetzelfde adres, de ramen zijn afgeplakt en er komen 's nachts auto's.",
    "Een vergunningaanvrager vertelt dat zijn werkgever zijn loon inhoudt voor een schuld van {n} duizend euro.",
    "Toezichthouders zagen {n} arbeiders in een schuur slapen zonder sanitair.",
    "Een cliënt zegt dat hij zijn bankpas heeft moeten afgeven aan degene die zijn werk regelde.",
)
WHEN = ("gisteren", "vorige week", "afgelopen maandag", "eergisteren", "vanochtend", "twee weken geleden")
FEEDBACK = ("Politie kent het adres en neemt het mee in lopend onderzoek.",
            "Arbeidsinspectie heeft een inspectie gepland.",
            "Geen aanwijzingen voor uitbuiting gevonden bij controle.",
            "Zorgcoördinator heeft contact gelegd met de betrokkene.")
INFORMED = ("Dank voor je melding, we hebben hem opgepakt.",
            "Je melding is doorgezet naar een ketenpartner; dank je wel.",
            "De melding is afgerond. Dank voor je oplettendheid.")
PARTNERS = ("politie", "nla", "zorgcoordinator", "kmar", "ind", "riec", "veiligthuis")
FORMS = (("arbeid", 40), ("seksueel", 30), ("crimineel", 15), ("onbekend", 12), ("orgaan", 3))
CONTEXTS = (("balie", 35), ("huisbezoek", 30), ("toezicht", 20), ("vergunning", 10), ("anders", 5))
OUTCOMES = (("afgerond", 45), ("geen-mensenhandel", 25), ("ander-fenomeen", 15), ("onvoldoende-info", 15))
PSEUDONYM_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
STAFF = 600                                                 # municipality employees who report


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _weighted(pairs):
    values = [v for v, _ in pairs]
    cumulative, total = [], 0
    for _, w in pairs:
        total += w
        cumulative.append(total)
    return values, cumulative, total


class Pick:
    def __init__(self, rng: random.Random, pairs) -> None:
        self.rng = rng
        self.values, self.cumulative, self.total = _weighted(pairs)

    def __call__(self):
        return self.values[bisect.bisect_right(self.cumulative, self.rng.random() * self.total)]


def _months_after(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.month - 1 + months, 12)
    day = moment.day
    while True:
        try:
            return moment.replace(year=moment.year + year, month=month + 1, day=day)
        except ValueError:
            day -= 1


def _retention_run(moment: datetime) -> datetime:
    """The nightly retention job (03:17 local) on the local day of `moment` (or the next one)."""
    local = moment.astimezone(TZ)
    run = datetime.combine(local.date(), datetime.min.time().replace(hour=3, minute=17), tzinfo=TZ)
    return run if run >= local else run + timedelta(days=1)


# --- the current work, through the real app ----------------------------------------------------------

def _at(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(date.fromisoformat(day), datetime.min.time().replace(hour=hour, minute=minute),
                            tzinfo=TZ).astimezone(UTC)


def _days(day: str, n: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=n)).isoformat()


def _next_weekday(day: str) -> str:
    d = date.fromisoformat(day)
    while d.weekday() >= 5:
        d += timedelta(days=1)
    return d.isoformat()


class Chat:
    def __init__(self, app, clock: ManualClock) -> None:
        self.app, self.clock = app, clock

    async def say(self, user: str, text: str, at: datetime | None = None) -> str:
        if at is not None:
            self.clock.set(at)
        replies = await self.app.bot.handle(IncomingMessage(sender=Identity("console", user), conversation_id=user,
                                                            text=text, sender_name=user.title()))
        return "\n".join(r.text for r in replies)

    async def report(self, user: str, lines: list[str], at: datetime) -> int:
        self.clock.set(at)
        out = ""
        for line in lines:
            out = await self.say(user, line)
        refs = [w.strip(".,:;") for w in out.split() if w.startswith("MH-2026-")]
        if not refs:
            raise RuntimeError(f"report was not submitted: {out[-300:]!r}")
        return int(refs[0].rsplit("-", 1)[1])

    async def af(self, text: str, at: datetime, user: str = "af") -> str:
        out = await self.say(user, text, at)
        if "iets mis" in out or "Typ:" in out or "vind ik niet" in out:
            raise RuntimeError(f"AF command {text!r} failed: {out[:300]!r}")
        return out


async def seed_current_work(app, clock: ManualClock, rng: random.Random) -> dict:
    """The open and recently closed signals of now, made in the chat as people would have made them."""
    chat = Chat(app, clock)
    groups: dict[str, list[int]] = {}
    n = 0

    def script(urgent: bool = False) -> list[str]:
        nonlocal n
        n += 1
        street = f"{rng.choice(STREET_PARTS)}{rng.choice(STREET_SUFFIXES)}"
        who = rng.choice(["onbekend", f"{rng.choice(SURNAMES)} {rng.choice(TRADES)} B.V.",
                          f"een man van ongeveer {rng.randint(25, 60)} jaar"])
        return ["spoed" if urgent else "melden", rng.choice(WHAT).format(n=rng.randint(3, 12)),
                f"{street} {rng.randint(1, 2999)}, Bergeijk", rng.choice(WHEN), who,
                rng.choice(["arbeid", "seksueel", "crimineel", "onbekend"]),
                rng.choice(["balie", "huisbezoek", "toezicht"]), rng.choice(["nee", "nee", "ja"]), "versturen"]

    async def made(group: str, day: str, hour: int, urgent: bool = False, minute: int = 0) -> int:
        number = await chat.report(f"medewerker{rng.randrange(STAFF)}", script(urgent), _at(day, hour, minute))
        groups.setdefault(group, []).append(number)
        return number

    # A: new, nobody picked them up -> "oppakken" due.
    for i, day in enumerate(["2026-11-09", "2026-11-10", "2026-11-11", "2026-11-12", "2026-11-13", "2026-11-16"]):
        await made("pick-up due", day, 9 + i % 6)
    # B: urgent, not picked up -> "spoed" due every hour.
    await made("urgent due", "2026-11-17", 14, urgent=True)
    await made("urgent due", "2026-11-18", 8, urgent=True, minute=40)
    # C: picked up long ago, the melder never heard anything -> "melder" (silence) due.
    for i in range(8):
        day = _next_weekday(_days("2026-09-14", 2 * i))
        number = await made("silence due", day, 10)
        await chat.af(f"oppakken {number}", _at(_next_weekday(_days(day, 1)), 9))
    # D: forwarded, no partner feedback for > 10 working days -> "partner" due.
    for i in range(8):
        day = _next_weekday(_days("2026-09-21", 2 * i))
        number = await made("partner due", day, 11)
        await chat.af(f"oppakken {number}", _at(_next_weekday(_days(day, 1)), 9))
        await chat.af(f"terugkoppelen {number} {INFORMED[0]}", _at(_next_weekday(_days(day, 1)), 9, 30))
        await chat.af(f"doorzetten {number} {PARTNERS[i % 3]}", _at(_next_weekday(_days(day, 3)), 10))
    # E: partner feedback arrived last week, the melder was not told yet -> "melder" (news) due.
    for i in range(6):
        day = _next_weekday(_days("2026-10-12", i))
        number = await made("news due", day, 13)
        await chat.af(f"oppakken {number}", _at(_next_weekday(_days(day, 1)), 9))
        await chat.af(f"terugkoppelen {number} {INFORMED[0]}", _at(_next_weekday(_days(day, 1)), 9, 30))
        await chat.af(f"doorzetten {number} politie", _at(_next_weekday(_days(day, 2)), 10))
        await chat.af(f"feedback {number} politie {FEEDBACK[i % 4]}", _at(_next_weekday(_days("2026-11-09", i % 4)), 11))
    # F: in progress, recent, nothing due.
    for i in range(10):
        day = _next_weekday(_days("2026-11-02", i + 1))
        number = await made("open, nothing due", day, 14)
        await chat.af(f"oppakken {number}", _at(day, 16), user="af" if i % 3 else "af2")
    # G: closed last week, the melder not told yet -> "melder" (news) due; not open.
    for i in range(5):
        day = _next_weekday(_days("2026-10-01", 2 * i))
        number = await made("closed, melder news due", day, 15)
        await chat.af(f"oppakken {number}", _at(_next_weekday(_days(day, 1)), 9))
        await chat.af(f"terugkoppelen {number} {INFORMED[0]}", _at(_next_weekday(_days(day, 1)), 9, 30))
        await chat.af(f"sluiten {number} afgerond", _at(_next_weekday(_days("2026-11-09", i % 4)), 15))
    clock.set(NOW)
    await app.dispatcher.deliver_pending()
    return groups


# --- the history, generated and bulk-loaded --------------------------------------------------------

SIGNAL_COLUMNS = ("id", "meldpunt_id", "ref_year", "ref_number", "status", "form", "context", "urgent", "anonymous",
                  "pseudonym", "handler", "outcome", "content_sealed", "mentions_sealed", "created_at", "updated_at", "closed_at",
                  "partners", "forwarded_at", "partner_feedback_at", "melder_informed_at",
                  "melder_last_informed_at", "merged_into", "erased_at")
EVENT_COLUMNS = ("id", "signal_id", "meldpunt_id", "at", "actor", "kind", "data_sealed")
AUDIT_COLUMNS = ("id", "meldpunt_id", "signal_id", "at", "actor_kind", "actor_sealed", "action", "detail_sealed")
MELDER_COLUMNS = ("signal_id", "meldpunt_id", "lookup", "identity_sealed")
KEY_COLUMNS = ("id", "signal_id", "meldpunt_id", "kind", "digest", "source")
REMINDER_COLUMNS = ("id", "key", "meldpunt_id", "signal_id", "kind", "slot", "due_at", "sent_at")
TABLES = {"signal": SIGNAL_COLUMNS, "melder": MELDER_COLUMNS, "signal_event": EVENT_COLUMNS, "audit": AUDIT_COLUMNS,
          "signal_key": KEY_COLUMNS, "reminder_sent": REMINDER_COLUMNS}
SEQUENCED = ("signal", "signal_event", "audit", "signal_key", "reminder_sent")


class History:
    """Generates closed signals of the past, consistent with retention, for COPY into the tables."""

    def __init__(self, sealer, uow_factory, rng: random.Random) -> None:
        self.sealer = sealer
        self.rng = rng
        self.form, self.context, self.outcome = Pick(rng, FORMS), Pick(rng, CONTEXTS), Pick(rng, OUTCOMES)
        self._sealed: dict[str, str] = {}
        uow = uow_factory()
        self.staff = []
        for k in range(STAFF):
            identity = Identity("console", f"medewerker{k}")
            self.staff.append((uow.person_lookup(identity), json.dumps(
                {"platform": "console", "user_id": identity.user_id, "name": f"Medewerker{k}".title()})))
        # The last nightly retention run was today 03:17; it erased what was closed before its cutoff.
        last_run = _retention_run(NOW) - timedelta(days=1) if _retention_run(NOW) > NOW else _retention_run(NOW)
        self.cutoff = months_before(last_run.astimezone(TZ), RETENTION_MONTHS).astimezone(UTC)
        self.streets = [f"{p}{s}" for p in STREET_PARTS for s in STREET_SUFFIXES]
        self.postcodes = {}
        for street in self.streets:
            letters = "".join(rng.choice("ABCEGHJKLMNPRTVWXZ") for _ in range(2))
            self.postcodes[street] = f"{rng.randint(5570, 5579)}{letters}"
        self.years: dict[int, int] = {}
        self.ids: dict[str, int] = {}
        self.recent_refs: list[str] = []

    def seal(self, text: str) -> str:
        """Identical small plaintexts: one ciphertext (still the real sealer, still readable)."""
        sealed = self._sealed.get(text)
        if sealed is None:
            sealed = self._sealed[text] = self.sealer.seal(text)
        return sealed

    def next_id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    async def load_state(self, conn) -> None:
        for table in SEQUENCED:
            self.ids[table] = await conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {table}")
        self.years = {r["year"]: r["last"] for r in await conn.fetch("SELECT year, last FROM reference_counter")}

    async def save_counters(self, conn) -> None:
        await conn.executemany(
            "INSERT INTO reference_counter (year, last) VALUES ($1, $2) "
            "ON CONFLICT (year) DO UPDATE SET last = greatest(reference_counter.last, EXCLUDED.last)",
            sorted(self.years.items()))
        for table in SEQUENCED:
            await conn.execute(f"SELECT setval('{table}_id_seq', greatest((SELECT max(id) FROM {table}), 1))")

    # -- plans: when each signal of a batch was made, and which ones are the `toon` targets --------

    def plan(self, n: int) -> tuple[list[tuple[float, int, int]], int]:
        """(created timestamp, role, group) sorted by time. Roles: 0 random history, 1 toon target,
        2 an earlier signal with the target's address (group = target index)."""
        rng = self.rng
        targets = min(TOON_PER_SIZE, n // (MATCHES_PER_TARGET + 1))
        plans = []
        t_start, t_end = HISTORY_START.timestamp(), HISTORY_END.timestamp()
        for i in range(targets):
            plans.append((rng.uniform(_at("2026-01-12", 0).timestamp(), _at("2026-09-10", 0).timestamp()), 1, i))
            for _ in range(MATCHES_PER_TARGET):
                plans.append((rng.uniform(_at("2025-01-06", 0).timestamp(), _at("2025-12-15", 0).timestamp()), 2, i))
        plans += [(rng.uniform(t_start, t_end), 0, 0) for _ in range(n - len(plans))]
        plans.sort()
        return plans, targets

    def street_variant(self, street: str) -> str | None:
        """The street with one letter of its stem left out, as someone might type it, such that the app's
        own comparison (meldbot.core.similar) calls it a look-alike of `street`; None if no such spelling."""
        cache = self.__dict__.setdefault("_variants", {})
        if street not in cache:
            cache[street] = None
            mine = similar.profile([f"{street} 3001"])
            for i in range(1, len(street) - 1):
                candidate = street[:i] + street[i + 1:]
                reasons = similar.compare(mine, similar.profile([f"{candidate} 3001"]))
                if any(r.kind == "adres" and not r.same for r in reasons):
                    cache[street] = candidate
                    break
        return cache[street]

    def target_identity(self, group: int, salt: int) -> tuple[str, str, str]:
        """The shared address and person of one `toon` target group (house numbers >= 3000: reserved)."""
        rng = random.Random(salt * 1000 + group)
        street = rng.choice(self.streets)
        number = f"{3000 + salt * 100 + group}"
        person = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)} {rng.choice(SURNAMES)}"
        return street, number, person

    # -- rows ---------------------------------------------------------------------------------------

    def rows(self, plans, salt: int, targets: dict[int, list]):
        """Yields dicts table -> records for chunks of `plans`."""
        for start in range(0, len(plans), CHUNK):
            out = {table: [] for table in TABLES}
            for created_ts, role, group in plans[start:start + CHUNK]:
                self._one(out, datetime.fromtimestamp(created_ts, UTC), role, group, salt, targets)
            yield out

    def _one(self, out, created: datetime, role: int, group: int, salt: int, targets: dict[int, list]) -> None:
        rng, seal, day = self.rng, self.seal, timedelta(days=1)
        signal_id = self.next_id("signal")
        year = created.astimezone(TZ).year
        number = self.years.get(year, 0) + 1
        self.years[year] = number
        reference = str(Reference(year, number))
        if role == 1:
            targets.setdefault(group, []).insert(0, number)
        elif role == 2:
            targets.setdefault(group, []).append(reference)
        urgent = rng.random() < 0.05
        anonymous = rng.random() < 0.3
        pseudonym = f"Melder {rng.choice(PSEUDONYM_LETTERS)}{rng.randint(1, 9)}" if anonymous else None
        handler = "anna" if rng.random() < 0.8 else "bram"
        picked = created + timedelta(hours=rng.uniform(0.5, 30))
        merged_into = None
        if role == 0 and self.recent_refs and rng.random() < 0.01:
            merged_into = rng.choice(self.recent_refs)
        partners: list[str] = []
        forwarded = feedback = None
        if merged_into is None and rng.random() < 0.4:
            partners = [rng.choice(PARTNERS)] + ([rng.choice(PARTNERS)] if rng.random() < 0.15 else [])
            partners = list(dict.fromkeys(partners))
            forwarded = picked + day * rng.uniform(1, 7)
            if rng.random() < 0.8:
                feedback = forwarded + day * rng.uniform(3, 30)
        closed = max(created + day * rng.uniform(2, 40), (feedback or forwarded or picked) + day * rng.uniform(0.2, 5))
        outcome = None if merged_into else self.outcome()
        informed = last_informed = None
        if merged_into is None:
            informed = picked + timedelta(minutes=rng.uniform(5, 600))
            last_informed = closed + day * rng.uniform(0, 2)
        live = closed >= self.cutoff
        erased = None if live else _retention_run(_months_after(closed.astimezone(TZ), RETENTION_MONTHS)).astimezone(UTC)
        self.recent_refs.append(reference)
        if len(self.recent_refs) > 50:
            self.recent_refs.pop(0)

        if not live:
            out["signal"].append((signal_id, MELDPUNT, year, number, "afgesloten", self.form(), self.context(), urgent,
                                  anonymous, None, handler, outcome, seal("{}"), None, _naive(created), _naive(erased),
                                  _naive(closed), ",".join(partners), forwarded and _naive(forwarded),
                                  feedback and _naive(feedback), informed and _naive(informed),
                                  last_informed and _naive(last_informed), merged_into, _naive(erased)))
            out["signal_event"].append((self.next_id("signal_event"), signal_id, MELDPUNT, _naive(erased), "systeem",
                                        "gewist", seal("{}")))
        else:
            if role:
                street, house, person = self.target_identity(group, salt)
            else:
                street, house = rng.choice(self.streets), str(rng.randint(1, 2999))
                if rng.random() < 0.15:
                    house += rng.choice("abc")
                person = f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}" if rng.random() < 0.15 else None
            # The AF tagged the person on the target and on the oldest of its earlier signals.
            tag_person = person if (role != 2 or len(targets[group]) == 1) else None
            postcode = self.postcodes[street]
            keys = [("adres", f"straat:{street.lower()}:{house}"), ("adres", f"postcode:{postcode.lower()}:{house}")]
            place = rng.choice(PLACES[:4])
            # What the answers mention, as SignalRepository.add keeps it (checked against the app's own
            # extraction every 200 signals, like the keys).
            mentions = [Mention(MatchKey(*keys[0]), f"{street} {house}", postcode.lower(), place.casefold()),
                        Mention(MatchKey(*keys[1]), f"{postcode[:4]} {postcode[4:]}", postcode.lower(), place.casefold())]
            r = rng.random()
            if r < 0.35 and role == 0:
                org = f"{rng.choice(STREET_PARTS)}{rng.choice(TRADES).lower()} {rng.choice(SURNAMES)}"
                who = f"{org} B.V."
                keys.append(("organisatie", f"organisatie:{org.lower()}"))
                mentions.append(Mention(MatchKey(*keys[-1]), who))
            elif r < 0.7:
                who = f"een man, {rng.choice(FIRST_NAMES)}, ongeveer {rng.randint(20, 60)} jaar"
            else:
                who = "onbekend"
            content = {"wat": rng.choice(WHAT).format(n=rng.randint(3, 14)),
                       "waar": f"{street} {house}, {postcode[:4]} {postcode[4:]} {place}",
                       "wanneer": rng.choice(WHEN), "wanneer_iso": (created - day).isoformat(), "wie": who}
            # Variant-tolerant matching: the second earlier signal of a target group names the address as
            # someone typed it, a letter short and without postcode, so only meldbot.core.similar's look-alike
            # comparison finds it ("lijkt op: ..."). Its keys and mentions are the app's own extraction.
            variant = self.street_variant(street) if role == 2 and len(targets[group]) == 2 else None
            if variant:
                content["waar"] = f"{variant} {house}"
                mentions = list(similar.content_mentions(Content.from_dict(content)))
                keys = sorted({(k.kind, k.value) for k in matching.extract(
                    [content["wat"], content["waar"], content["wie"]], names=[content["wie"]])})
                targets[group][-1] = "~" + reference
            updated = last_informed or closed
            out["signal"].append((signal_id, MELDPUNT, year, number, "afgesloten", self.form(), self.context(), urgent,
                                  anonymous, pseudonym, handler, outcome,
                                  self.sealer.seal(json.dumps(content, ensure_ascii=False)),
                                  self.sealer.seal(similar.dump_mentions(mentions)), _naive(created),
                                  _naive(updated), _naive(closed), ",".join(partners),
                                  forwarded and _naive(forwarded), feedback and _naive(feedback),
                                  informed and _naive(informed), last_informed and _naive(last_informed),
                                  merged_into, None))
            lookup, identity = self.staff[rng.randrange(STAFF)]
            out["melder"].append((signal_id, MELDPUNT, lookup, seal(identity)))
            lookup_of = self.sealer.lookup
            # As SignalRepository.set_keys stores them: each key with its blocking keys.
            stored = {matching.MatchKey(kind, value) for kind, value in keys}
            for key in sorted(stored | matching.blocks(stored)):
                out["signal_key"].append((self.next_id("signal_key"), signal_id, MELDPUNT, key.kind,
                                          lookup_of("match", key.value), "auto"))
            events: list[tuple] = [(created, "melder", "ingediend", json.dumps({"urgent": urgent}))]
            audit: list[tuple] = [(created, "melder", pseudonym or "melder", "ingediend", None),
                                  (picked, "af", handler, "opgepakt", None), (picked, "af", handler, "gelezen", None)]
            events.append((picked, handler, "opgepakt", json.dumps({"previous": None})))
            if informed:
                events.append((informed, handler, "teruggekoppeld", json.dumps({"text": INFORMED[0]})))
                audit.append((informed, "af", handler, "teruggekoppeld", None))
            if tag_person:
                at = picked + timedelta(minutes=5)
                tag_key = matching.normalise("persoon", tag_person)
                for key in sorted({tag_key} | matching.blocks([tag_key])):
                    out["signal_key"].append((self.next_id("signal_key"), signal_id, MELDPUNT, key.kind,
                                              lookup_of("match", key.value), "kenmerk"))
                events.append((at, handler, "kenmerk", json.dumps({"kind": "persoon", "value": tag_person})))
                audit.append((at, "af", handler, "kenmerk", None))
            for partner in partners:
                events.append((forwarded, handler, "doorgezet", json.dumps({"partner": partner})))
                audit.append((forwarded, "af", handler, "doorgezet", partner))
            if feedback:
                text = rng.choice(FEEDBACK)
                events.append((feedback, handler, "feedback", json.dumps({"partner": partners[0], "text": text})))
                audit.append((feedback, "af", handler, "feedback", partners[0]))
            if merged_into:
                events.append((closed, handler, "samengevoegd", json.dumps({"into": merged_into})))
                audit.append((closed, "af", handler, "samengevoegd", merged_into))
            else:
                events.append((closed, handler, "gesloten", json.dumps({"outcome": outcome})))
                audit.append((closed, "af", handler, "gesloten", outcome))
                events.append((last_informed, handler, "teruggekoppeld", json.dumps({"text": INFORMED[2]})))
                audit.append((last_informed, "af", handler, "teruggekoppeld", None))
            events.sort(key=lambda e: e[0])
            for at, actor, kind, data in events:
                out["signal_event"].append((self.next_id("signal_event"), signal_id, MELDPUNT, _naive(at), actor, kind,
                                            seal(data)))
            audit.sort(key=lambda a: a[0])
            for at, actor_kind, actor, action, detail in audit:
                out["audit"].append((self.next_id("audit"), MELDPUNT, signal_id, _naive(at), actor_kind, seal(actor),
                                     action, None if detail is None else seal(detail)))
            if role == 0 and len(out["melder"]) % 200 == 0:
                self._check_keys(content, keys, mentions)
        # Reminders sent in the past stay (retention keeps them: the signal line stays).
        if rng.random() < 0.3:
            due = created + day
            out["reminder_sent"].append((self.next_id("reminder_sent"), f"oppakken:{reference}:0", MELDPUNT, signal_id,
                                         "oppakken", 0, _naive(due), _naive(due)))
        if rng.random() < 0.1 and informed:
            due = created + timedelta(weeks=6)
            out["reminder_sent"].append((self.next_id("reminder_sent"), f"melder:{reference}:0", MELDPUNT, signal_id,
                                         "melder", 0, _naive(due), _naive(due)))

    @staticmethod
    def _check_keys(content: dict, keys: list[tuple[str, str]], mentions: list[Mention]) -> None:
        """The generated automatic keys and mentions are exactly what the app extracts from the answers."""
        extracted = similar.content_mentions(Content.from_dict(content))
        if extracted != tuple(mentions):
            raise AssertionError(f"generated mentions {mentions} differ from extracted {extracted}")
        found = {(k.kind, k.value) for k in matching.extract([content["wat"], content["waar"], content["wie"]],
                                                             names=[content["wie"]])}
        if found != set(keys):
            raise AssertionError(f"generated keys {sorted(keys)} differ from extracted {sorted(found)}")


async def grow(conn, history: History, n: int, salt: int) -> tuple[list[tuple[int, list[str]]], dict]:
    """Adds `n` history signals; returns the `toon` targets (number, references expected in reeds bekend)."""
    await history.load_state(conn)
    plans, _ = history.plan(n)
    targets: dict[int, list] = {}
    counts = {table: 0 for table in TABLES}
    timing = {"generate": 0.0, "copy": 0.0}
    chunks = history.rows(plans, salt, targets)
    while True:
        started = time.perf_counter()
        batch = next(chunks, None)
        timing["generate"] += time.perf_counter() - started
        if batch is None:
            break
        started = time.perf_counter()
        async with conn.transaction():
            for table, columns in TABLES.items():
                if batch[table]:
                    await conn.copy_records_to_table(table, records=batch[table], columns=columns)
                    counts[table] += len(batch[table])
        timing["copy"] += time.perf_counter() - started
    await history.save_counters(conn)
    started = time.perf_counter()
    await conn.execute("VACUUM (ANALYZE)")
    await conn.execute("CHECKPOINT")
    timing["vacuum analyze"] = time.perf_counter() - started
    found = [(entries[0], entries[1:]) for _, entries in sorted(targets.items())]
    return found, {"rows": counts, **timing}


# --- measuring ---------------------------------------------------------------------------------------

class Statements:
    """Records the SQL the app sends and how long each took (for EXPLAIN when something is slow): through
    SQLAlchemy (its cursor events) and straight on the asyncpg connection (meldbot/storage/fast.py, the turn's
    own statements: the "reeds bekend" candidates, the audit line with the COMMIT)."""

    DRIVER_CALLS = ("fetch", "execute", "executemany")

    def __init__(self, engine) -> None:
        self.engine = engine.sync_engine
        self.seen: list[tuple[float, str, object]] = []
        self._originals: dict[str, object] = {}

    def __enter__(self):
        self.seen.clear()
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        for name in self.DRIVER_CALLS:
            self._originals[name] = original = getattr(asyncpg.Connection, name)
            setattr(asyncpg.Connection, name, self._timed(original, many=name == "executemany"))
        return self

    def __exit__(self, *exc):
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)
        for name, original in self._originals.items():
            setattr(asyncpg.Connection, name, original)

    def _timed(self, original, many: bool):
        seen = self.seen

        async def timed(connection, query, *args, **kwargs):
            # Only meldbot's own calls (meldbot/storage/fast.py): SQLAlchemy's executemany is counted by its
            # cursor events already, and asyncpg's transactions send their BEGIN and COMMIT through here too.
            if not sys._getframe(1).f_globals.get("__name__", "").startswith("meldbot."):
                return await original(connection, query, *args, **kwargs)
            started = time.perf_counter()
            try:
                return await original(connection, query, *args, **kwargs)
            finally:
                # (seconds, SQL, positional values); several statements in one string (BEGIN; ...; COMMIT) as sent
                values = (tuple(args[0][0]) if args and args[0] else None) if many else (tuple(args) or None)
                seen.append((time.perf_counter() - started, query, values))   # executemany: its first row
        return timed

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self.seen.append((time.perf_counter() - conn.info["bench_started"].pop(), statement, parameters))

    def slowest(self, n: int = 3):
        return sorted(self.seen, key=lambda s: -s[0])[:n]


async def explain(app, conn, statement: str, parameters) -> str:
    """EXPLAIN ANALYZE of one statement the app sent, rolled back (it may write)."""
    if ";" in statement.strip().rstrip(";"):
        return "(several statements sent as one: not explained)"
    if statement.split(None, 1)[0].upper() not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
        return "(not a statement EXPLAIN takes)"
    if isinstance(parameters, tuple) or parameters is None:     # sent straight on the driver: $1, $2, ...
        transaction = conn.transaction()
        await transaction.start()
        try:
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", *(parameters or ()))
            return "\n".join(r[0] for r in rows)
        finally:
            await transaction.rollback()
    async with app.db.engine.connect() as sa_conn:
        trans = await sa_conn.begin()
        try:
            rows = await sa_conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", parameters)
            return "\n".join(r[0] for r in rows)
        finally:
            await trans.rollback()


async def handle(app, text: str, user: str = "af") -> tuple[float, str]:
    msg = IncomingMessage(sender=Identity("console", user), conversation_id=user, text=text, sender_name=user)
    started = time.perf_counter()
    replies = await app.bot.handle(msg)
    elapsed = time.perf_counter() - started
    out = "\n".join(r.text for r in replies)
    if "iets mis" in out or "vind ik niet" in out:
        raise RuntimeError(f"{text!r} failed: {out[:300]!r}")
    return elapsed, out


class Reset:
    """Forgets what a sweep wrote, so the next sweep does the whole first-sweep work again."""

    def __init__(self, conn) -> None:
        self.conn = conn

    async def mark(self) -> None:
        self.reminders = await self.conn.fetchval("SELECT coalesce(max(id), 0) FROM reminder_sent")
        self.outbox = await self.conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")

    async def __call__(self) -> None:
        await self.conn.execute("DELETE FROM reminder_sent WHERE id > $1", self.reminders)
        await self.conn.execute("DELETE FROM outbox WHERE id > $1", self.outbox)


def _looks_alike(out: str, reference: str) -> bool:
    """`toon` lists `reference` as a look-alike address ("lijkt op: ...")."""
    return any(reference in line and "lijkt op" in line for line in out.splitlines())


async def measure_size(app, conn, targets, open_count: int, warm_up: int, explain_all: bool) -> dict:
    reset = Reset(conn)
    await reset.mark()
    # Warm-up, untimed: compiled statements, connections, the first decryption.
    await handle(app, "lijst")
    await handle(app, f"toon {warm_up}", user="af2")
    await app.reminders.sweep()
    await reset()

    sweeps, sent = [], set()
    for _ in range(SWEEPS):
        started = time.perf_counter()
        sent.add(await app.reminders.sweep())
        sweeps.append(time.perf_counter() - started)
        await reset()
    # Steady state: a second sweep in the same slot claims nothing new.
    await app.reminders.sweep()
    steady = []
    for _ in range(STEADY_SWEEPS):
        started = time.perf_counter()
        if await app.reminders.sweep():
            raise AssertionError("a repeated sweep queued reminders again")
        steady.append(time.perf_counter() - started)
    await reset()

    lijst = []
    for _ in range(LIJST_RUNS):
        elapsed, out = await handle(app, "lijst")
        if f"Open meldingen ({open_count})" not in out:
            raise AssertionError(f"lijst shows another queue: {out[:200]!r}")
        lijst.append(elapsed)

    toon, matches, variants, variants_expected = [], 0, 0, 0
    order = list(targets)
    random.Random(len(targets)).shuffle(order)
    for number, expected in order:
        elapsed, out = await handle(app, f"toon {number}")
        missing = [ref for ref in expected if not ref.startswith("~") and f"{ref} (zelfde adres)" not in out]
        if missing or "(zelfde persoon)" not in out:
            raise AssertionError(f"toon {number}: reeds bekend lacks {missing}: {out[-1500:]!r}")
        matches += out.count("(zelfde ")
        # A look-alike is counted, not required: the candidates are the 40 sharing most (blocking) keys,
        # so at a large size other signals may crowd it out; the figure says how often that happened.
        for ref in expected:
            if ref.startswith("~"):
                variants_expected += 1
                variants += _looks_alike(out, ref[1:])
        toon.append(elapsed)

    result = {"sweep": sweeps, "steady": steady, "sent": sent, "lijst": lijst, "toon": toon,
              "matches": (matches + variants) / len(toon), "variants": variants / len(toon),
              "variants_found": (variants, variants_expected), "sql": {}, "explain": []}
    # One more run of each, instrumented: what the database does, and EXPLAIN ANALYZE of the slowest
    # statement (at the largest size, or whenever one statement takes more than SLOW_STATEMENT_MS).
    runs = {"sweep": app.reminders.sweep, "lijst": lambda: handle(app, "lijst"),
            "toon": lambda: handle(app, f"toon {targets[-1][0]}")}
    for name, run in runs.items():
        with Statements(app.db.engine) as statements:
            await run()
        if name == "sweep":
            await reset()
        seconds, statement, parameters = statements.slowest(1)[0]
        result["sql"][name] = (len(statements.seen), sum(s[0] for s in statements.seen), seconds, _short(statement))
        if explain_all or seconds * 1000 > SLOW_STATEMENT_MS:
            result["explain"].append((name, seconds, statement, await explain(app, conn, statement, parameters)))
    return result


def _short(statement: str) -> str:
    """`SELECT signal`, `INSERT audit`, `WITH weights` (the "reeds bekend" candidates), ..."""
    words = statement.replace(";", " ; ").split()
    first = words[0].upper()
    if first == "SELECT" and "FROM" in words:
        return f"SELECT {words[words.index('FROM') + 1]}"
    if first in ("INSERT", "DELETE"):
        return f"{first} {words[2]}"
    return f"{first} {words[1]}" if len(words) > 1 else first


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k"


async def measure(quick: bool) -> list[Figure]:
    sizes = [1_000, 10_000] if quick else [10_000, 100_000, 1_000_000]
    if os.environ.get("BENCH_GROWTH_SIZES"):      # e.g. 10000: only these sizes (to debug one)
        sizes = [int(n) for n in os.environ["BENCH_GROWTH_SIZES"].split(",")]
    name = f"meldbot_bench_{uuid.uuid4().hex[:10]}"
    url = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    await _admin(f'CREATE DATABASE "{name}"')
    app = conn = None
    results: dict[int, dict] = {}
    loads: dict[int, dict] = {}
    try:
        db = Database(url)
        await db.migrate()
        await db.dispose()
        clock = ManualClock(NOW)
        app = build_app(bench_config(url), clock=clock, notifiers={"console": FakeNotifier()}, mode="chat")
        app.bot.flood = FloodGuard(burst=10**9)
        conn = await asyncpg.connect(ADMIN_URL.rsplit("/", 1)[0] + "/" + name)
        rng = random.Random(5)

        started = time.perf_counter()
        groups = await seed_current_work(app, clock, rng)
        seeded = time.perf_counter() - started
        current = await conn.fetchval("SELECT count(*) FROM signal")
        open_count = await conn.fetchval("SELECT count(*) FROM signal WHERE status <> 'afgesloten'")
        history = History(app.uow.sealer, app.uow, rng)
        print(f"current work via the app: {current} signals ({open_count} open) in {seeded:.1f} s; "
              + ", ".join(f"{g}: {len(v)}" for g, v in groups.items()), file=sys.stderr)

        total = current
        for salt, size in enumerate(sizes, start=1):
            started = time.perf_counter()
            targets, load = await grow(conn, history, size - total, salt)
            load["seconds"] = time.perf_counter() - started
            total = await conn.fetchval("SELECT count(*) FROM signal")
            erased = await conn.fetchval("SELECT count(*) FROM signal WHERE erased_at IS NOT NULL")
            overdue = await conn.fetchval(
                "SELECT count(*) FROM signal WHERE status = 'afgesloten' AND erased_at IS NULL AND closed_at < $1",
                _naive(history.cutoff))
            if total != size or overdue:
                raise AssertionError(f"{total} signals (wanted {size}), {overdue} past retention but not erased")
            load.update(total=total, erased=erased)
            loads[size] = load
            print(f"{_label(size)}: loaded {sum(load['rows'].values())} rows in {load['seconds']:.1f} s "
                  f"(generate {load['generate']:.1f} s, COPY {load['copy']:.1f} s, VACUUM ANALYZE "
                  f"{load['vacuum analyze']:.1f} s); {erased} erased by retention; rows {load['rows']}",
                  file=sys.stderr)
            # The generator's own objects are no part of a bot process: keep them out of the collector's
            # way, or its passes over them would be counted as meldbot's cost at the larger sizes.
            gc.collect()
            print(f"{_label(size)}: {len(gc.get_objects())} objects frozen out of the collector's way", file=sys.stderr)
            gc.freeze()
            started = time.perf_counter()
            results[size] = await measure_size(app, conn, targets, open_count, groups["open, nothing due"][0],
                                               explain_all=size == sizes[-1])
            print(f"{_label(size)}: measured in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    finally:
        if conn is not None:
            await conn.close()
        if app is not None:
            await app.db.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    figures = []
    largest, smallest = sizes[-1], sizes[0]
    final = not quick
    for size in sizes:
        r, label = results[size], _label(size)
        at_target = final and size == largest
        load = loads[size]

        def sql(name: str, r: dict = r) -> str:
            count, total_s, slowest_s, what = r["sql"][name]
            return f"SQL {total_s * 1000:.1f} ms in {count} statements, slowest {what} {slowest_s * 1000:.1f} ms"

        erased = f"{load['erased']} of {load['total']} erased by retention; loaded in {load['seconds']:.0f} s"
        figures.append(Figure(SECTION, f"toon p95 at {label}", percentile(r["toon"], 95) * 1000, "ms",
                              target=TOON_TARGET_MS if at_target else None,
                              detail=f"{summary_ms(r['toon'])}; {r['matches']:.1f} reeds-bekend lines each, {r.get('variants', 0):.1f} of them a look-alike address (a letter short, no postcode: found only by meldbot.core.similar); {sql('toon')}"))
        found, expected = r.get("variants_found", (0, 0))
        figures.append(Figure(SECTION, f"toon: look-alike addresses found at {label}", found, f"of {expected}",
                              detail="each target has one earlier signal whose address is the street a letter short "
                                     "without postcode; it shares only a blocking key (house number, first letter) "
                                     "with the target, and `toon` compares at most 40 candidates, those sharing the "
                                     "most telling keys first (each key weighs 1 / the signals holding it)"))
        figures.append(Figure(SECTION, f"lijst p95 at {label}", percentile(r["lijst"], 95) * 1000, "ms",
                              detail=f"{summary_ms(r['lijst'])}; {open_count} open signals; {sql('lijst')}"))
        figures.append(Figure(SECTION, f"sweep at {label}", statistics.median(r["sweep"]) * 1000, "ms",
                              target=SWEEP_TARGET_MS if at_target else None,
                              detail=f"median of {SWEEPS} full sweeps (min {min(r['sweep']) * 1000:.1f}, max "
                                     f"{max(r['sweep']) * 1000:.1f} ms), queued {sorted(r['sent'])} each; steady "
                                     f"sweep (nothing new) {statistics.median(r['steady']) * 1000:.1f} ms; {sql('sweep')}; {erased}"))
    ratio_name = f"{_label(largest)}/{_label(smallest)}"
    for what, key, pick in (("toon p95", "toon", lambda s: percentile(s, 95)),
                            ("lijst p95", "lijst", lambda s: percentile(s, 95)),
                            ("sweep", "sweep", statistics.median)):
        big, small = pick(results[largest][key]), pick(results[smallest][key])
        figures.append(Figure(SECTION, f"{what} ratio {ratio_name}", big / small, "x",
                              target=RATIO_TARGET if final else None,
                              detail=f"{big * 1000:.2f} ms / {small * 1000:.2f} ms"
                                     + ("" if final else " (quick mode: small sizes, untargeted)")))
    for size in sizes:
        for name, seconds, statement, plan in results[size]["explain"]:
            print(f"\n-- {_label(size)}, slowest statement of {name}: {seconds * 1000:.1f} ms\n{statement}\n{plan}",
                  file=sys.stderr)
    return figures


if __name__ == "__main__":
    main(measure)
