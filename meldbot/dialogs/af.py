"""The AF's commands as typed: parsing the arguments and laying out what the AF reads. No I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from meldbot.dialogs.commands import AF_ONLY, ANYONE, DIALOG, nearest, normalise, parse
from meldbot.dialogs.forms import form_label
from meldbot.core.domain import EventKind, Outcome, RefQuery, Signal, Status
from meldbot.core.i18n import Texts
from meldbot.core.messaging import Action, Reply
from meldbot.core.text import quote_user_text as quoted

OUTCOMES = {o.value: o for o in Outcome} | {
    "done": Outcome.DONE, "no-trafficking": Outcome.NO_TRAFFICKING, "other-phenomenon": Outcome.OTHER_PHENOMENON,
    "insufficient": Outcome.INSUFFICIENT,
}
ALL_WORDS = ("alle", "all")
# The longest text an AF can give a note, feedback, a message to the melder or a key. It keeps every
# line of the history readable; the view of a signal is split into several messages when it grows.
MAX_AF_TEXT = 2000

# Argument shape per command: r = reference, p = partner, x = rest as text, w = one word.
SHAPES = {
    "queue": "", "stats": "w?",
    "show": "r", "take": "r", "reopen": "r",
    "note": "rx", "inform": "rx", "ask": "rx",
    "tag": "rwx",
    "consult": "rp", "forward": "rp",
    "feedback": "rpx",
    "close": "rw",
    "merge": "rr",
    "handover": "Rw",            # R: a reference or "alle"
}


@dataclass(frozen=True)
class AfCommand:
    name: str
    refs: tuple[RefQuery, ...] = ()
    all: bool = False
    partner: str = ""
    word: str = ""
    text: str = ""


class Usage(Exception):
    """The arguments do not fit; `key` names the catalogue sentence that explains the command."""

    def __init__(self, key: str, **params: object) -> None:
        super().__init__(key)
        self.key = key
        # Parameters repeat what was typed (a reference, a partner's name): shown as the typist's words.
        self.params = {name: quoted(value) if isinstance(value, str) else value for name, value in params.items()}


def parse_af(name: str, args: str) -> AfCommand:
    shape = SHAPES[name]
    rest = args.strip()
    refs: list[RefQuery] = []
    found: dict[str, str] = {}
    every = False
    for part in shape.replace("?", ""):
        if part == "x":
            if not rest:
                raise Usage(f"af.usage.{name}")
            if len(rest) > MAX_AF_TEXT:
                raise Usage("af.too_long", length=len(rest), max=MAX_AF_TEXT)
            found["text"] = rest
            rest = ""
            continue
        # Any white space ends a word: "notitie 7" and the note on the next line is a note on 7.
        token, rest = (rest.split(None, 1) + ["", ""])[:2] if rest else ("", "")
        rest = rest.strip()
        if not token:
            if shape.endswith("?"):
                break
            raise Usage(f"af.usage.{name}")
        if part in "rR":
            if part == "R" and normalise(token) in ALL_WORDS:
                every = True
                continue
            query = RefQuery.parse(token)
            if query is None:
                raise Usage("af.bad_reference", reference=token)
            refs.append(query)
        elif part == "p":
            found["partner"] = token
        else:
            found["word"] = token
    if rest:
        raise Usage(f"af.usage.{name}")
    return AfCommand(name, tuple(refs), every, found.get("partner", ""), found.get("word", ""), found.get("text", ""))


# --- help and "Bedoel je ...?" ------------------------------------------------------------------

# The AF's commands in the order of the meldroute: the order of `help`.
HELP_ORDER = ("queue", "show", "take", "note", "tag", "consult", "forward", "feedback", "ask", "inform", "close",
              "reopen", "merge", "handover", "stats")
# Commands that change nothing a suggestion's button could regret: they may be sent with one tap. (`toon`
# picks up a signal nobody handles, as reading it does from the notification's own button.)
READ_ONLY = frozenset({"queue", "show", "stats", "help"})
# The words a typo is measured against: the AF's commands and `help`, Dutch and English.
_SUGGESTABLE = {**AF_ONLY, "help": "help"}


@dataclass(frozen=True)
class Suggestion:
    """The command an AF probably meant: `text` is the whole message as it would have been typed."""

    name: str
    word: str
    text: str
    args: str

    @property
    def read_only(self) -> bool:
        return self.name in READ_ONLY


def _nearest(word: str) -> tuple[str, str] | None:
    """(command name, contract word) of the one AF command (or `help`) nearest to `word`, or None."""
    return nearest(word, _SUGGESTABLE)


def suggest(text: str) -> Suggestion | None:
    """The AF command `text` is a typo of, or None. Only when the first word is not a command itself,
    is near exactly one command, and what follows fits that command (so "toen ik daar was" is no `toon`)."""
    norm = normalise(text)
    if not norm:
        return None
    word = norm.split(" ", 1)[0]
    if word in _SUGGESTABLE or word in ANYONE or word in DIALOG or parse(text, ANYONE) is not None:
        return None
    found = _nearest(word)
    if found is None:
        return None
    name, right = found
    rest = text.strip().lstrip("!/").strip()
    args = rest.split(None, 1)[1].strip() if len(rest.split(None, 1)) > 1 else ""
    if args and name != "help":
        try:
            parse_af(name, args)
        except Usage:
            return None
    return Suggestion(name, right, f"{right} {args}" if args else right, args)


def _needs_arguments(name: str) -> bool:
    """Whether the command cannot be typed alone (`toon` needs a reference; `lijst` and `rapport` do not)."""
    shape = SHAPES.get(name, "")
    return bool(shape[:-2] if shape.endswith("?") else shape)   # "w?": one optional word


def suggestion_reply(found: Suggestion, t: Texts) -> Reply:
    """"Bedoel je ...?": a button that sends it for a read-only command typed in full; for a command that
    misses its reference, how to type it; for any other only the words to type, so nothing that changes a
    signal ever happens before the AF types it."""
    command = quoted(found.text)
    if not found.args and _needs_arguments(found.name):
        # Also for a read-only command: a button that sends a bare "toon" would only get this usage back.
        return Reply(t("af.suggest.how", command=found.word) + "\n" + t(f"af.usage.{found.name}"))
    if found.read_only and "\n" not in found.text:
        return Reply(t("af.suggest.read_only", command=command),
                     actions=(Action(t("af.suggest.button", command=found.text), found.text),))
    return Reply(t("af.suggest.changes", command=command))


def af_help(t: Texts) -> str:
    """`help` for an AF: the AF's commands, how to get more, and that the melder's commands work too."""
    lines = [t("af.help.header")]
    lines += [f"- {t(f'af.help.line.{name}')}" for name in HELP_ORDER]
    lines += [t("af.help.footer")]
    return "\n".join(lines)


def command_help(args: str, t: Texts) -> str | None:
    """`help <command>` for an AF, with the Dutch or English word; None when the word is a melder's command
    (their help answers it)."""
    word = normalise(args).split(" ", 1)[0]
    name = AF_ONLY.get(word)
    if name is None and (word in ANYONE or word in DIALOG):
        return None
    prefix = ""
    if name is None:
        found = _nearest(word)
        if found is None or found[0] == "help":
            return t("af.help.unknown", word=quoted(args)) + "\n\n" + af_help(t)
        name = found[0]
        prefix = t("af.suggest.how", command=found[1]) + "\n"
    return prefix + t(f"af.help.explain.{name}") + "\n" + t(f"af.usage.{name}")


# --- views ---------------------------------------------------------------------------------------

def _when(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%d-%m-%Y %H:%M")


def melder_label(signal: Signal, melder_name: str | None, melder_id: str, t: Texts) -> str:
    """Who reported, as the AF may see it: a pseudonym only, for an anonymous melder."""
    if signal.anonymous:
        return t("af.melder_anonymous", pseudonym=signal.pseudonym or "?")
    return t("af.melder_named", name=quoted(melder_name or melder_id), id=quoted(melder_id))


def next_step(signal: Signal) -> str:
    """The catalogue key of what the signal waits for."""
    if signal.status is Status.CLOSED:
        return "af.next.closed"
    if signal.handler is None:
        return "af.next.take"
    news = signal.last_partner_feedback_at
    if news and (signal.melder_last_informed_at is None or signal.melder_last_informed_at < news):
        return "af.next.inform"
    if signal.status is Status.FORWARDED and signal.waiting_partners():
        return "af.next.feedback"
    if signal.status is Status.IN_PROGRESS:
        return "af.next.forward"
    return "af.next.close"


def _waiting_first(signal: Signal) -> bool:
    """An urgent signal nobody took: it leads the list."""
    return signal.urgent and signal.handler is None and signal.status is Status.RECEIVED


def queue_view(signals: list[Signal], now: datetime, t: Texts, gemeenten: dict[str, str] | None = None) -> str:
    """The open signals, urgent ones nobody took first. `gemeenten`: the name per meldpunt id, for an AF of
    several; each line then names its gemeente."""
    if not signals:
        return t("af.queue.empty")
    lines = [t("af.queue.header", count=len(signals))]
    for s in sorted(signals, key=lambda s: not _waiting_first(s)):   # stable: otherwise as given, oldest first
        days = max((now - s.created_at).days, 0)
        waiting = ", ".join(s.waiting_partners()) or ", ".join(s.partners)
        gemeente = (gemeenten or {}).get(s.meldpunt_id)
        lines.append(t(
            "af.queue.line_gemeente" if gemeente else "af.queue.line", reference=s.reference, days=days,
            status=t(f"af.status.{s.status}"), urgent=t("af.urgent_mark") if _waiting_first(s) else "",
            handler=s.handler or t("af.nobody"), next=t(next_step(s), partners=waiting),
            number=s.reference.number, gemeente=gemeente or "",
        ))
    return "\n".join(lines)


def _event_line(kind: EventKind, data: dict, t: Texts, delivery: str | None = None) -> str:
    # Notes, feedback, tags and supplements are someone's words; the rest comes from the configuration.
    detail = quoted(data.get("text")) or data.get("partner") or data.get("outcome") or quoted(data.get("value")) or ""
    if kind is EventKind.FORWARDED or kind is EventKind.CONSULTED:
        detail = data.get("partner", "")
    if kind is EventKind.PARTNER_FEEDBACK:
        detail = f"{data.get('partner', '')}: {quoted(data.get('text'))}"
    if kind is EventKind.TAG:
        detail = f"{data.get('kind', '')} {quoted(data.get('value'))}"
    if kind is EventKind.HANDED_OVER:
        detail = f"{data.get('previous') or '-'} -> {data.get('to') or t('af.nobody')}"
    if kind is EventKind.MERGED:
        detail = data.get("into") or data.get("absorbed") or ""
    label = t(f"af.event.{kind.name.lower()}")
    if delivery:
        label = f"{label} ({delivery})"
    return f"{label}: {detail}" if detail else label


def signal_view(signal: Signal, melder: str, matches: Sequence[tuple[str, ...]], tz: ZoneInfo, t: Texts,
                summary_when: str, deliveries: dict[int, str] | None = None) -> str:
    """`deliveries`: per event (its place in `signal.events`) how its message to the melder fared."""
    c = signal.content
    lines = [
        t("af.show.title", reference=signal.reference, status=t(f"af.status.{signal.status}"),
          urgent=t("af.urgent_mark") if signal.urgent else ""),
        t("af.show.meta", created=_when(signal.created_at, tz), form=form_label(t, signal.form),
          context=t(f"choice.context.{signal.context}")),
        t("af.show.melder", melder=melder),
        t("af.show.handler", handler=signal.handler or t("af.nobody")),
    ]
    if signal.outcome:
        lines.append(t("af.show.outcome", outcome=t(f"af.outcome.{signal.outcome.value}")))
    if signal.merged_into:
        lines.append(t("af.show.merged_into", reference=signal.merged_into))
    lines += [
        "",
        t("summary.line", label=t("label.wat"), value=quoted(c.wat)),
        t("summary.line", label=t("label.waar"), value=quoted(c.waar)),
        t("summary.line", label=t("label.wanneer"), value=summary_when),
        t("summary.line", label=t("label.wie"), value=quoted(c.wie)),
    ]
    supplements = [e for e in signal.events if e.kind is EventKind.SUPPLEMENTED]
    if supplements:
        lines.append(t("af.show.supplements"))
        lines += [f"- {_when(e.at, tz)}: {quoted(e.data.get('text'))}" for e in supplements]
    lines.append(t("af.show.known") if matches else t("af.show.known_none"))
    for ref, kind, *like in matches:   # (reference, kind[, the other signal's words when only alike])
        lines.append(t("af.show.match_like", reference=ref, kind=t(f"af.kind.{kind}"), like=quoted(like[0]))
                     if like and like[0] else t("af.show.match", reference=ref, kind=t(f"af.kind.{kind}")))
    lines.append(t("af.show.history"))
    for index, e in enumerate(signal.events):
        actor = t("af.actor.melder") if e.actor == "melder" else e.actor
        lines.append(f"- {_when(e.at, tz)} {actor}: {_event_line(e.kind, e.data, t, (deliveries or {}).get(index))}")
    return "\n".join(lines)


def partner_text(signal: Signal, partner_name: str, partner_contact: str, meldpunt_name: str, af_name: str,
                 tz: ZoneInfo, t: Texts, summary_when: str) -> str:
    """What the AF sends to a partner: the signal without the melder's identity and without notes."""
    c = signal.content
    lines = [
        t("af.partner.to", partner=partner_name, contact=partner_contact or "-"),
        "-----",
        t("af.partner.subject", reference=signal.reference, meldpunt=meldpunt_name),
        t("af.partner.meta", created=_when(signal.created_at, tz), form=form_label(t, signal.form),
          context=t(f"choice.context.{signal.context}")),
        t("summary.line", label=t("label.wat"), value=quoted(c.wat)),
        t("summary.line", label=t("label.waar"), value=quoted(c.waar)),
        t("summary.line", label=t("label.wanneer"), value=summary_when),
        t("summary.line", label=t("label.wie"), value=quoted(c.wie)),
    ]
    supplements = [e for e in signal.events if e.kind is EventKind.SUPPLEMENTED]
    lines += [t("af.partner.supplement", when=_when(e.at, tz), text=quoted(e.data.get("text"))) for e in supplements]
    lines += [t("af.partner.closing", af=af_name), "-----"]
    return "\n".join(lines)
