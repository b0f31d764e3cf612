"""The turn engine: one incoming message in, the direct replies out; everything in one transaction."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any


from meldbot.dialogs import report, understand
from meldbot.dialogs.af import Usage, af_help, command_help, parse_af, suggest, suggestion_reply
from meldbot.dialogs.commands import AF_ONLY, ANYONE, DIALOG, Command, dialog_command, exact, normalise, parse
from meldbot.dialogs.conversation import ConversationState
from meldbot.core.clock import Clock
from meldbot.core.logs import where
from meldbot.core.config import Config, MeldpuntConfig
from meldbot.dialogs.melder import OwnSignal, command_typo, command_typo_reply, my_reports
from meldbot.core.domain import EventKind, RefQuery, Signal
from meldbot.core.i18n import LANGUAGES, Texts, texts
from meldbot.core.messaging import Choice, Identity, IncomingMessage, Platform, Reply
from meldbot.core.ports import AlreadyHandled, ConversationChanged, PersonSettings, StorageUnavailable, UnitOfWork, UnitOfWorkFactory
from meldbot.service import questions
from meldbot.service.desk import Desk, Seat
from meldbot.service.retention import PROCESSED_REPLIES_KEPT
from meldbot.service.services import (MAX_SUPPLEMENTS, SubmitSignal, SupplementSignal, TooManySupplements, submit_signal,
                              supplement_signal, work_calendar)
from meldbot.core.text import quote_user_text

log = logging.getLogger("meldbot.bot")


class FloodGuard:
    """Per-person message budget: a burst beyond it gets one cool-down message, then silence until
    the cool-down ends. Dropped messages are not handled at all, so nothing is half-stored."""

    def __init__(self, burst: int = 60, per_seconds: float = 10.0, cool_down: float = 30.0) -> None:
        self.burst, self.window, self.cool_down = burst, per_seconds, cool_down
        self._seen: dict[Identity, deque[float]] = {}
        self._blocked_until: dict[Identity, float] = {}

    def check(self, who: Identity, now: float) -> str:
        """"ok", "warn" (first message over the budget) or "drop"."""
        if self._blocked_until.get(who, 0.0) > now:
            return "drop"
        recent = self._seen.setdefault(who, deque())
        while recent and recent[0] <= now - self.window:
            recent.popleft()
        if len(recent) >= self.burst:
            self._blocked_until[who] = now + self.cool_down
            recent.clear()
            return "warn"
        recent.append(now)
        if len(self._seen) > 10_000:   # forget quiet people
            for key in [k for k, v in self._seen.items() if not v][:5_000]:
                del self._seen[key]
        return "ok"


class Bot:
    def __init__(self, config: Config, uow_factory: UnitOfWorkFactory, clock: Clock, platforms: tuple[Platform, ...],
                 metrics: Any = None, flood: FloodGuard | None = None, slots: int = 10) -> None:
        self.config = config
        self._uow = uow_factory
        self._clock = clock
        self.platforms = platforms
        self.metrics = metrics
        self.flood = flood or FloodGuard()
        # One turn at a time per conversation: two quick messages must not race on the draft. This lock keeps
        # them in arrival order within the process; the conversation's lock in the database (asked for first
        # in every turn, see _within) keeps the turns of several processes apart.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        # Turns wait for a database connection in line here, first come first served. The connection
        # pool's own queue lets a newcomer take a connection just handed back, so under a burst the
        # first messages could wait for seconds behind later ones (seen: p95 7 s at 1,000 at once).
        self._slots = asyncio.Semaphore(slots)

    async def handle(self, msg: IncomingMessage) -> list[Reply]:
        """The error boundary of one message: never a traceback to the user, never content in logs."""
        started = time.perf_counter()
        outcome = "ok"
        verdict = self.flood.check(msg.sender, time.monotonic())
        if verdict != "ok":
            outcome = "flood"
            if verdict == "drop":
                return []
            log.warning("flood: cool-down", extra={"platform": msg.platform})
            return [Reply(texts(self.config.language)("flood.cool_down", seconds=int(self.flood.cool_down)))]
        key = (msg.platform, msg.conversation_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock, self._slots:
                return await self._handle(msg)
        except (StorageUnavailable, OSError, ConnectionError, TimeoutError) as exc:
            # The database (or the network to it) failed: nothing of this message was kept.
            outcome = "database"
            cause = exc.__cause__ or exc
            log.error("turn failed: database", extra={"platform": msg.platform, "error": type(cause).__name__,
                                                      "where": where(cause)})
            return [Reply(texts(self.config.language)("error.resend"))]
        except Exception as exc:
            outcome = "error"
            # Type and code location only: exception messages can carry content (e.g. SQL parameters).
            log.error("turn failed", extra={"platform": msg.platform, "error": type(exc).__name__,
                                            "where": where(exc)})
            return [Reply(texts(self.config.language)("error.general"))]
        finally:
            if not lock.locked() and self._locks.get(key) is lock and len(self._locks) > 1000:
                self._locks.pop(key, None)
            if self.metrics:
                self.metrics.turns.labels(msg.platform, outcome).inc()
                self.metrics.turn_seconds.labels(msg.platform).observe(time.perf_counter() - started)

    def _language(self, stored: str | None, msg: IncomingMessage) -> str:
        if stored:
            return stored
        if msg.locale and msg.locale[:2].lower() in LANGUAGES:
            return msg.locale[:2].lower()
        return self.config.language

    async def _handle(self, msg: IncomingMessage) -> list[Reply]:
        if not msg.is_private:
            return [Reply(texts(self._language(None, msg))("group_chat"))]
        try:
            return await self._handle_once(msg, optimistic=True)
        except ConversationChanged:
            # Another turn of this conversation committed after this one read it, and the unit of work could
            # not go on (see _handle_once): nothing of ours was kept. Again, in a new one, now waiting for
            # the conversation before reading it.
            log.info("turn handled again: its conversation changed meanwhile",
                     extra={"platform": msg.platform})
        except AlreadyHandled:
            # Another turn recorded this event first, past our processed check: nothing of ours was kept.
            # Its answer is the answer; a second pass (after its commit) finds and gives it.
            log.warning("turn lost a race for its event; stored answer given", extra={"platform": msg.platform})
        return await self._handle_once(msg)

    async def _handle_once(self, msg: IncomingMessage, optimistic: bool = False) -> list[Reply]:
        async with self._uow() as uow:
            try:
                return await self._within(uow, msg, optimistic)
            except ConversationChanged as changed:
                # Another turn of this conversation committed after this one read it (on another process, or a
                # job of this one); this unit of work still holds the conversation (its lock came before the
                # check): again, in it, ahead of the turns that wait for the lock.
                if not (changed.holds_lock and uow.restart()):
                    raise
            log.info("turn handled again in its transaction: its conversation changed meanwhile",
                     extra={"platform": msg.platform})
            return await self._within(uow, msg, optimistic=False)

    async def _within(self, uow: UnitOfWork, msg: IncomingMessage, optimistic: bool) -> list[Reply]:
        """The turn in the unit of work `uow`, committed."""
        # First, before the processed check and the conversation: the conversation is ours until commit. A
        # redelivery on another process waits for it, then finds the answer stored by the first turn.
        # Optimistic (the first pass): the read goes first, and the lock with the turn's first write or its
        # commit, with a check that nothing it read changed meanwhile (ConversationRepository.lock); on
        # PostgreSQL an ordinary turn is then two round trips, or one when the process remembers what the read
        # would give (TurnMemory).
        await uow.conversations.lock(msg.platform, msg.conversation_id, optimistic=optimistic)
        await uow.conversations.prefetch(msg.platform, msg.conversation_id, msg.sender, msg.event_id)
        if msg.event_id:
            earlier = await uow.processed.replies_for(msg.platform, msg.event_id,
                                                      since=self._clock.now() - PROCESSED_REPLIES_KEPT)
            if earlier is not None:   # a redelivered event: same answer, no second handling
                if earlier.replies is not None:
                    return earlier.replies
                # The answer is no longer kept: say so rather than handle the message twice.
                language = self._language((await uow.people.get(msg.sender)).language, msg)
                return [Reply(texts(language)("processed.replies_gone"), language=language)]
        replies = await self._turn(uow, msg, self._clock.now())
        # Which language the answers are in (read in this turn already; again only after `taal`).
        language = self._language((await uow.people.get(msg.sender)).language, msg)
        replies = [replace(r, language=language) for r in replies]
        if msg.event_id:
            await uow.processed.remember(msg.platform, msg.event_id, replies, self._clock.now())
        await uow.commit()
        return replies

    async def _turn(self, uow: UnitOfWork, msg: IncomingMessage, now: datetime) -> list[Reply]:
        """One message, inside the caller's transaction."""
        person = await uow.people.get(msg.sender)
        t = texts(self._language(person.language, msg))
        loaded = await uow.conversations.load(msg.platform, msg.conversation_id)
        state = ConversationState.from_dict(loaded[0] if loaded else None)
        touched = loaded[1] if loaded else None

        draft = state.draft
        af_command = None if draft.active else parse(msg.text, AF_ONLY)
        if af_command is not None and not self.config.af_for(msg.platform, msg.sender.user_id) and (
                await questions.open_questions(uow, msg.sender)):
            # Not an AF, and a question of the AF waits: "Toon de Vries, de eigenaar." is their answer.
            af_command = None
        if af_command is not None:
            return await self._af(uow, msg, person, af_command, t)
        if not draft.active and self.config.af_for(msg.platform, msg.sender.user_id):
            for_af = self._af_help(msg.text, t)
            if for_af is not None:
                return [for_af]

        asked_for, was_asked = state.pending, state.choose_meldpunt
        meldpunt, state, replies = await self._meldpunt(uow, msg, person, state, t)
        if meldpunt is None:
            await uow.conversations.save(msg.platform, msg.conversation_id, state.to_dict(), now)
            return replies
        if was_asked and not state.choose_meldpunt:
            # The gemeente question is answered: what the first message asked for goes on (no need to type
            # `melden` again); after any other first message, the welcome. The number itself is no message.
            if draft.active and asked_for is None:
                replies.append(report.current(self._context(meldpunt, t, now), draft))
                await uow.conversations.save(msg.platform, msg.conversation_id,
                                             ConversationState(draft=draft).to_dict(), now, meldpunt.id)
                return replies
            msg = replace(msg, text=asked_for or "", has_attachment=False, card_value=None)

        expired = state.draft_expired
        if draft.active and touched and now - touched > self._draft_expiry(meldpunt):
            draft, expired = report.Draft(), True
        if expired:
            replies.append(Reply(t("draft_expired", hours=self._draft_expiry_hours(meldpunt))))

        ctx = self._context(meldpunt, t, now)
        if draft.active:
            # Inside the report dialog only the contract's whole messages are commands, and of the melder's own
            # only `taal nl` / `taal en`: "taal was een probleem", `mijn meldingen`, `aanvullen 3 ...` are answers.
            found = dialog_command(msg.text)
            command = found if found is not None and found.name == "language" else None
        else:
            command = parse(msg.text, ANYONE)
        name = command.name if command else None
        # Right after the notice of an expired report, the message belongs to that report ("Kerkstraat 3"),
        # not to the AF's question: the question waits for the next message.
        asked = [] if expired else await self._open_questions(uow, msg, draft, command)
        if asked:
            # A question of the AF waits: this free message is the answer (a report under way goes first).
            replies.extend(await self._answer(uow, msg, asked, t))
            name = None
        elif command and name == "language":
            t, extra = await self._set_language(uow, msg, command.args, t)
            replies.extend(extra)
            ctx = self._context(meldpunt, t, now)
        elif command and name == "my_reports" and not command.args:
            replies.append(await self._my_reports(uow, msg, meldpunt, t))
        elif command and name == "supplement":
            replies.append(await self._supplement(uow, msg, command.args, t))
        else:
            step = report.step(draft, msg.text, ctx, has_attachment=msg.has_attachment)
            replies.extend(step.replies)
            draft = step.draft
            if step.submission is not None:
                signal = await self._submit(uow, msg, meldpunt, step.submission)
                replies.append(report.submitted(ctx, str(signal.reference), signal.anonymous, signal.pseudonym))
            name = None
        if name and draft.active:
            replies.append(report.current(ctx, draft))

        state = ConversationState(draft=draft, choose_meldpunt=state.choose_meldpunt)
        if not state.empty:
            await uow.conversations.save(msg.platform, msg.conversation_id, state.to_dict(), now, meldpunt.id)
        elif loaded:
            await uow.conversations.delete(msg.platform, msg.conversation_id)
        return replies

    async def _af(self, uow: UnitOfWork, msg: IncomingMessage, person: PersonSettings, command: Command,
                  t: Texts) -> list[Reply]:
        """AF commands: authorised by platform id only; anyone else is refused and the attempt audited."""
        seats = [Seat(m, a) for m, a in self.config.af_for(msg.platform, msg.sender.user_id)]
        if not seats:
            candidates = self.config.meldpunten_for(msg.platform, msg.sender.user_id, msg.tenant)
            meldpunt_id = candidates[0].id if len(candidates) == 1 else (person.meldpunt_id or "onbekend")
            await uow.audit.append(meldpunt_id=meldpunt_id, signal_id=None, actor_kind="other",
                                   actor=str(msg.sender), action=f"geweigerd:{command.word}", at=self._clock.now())
            log.warning("AF command refused", extra={"platform": msg.platform, "command": command.name})
            return [Reply(t("af.refused"))]
        try:
            parsed = parse_af(command.name, command.args)
        except Usage as usage:
            return [Reply(t(usage.key, **usage.params))]
        desk = Desk(uow, self.config, self._clock, self.platforms, msg.sender, seats, t)
        return await desk.run(parsed)

    async def _meldpunt(self, uow: UnitOfWork, msg: IncomingMessage, person: PersonSettings, state: ConversationState,
                        t: Texts) -> tuple[MeldpuntConfig | None, ConversationState, list[Reply]]:
        """The meldpunt this person belongs to; with several candidates, ask once and remember.
        None: the person was asked (again); the state says whether they are asked. Just answered: the chosen
        meldpunt, the state no longer asking, and the confirmation to say first."""
        candidates = self.config.meldpunten_for(msg.platform, msg.sender.user_id, msg.tenant)
        if len(candidates) == 1:
            return candidates[0], state, []
        if person.meldpunt_id and any(m.id == person.meldpunt_id for m in candidates):
            return self.config.meldpunt_by_id(person.meldpunt_id), state, []
        if not candidates:
            candidates = list(self.config.meldpunten)
        options = tuple(Choice(i, str(i), m.name) for i, m in enumerate(candidates, start=1))
        if state.choose_meldpunt:
            # The number as before, or the gemeente's name ("Eersel", "ik werk bij Bergeijk").
            answer = understand.meldpunt(msg.text, [m.name for m in candidates]).word
            if answer is not None and answer.isdigit() and 1 <= int(answer) <= len(candidates):
                chosen = candidates[int(answer) - 1]
                await uow.people.update(msg.sender, meldpunt_id=chosen.id)
                return chosen, replace(state, choose_meldpunt=False, pending=None), [
                    Reply(t("meldpunt.chosen", name=chosen.name))]
            return None, state, [Reply(t("meldpunt.unknown"), choices=options)]
        return None, replace(state, choose_meldpunt=True, pending=self._asked_for(msg.text)), [
            Reply(t("meldpunt.ask"), choices=options)]

    @staticmethod
    def _asked_for(text: str) -> str | None:
        """The command a first message is, kept while the gemeente question waits: a contract word as the whole
        message (`melden`, `spoed`, `mijn meldingen`, `help`, `taal en`), never free text, which is not kept
        outside a report (`aanvullen 3 ...` is typed again)."""
        word = exact(text, ANYONE) or exact(text, DIALOG)
        if word in ("report", "urgent", "my_reports", "signs", "contact", "help"):
            return normalise(text)
        found = dialog_command(text)
        if found is not None and found.name == "language":
            return normalise(text)
        # "ik wil iets melden", "meldne": a report (or an urgent one) is what they asked for.
        opened = understand.opener(text).word
        return opened if opened in ("melden", "spoed") else None

    async def _my_reports(self, uow: UnitOfWork, msg: IncomingMessage, meldpunt: MeldpuntConfig,
                          t: Texts) -> Reply:
        signals = await uow.signals.of_melder(msg.sender)
        feedback = await uow.signals.events_of([s.stored_id for s in signals], [EventKind.MELDER_INFORMED])
        own = [
            OwnSignal(str(s.reference), s.created_at, str(s.status),
                      tuple((e.at, e.data.get("text", "")) for e in feedback.get(s.stored_id, [])))
            for s in signals
        ]
        return my_reports(own, t, meldpunt.tz)

    async def _supplement(self, uow: UnitOfWork, msg: IncomingMessage, args: str, t: Texts) -> Reply:
        # Any white space ends the reference: the text may start on the next line.
        ref_text, text = (args.split(None, 1) + ["", ""])[:2] if args.strip() else ("", "")
        query = RefQuery.parse(ref_text)
        text = report.clean(text)
        if query is None or not text:
            return Reply(t("supplement.usage"))
        if len(text) > report.MAX_ANSWER:
            return Reply(t("error.too_long", max=report.MAX_ANSWER, length=len(text)))
        waiting = await questions.open_question_on(uow, msg.sender, query)
        if waiting is not None:   # `aanvullen` on a signal with a question of the AF: the answer
            answered = await questions.answer_question(uow, self.config, self._clock, self.platforms, waiting, text)
            return Reply(t("answer.done", reference=answered.reference))
        cmd = SupplementSignal(msg.sender, query, text)
        try:
            signal = await supplement_signal(cmd, uow, self.config, self._clock, self.platforms)
        except TooManySupplements as full:
            return Reply(t("supplement.full", reference=full.signal.reference, max=MAX_SUPPLEMENTS))
        if signal is None:
            return Reply(t("supplement.unknown", reference=quote_user_text(ref_text)))
        return Reply(t("supplement.done", reference=signal.reference))

    def _af_help(self, text: str, t: Texts) -> Reply | None:
        """For an AF outside a report: `help` lists the AF's commands, `help <command>` explains one, and a
        typo of an AF command gets "Bedoel je ...?". None: the message goes on as anyone's."""
        command = parse(text, ANYONE)
        if command is not None and command.name == "help":
            if not command.args:
                return Reply(af_help(t))
            explained = command_help(command.args, t)
            return Reply(explained if explained is not None else t("help.general"))
        found = suggest(text) if command is None else None
        return suggestion_reply(found, t) if found is not None else None

    async def _open_questions(self, uow: UnitOfWork, msg: IncomingMessage, draft: report.Draft,
                              command: Command | None) -> list[Signal]:
        """The melder's signals whose question of the AF this message answers: only a free message outside a
        report. Commands as the whole message stay commands (`help`, `mijn meldingen`, `taal en`,
        `aanvullen 7 ...`); a message that merely starts with a command word ("contact was via zijn baas",
        and for anyone but an AF "toon de eigenaar") is an answer, as inside the report dialog. A typo of a
        command as the whole message is not kept: `_answer` asks "Bedoel je ...?"."""
        if draft.active or not msg.text.strip():
            return []
        if exact(msg.text, ANYONE) or exact(msg.text, DIALOG):
            return []
        if command is not None:
            args = command.args.split()
            if command.name == "language" and len(args) == 1 and args[0].lower()[:2] in LANGUAGES:
                return []
            if command.name == "supplement" and args and RefQuery.parse(args[0]):
                return []
        return await questions.open_questions(uow, msg.sender)

    async def _answer(self, uow: UnitOfWork, msg: IncomingMessage, asked: list[Signal], t: Texts) -> list[Reply]:
        typo = command_typo(msg.text)
        if typo is not None:   # "mijn meldngen" is no answer: nothing is kept, the question waits
            return [command_typo_reply(typo, asked[-1].reference.number, t)]
        if len(asked) > 1:   # no guess: the melder says which, and nothing of this message is kept
            return [Reply(t("answer.which", references=", ".join(str(s.reference) for s in asked),
                            number=asked[-1].reference.number))]
        text = report.clean(msg.text)
        if len(text) > report.MAX_ANSWER:
            return [Reply(t("error.too_long", max=report.MAX_ANSWER, length=len(text)))]
        signal = await questions.answer_question(uow, self.config, self._clock, self.platforms, asked[0], text)
        replies = [Reply(t("answer.done", reference=signal.reference))]
        if msg.has_attachment:
            replies.append(Reply(t("attachment.not_stored")))
        return replies

    async def _set_language(self, uow: UnitOfWork, msg: IncomingMessage, args: str,
                            t: Texts) -> tuple[Texts, list[Reply]]:
        language = args.strip().lower()[:2]
        if language not in LANGUAGES:
            return t, [Reply(t("language.unknown"))]
        await uow.people.update(msg.sender, language=language)
        t = texts(language)
        return t, [Reply(t("language.set"))]

    def _draft_expiry_hours(self, meldpunt: MeldpuntConfig) -> int:
        return self.config.reminders_for(meldpunt.id).draft_expiry_hours

    def _draft_expiry(self, meldpunt: MeldpuntConfig) -> timedelta:
        return timedelta(hours=self._draft_expiry_hours(meldpunt))

    def _context(self, meldpunt: MeldpuntConfig, t: Texts, now: datetime) -> report.DialogContext:
        local = now.astimezone(meldpunt.tz)   # a number's hours are the meldpunt's clock times
        office = work_calendar(self.config, meldpunt.id)
        return report.DialogContext(
            texts=t,
            now=now,
            tz=meldpunt.tz,
            # The number that is answered right now comes first.
            contacts=tuple(
                report.Contact(c.label, c.number, c.hours)
                for c in sorted(meldpunt.contact, key=lambda c: not c.is_open(local))
            ),
            signs_text=getattr(meldpunt, "signals_text", None),
            # Outside office hours an AF is told at once but sees the signal at the latest at the next opening.
            af_sees=lambda: None if office.is_office_time(now) else office.next_office_moment(now),
        )

    async def _submit(self, uow: UnitOfWork, msg: IncomingMessage, meldpunt: MeldpuntConfig,
                      sent: report.Submission) -> Signal:
        cmd = SubmitSignal(
            meldpunt_id=meldpunt.id,
            melder=msg.sender,
            melder_name=msg.sender_name,
            content=sent.content,
            form=sent.form,
            context=sent.context,
            urgent=sent.urgent,
            anonymous=sent.anonymous,
        )
        signal = await submit_signal(cmd, uow, self.config, self._clock, self.platforms)
        if self.metrics:
            self.metrics.signals_received.labels(meldpunt.id).inc()
        return signal
