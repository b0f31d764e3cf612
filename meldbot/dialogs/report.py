"""The melder's report dialog: a pure function of (draft, message) -> (draft, replies).

State table (one row per situation; every move is an ordinary transition):

  situation        | message                           | next situation         | replies
  -----------------+-----------------------------------+------------------------+-------------------------------
  idle             | melden                            | question wat           | intro + question
  idle             | spoed                             | question wat (urgent)  | numbers + question
  idle             | help / contact / signalen         | idle                   | that text
  idle             | "ik wil iets melden", "meldne"    | (as melden; understand.opener)
  idle             | a greeting, or nothing            | idle                   | welcome
  idle             | a typo of another command         | idle                   | "Bedoel je ...?" + button
  idle             | anything else                     | idle                   | two short lines
  question q       | terug                             | previous question      | question (first: stays)
  question q       | wijzig <vraag>                    | question <vraag>, edit | question; after it: back to q
  question q       | wijzig                            | question q             | which question (buttons)
  question q       | stop / annuleren (also "stop.")   | idle (draft erased)    | cancelled
  question q       | spoed                             | question q (urgent)    | numbers + question again
  question q       | help / contact / signalen         | question q             | that text + question again
  question q       | picture or file                   | question q             | "describe it in words"
  question q       | invalid answer                    | question q             | what is wrong + question again
  question q       | any other text ("taal was ...")   | (checked as the answer, below)
  choice q         | a label, everyday yes/no          | (as that choice; understand.choice)
  choice q         | a typo of one choice or command   | question q, offer kept | "Bedoel je ...?"; a yes takes it
  question q       | valid answer                      | next question/summary  | next question or summary
                   |   (while editing)                 | back where it started  | that question or the summary
  summary          | versturen                         | idle                   | engine submits (Submission)
  summary          | wijzig <vraag>                    | question <vraag>, edit | question; after it: summary
  summary          | terug                             | question anoniem       | question
  choice anoniem   | doubt ("liever niet"), a `nee`    | question anoniem       | "Wil je anoniem blijven?
                   |   with a reason, a contradiction  |                        |   Typ ja of nee." + choices
  choice anoniem   | a question ("anoniem?")           | question anoniem       | its help + question again
  summary          | "ok", "klopt", "nee", "laat maar" | (as versturen / wijzig; stop only offered)
  summary          | a question ("klopt dat?", "ok?",  | summary                | how to go on (nothing sent)
                   |   "versturen?")                   |                        |
  any              | stop? / annuleren?                | (stop only offered)
  summary          | anything else                     | summary                | how to go on
  any              | after "Bedoel je ...?": a yes     | (as the offered word)
  any              | after "Bedoel je ...?": a yes and | (offered again)
                   |   more ("ja, maar ook seksueel")  |

Inside the dialog only the contract's whole messages are commands (commands.dialog_command); `taal nl` /
`taal en` are the engine's (it changes the person's language), `mijn meldingen` and `aanvullen` are answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from meldbot.core.domain import Content, Context, Form
from meldbot.dialogs import understand
from meldbot.dialogs.commands import ANYONE, DIALOG, asks, dialog_command, exact, normalise
from meldbot.dialogs.when import parse_when, when_spoken
from meldbot.core.i18n import Texts
from meldbot.core.messaging import Action, Choice, Fact, Reply
from meldbot.core.text import clean_incoming, quote_user_text

QUESTIONS = ("wat", "waar", "wanneer", "wie", "soort", "context", "anoniem")
EDIT_ALIASES = {
    "what": "wat", "where": "waar", "when": "wanneer", "who": "wie",
    "form": "soort", "kind": "soort", "type": "soort", "anonymous": "anoniem",
}
CHOICES: dict[str, tuple[str, ...]] = {
    "soort": ("seksueel", "arbeid", "crimineel", "orgaan", "onbekend"),
    "context": ("balie", "huisbezoek", "toezicht", "vergunning", "anders"),
    "anoniem": ("nee", "ja"),
}
# English words accepted beside the contract words.
CHOICE_ALIASES: dict[str, dict[str, str]] = {
    "soort": {"sexual": "seksueel", "labour": "arbeid", "labor": "arbeid", "criminal": "crimineel",
              "organ": "orgaan", "unknown": "onbekend", "weet ik niet": "onbekend", "dont know": "onbekend"},
    "context": {"desk": "balie", "home visit": "huisbezoek", "inspection": "toezicht", "controle": "toezicht",
                "permit": "vergunning", "aanvraag": "vergunning", "other": "anders"},
    "anoniem": {"no": "nee", "yes": "ja"},
}
MAX_ANSWER = 4000


@dataclass(frozen=True)
class Contact:
    label: str
    number: str
    hours: str = ""


@dataclass(frozen=True)
class DialogContext:
    """Everything a step may look at besides the draft: words, time, and the meldpunt's numbers."""

    texts: Texts
    now: datetime
    tz: ZoneInfo
    contacts: tuple[Contact, ...]
    signs_text: str | None = None
    # Outside office hours: the next opening, when an AF sees a signal at the latest; None: the office is open.
    # Worked out only when asked (a `spoed`), not on every turn.
    af_sees: Callable[[], datetime | None] = lambda: None


@dataclass(frozen=True)
class Draft:
    """The dialog state of one conversation. `step` None means no report is being made."""

    step: str | None = None
    answers: dict[str, str] = field(default_factory=dict)
    when_iso: str | None = None
    when_precision: str = "none"
    when_end: str | None = None  # the exclusive end of a weekend or a few days ("met kerst")
    when_assumed: bool = False  # the bot chose a reading of a clock hour: the summary says which
    urgent: bool = False
    editing: bool = False
    # While editing: the question the melder was at when they typed `wijzig`; None: back to the summary.
    resume: str | None = None
    # The bot asked "Bedoel je ...?": this contract message is what a yes ("ja", "ja graag", "ok") sends.
    offer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"step": self.step, "answers": dict(self.answers), "when_iso": self.when_iso,
                "when_precision": self.when_precision, "urgent": self.urgent, "editing": self.editing,
                # Only when set: a draft without them is written as before (a rollback reads it).
                **({"when_end": self.when_end} if self.when_end else {}),
                **({"when_assumed": True} if self.when_assumed else {})}
        if self.resume is not None:   # only when set: the JSON earlier versions stored otherwise
            data["resume"] = self.resume
        if self.offer is not None:
            data["offer"] = self.offer
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Draft":
        if not data:
            return cls()
        step = data.get("step")
        if step not in QUESTIONS and step not in (None, "summary"):
            step = None
        resume = data.get("resume") if data.get("resume") in QUESTIONS else None
        return cls(step=step, answers=dict(data.get("answers", {})), when_iso=data.get("when_iso"),
                   when_precision=data.get("when_precision", "none"), when_end=data.get("when_end"),
                   when_assumed=bool(data.get("when_assumed")),
                   urgent=bool(data.get("urgent")), editing=bool(data.get("editing")), resume=resume,
                   offer=data["offer"] if isinstance(data.get("offer"), str) else None)

    @property
    def active(self) -> bool:
        return self.step is not None


@dataclass(frozen=True)
class Submission:
    """What the melder sends, as the domain reads it: the engine turns it into a signal."""

    content: Content
    form: Form
    context: Context
    urgent: bool
    anonymous: bool

    @classmethod
    def of(cls, draft: Draft) -> Submission:
        answers = draft.answers
        content = Content(wat=answers.get("wat", ""), waar=answers.get("waar", ""),
                          wanneer=answers.get("wanneer", ""), wanneer_iso=draft.when_iso, wie=answers.get("wie", ""))
        return cls(content=content, form=Form(answers.get("soort", "onbekend")),
                   context=Context(answers.get("context", "anders")), urgent=draft.urgent,
                   anonymous=answers.get("anoniem") == "ja")


@dataclass(frozen=True)
class Step:
    draft: Draft
    replies: tuple[Reply, ...]
    submit: Draft | None = None      # the melder sent this draft (the answers as given)
    erased: bool = False             # the draft was thrown away on purpose

    @property
    def submission(self) -> Submission | None:
        """What was sent, typed: the engine turns it into a signal."""
        return Submission.of(self.submit) if self.submit is not None else None


# --- texts built from the catalogue -------------------------------------------------------------

def contacts_text(ctx: DialogContext) -> str:
    t = ctx.texts
    lines = [t("contact.header")]
    for c in ctx.contacts:
        hours = f" ({c.hours})" if c.hours else ""
        lines.append(t("contact.line", label=c.label, number=c.number, hours=hours))
    return "\n".join(lines)


def welcome(ctx: DialogContext) -> Reply:
    return Reply(ctx.texts("welcome", contacts=contacts_text(ctx)))


def said(t: Texts, word: str) -> str:
    """A contract word as the melder's language says it, and the bot accepts it typed: `arbeid` is "labour" in
    English, `versturen` "send", `ja` "yes" (understand.word.* in the catalogue; in Dutch the word itself)."""
    key = "understand.word." + word.replace(" ", "_")
    return t(key) if t.has(key) else word


def _choices(q: str, t: Texts) -> tuple[Choice, ...]:
    return tuple(Choice(i, said(t, word), t(f"choice.{q}.{word}")) for i, word in enumerate(CHOICES.get(q, ()), start=1))


def question(q: str, ctx: DialogContext, draft: Draft) -> Reply:
    t = ctx.texts
    number = QUESTIONS.index(q) + 1
    text = t("question.progress", number=number, total=len(QUESTIONS)) + "\n" + t(f"question.{q}")
    return Reply(text, choices=_choices(q, t))


WHEN_FORMATS = {"time": "%d-%m-%Y %H:%M", "part_of_day": "%d-%m-%Y %H:%M", "day": "%d-%m-%Y",
                "weekend": "%d-%m-%Y", "days": "%d-%m-%Y",
                "week": "%d-%m-%Y", "month": "%m-%Y", "year": "%Y"}


def _when_shown(ctx: DialogContext, draft: Draft) -> str:
    """The raw answer, with how it was understood so the melder can check it."""
    raw = draft.answers.get("wanneer", "")
    if not draft.when_iso or draft.when_precision not in WHEN_FORMATS:
        return quote_user_text(raw)
    moment = datetime.fromisoformat(draft.when_iso).astimezone(ctx.tz)
    shown = when_spoken(ctx.texts, quote_user_text(raw), moment, draft.when_precision, draft.when_end, draft.when_assumed, ctx.tz)
    if shown is not None:
        return shown
    return ctx.texts("summary.when_understood", raw=quote_user_text(raw), date=moment.strftime(WHEN_FORMATS[draft.when_precision]))


def current(ctx: DialogContext, draft: Draft) -> Reply:
    """What the melder is being asked right now: the open question or the summary."""
    if draft.step is None:
        raise ValueError("no report is being made")
    return summary(ctx, draft) if draft.step == "summary" else question(draft.step, ctx, draft)


def summary(ctx: DialogContext, draft: Draft) -> Reply:
    t = ctx.texts
    lines = [t("summary.header")]
    facts: list[Fact] = []
    for q in QUESTIONS:
        value = draft.answers.get(q, "")
        if not value:
            value = "-"
        elif q in CHOICES and t.has(f"choice.{q}.{value}"):
            value = t(f"choice.{q}.{value}")
        elif q == "wanneer":
            value = _when_shown(ctx, draft)
        elif q not in CHOICES:
            value = quote_user_text(value)
        lines.append(t("summary.line", label=t(f"label.{q}"), value=value))
        facts.append(Fact(t(f"label.{q}"), value.lstrip("\n")))
    # The answers' lines, which a platform with a list or table shows as the facts.
    first = len(t("summary.header").split("\n"))
    facts_lines = (first, len("\n".join(lines).split("\n")))
    if draft.urgent:
        lines.append(t("summary.urgent"))
    lines.append(t("summary.footer"))
    # Buttons where the platform has them (the same words typed work everywhere).
    actions = (Action(t("button.send"), "versturen"), Action(t("button.edit"), "wijzig"),
               Action(t("button.cancel"), "stop"))
    return Reply("\n".join(lines), actions=actions, urgent=draft.urgent, facts=tuple(facts), facts_lines=facts_lines)


def submitted(ctx: DialogContext, reference: str, anonymous: bool, pseudonym: str | None) -> Reply:
    t = ctx.texts
    text = t("submitted", reference=reference)
    if anonymous and pseudonym:
        text += "\n" + t("submitted_anonymous", pseudonym=pseudonym)
    return Reply(text)


def _moment(ctx: DialogContext, moment: datetime) -> str:
    """A moment as people say it: "maandag 30 november om 08.30 uur"."""
    t, local = ctx.texts, moment.astimezone(ctx.tz)
    return t("urgent.moment", weekday=t(f"urgent.weekday.{local.weekday()}"), day=local.day,
             month=t(f"rapport.month.{local.month}"), hour=f"{local.hour:02d}", minute=f"{local.minute:02d}")


def _numbers(ctx: DialogContext) -> Reply:
    """112 and the police, the numbers open now first; honest about when an AF sees the signal."""
    t = ctx.texts
    sees = ctx.af_sees()
    af = t("urgent.af_now") if sees is None else t("urgent.af_later", moment=_moment(ctx, sees))
    return Reply(t("urgent.numbers", contacts=contacts_text(ctx), af=af), urgent=True)


def _info(word: str, ctx: DialogContext, in_dialog: str | None) -> Reply:
    t = ctx.texts
    if word == "contact":
        return Reply(contacts_text(ctx))
    if word == "signs":
        return Reply(ctx.signs_text or t("signs"))
    return Reply(t(f"help.question.{in_dialog}") if in_dialog else t("help.general"))


# --- the step function ---------------------------------------------------------------------------

def step(draft: Draft, text: str, ctx: DialogContext, *, has_attachment: bool = False) -> Step:
    if draft.offer is not None:
        # After "Bedoel je ...?" a yes sends what was offered; a yes with more ("ja, maar ook seksueel") is neither
        # the offer nor another answer, and the offer is made again; anything else is read as a new answer.
        if understand.yes_and_more(text) and draft.step is not None:
            return _offered(replace(draft, offer=None), draft.step, draft.offer, ctx)
        text, draft = (draft.offer if understand.yes(text) else text), replace(draft, offer=None)
    if draft.step is None:
        return _idle(draft, text, ctx, has_attachment)
    if draft.step == "summary":
        return _at_summary(draft, text, ctx, has_attachment)
    return _at_question(draft, draft.step, text, ctx, has_attachment)


def _idle(draft: Draft, text: str, ctx: DialogContext, has_attachment: bool) -> Step:
    word = exact(text, ANYONE) or exact(text, DIALOG)
    if word == "report":
        new = Draft(step=QUESTIONS[0])
        return Step(new, (Reply(ctx.texts("report.intro")), question(QUESTIONS[0], ctx, new)))
    if word == "urgent":
        new = Draft(step=QUESTIONS[0], urgent=True)
        return Step(new, (_numbers(ctx), question(QUESTIONS[0], ctx, new)))
    if word in ("help", "contact", "signs"):
        return Step(draft, (_info(word, ctx, None),))
    if has_attachment:
        return Step(draft, (Reply(ctx.texts("attachment.idle")), welcome(ctx)))
    reading = understand.opener(text) if word is None else understand.NOTHING
    if reading.word == understand.HELLO:
        return Step(draft, (welcome(ctx),))
    if reading.word is not None:     # "ik wil iets melden", "meldne": as if `melden` was typed
        return _idle(draft, reading.word, ctx, has_attachment)
    if reading.near is not None:
        return Step(draft, (_suggestion(ctx, reading.near),))
    return Step(draft, (_not_understood(ctx),))


def _resumed(draft: Draft) -> Draft:
    """Editing ends: back to the question the melder was at, or to the summary."""
    return replace(draft, step=draft.resume or "summary", editing=False, resume=None)


def _edit_target(args: str) -> str | None:
    """The question `wijzig <args>` names (Dutch or English name, or its number), or None."""
    target = EDIT_ALIASES.get(args, args)
    if target.isdigit() and 1 <= int(target) <= len(QUESTIONS):
        target = QUESTIONS[int(target) - 1]
    return target if target in QUESTIONS else None


def _edit_which(ctx: DialogContext) -> Reply:
    t = ctx.texts
    return Reply(t("edit.which", names=", ".join(QUESTIONS)),
                 actions=tuple(Action(t(f"label.{q}"), f"wijzig {q}") for q in QUESTIONS))


def _edit(draft: Draft, target: str, ctx: DialogContext) -> Step:
    """Answer `target` again, then back to where the melder was: the question they were at (kept through a
    second `wijzig`), or the summary."""
    if draft.step == "summary":
        editing = replace(draft, step=target, editing=True, resume=None)
    elif draft.editing:
        editing = replace(draft, step=target) if target != draft.resume else _resumed(draft)
    elif target == draft.step:
        editing = draft
    else:
        editing = replace(draft, step=target, editing=True, resume=draft.step)
    return Step(editing, (question(target, ctx, editing),))


def _at_question(draft: Draft, q: str, text: str, ctx: DialogContext, has_attachment: bool) -> Step:
    t = ctx.texts
    command = dialog_command(text)
    word = command.name if command is not None else None
    target = _edit_target(command.args) if command is not None and word == "edit" else None
    if word == "back":
        if draft.editing:
            back = _resumed(draft)
            return Step(back, (current(ctx, back),))
        index = QUESTIONS.index(q)
        if index == 0:
            return Step(draft, (Reply(t("back.first")), question(q, ctx, draft)))
        prev = replace(draft, step=QUESTIONS[index - 1])
        return Step(prev, (question(QUESTIONS[index - 1], ctx, prev),))
    if word == "cancel":
        if asks(text):   # "stop?": a question; erasing cannot be undone, so it is only offered
            return _offered(draft, q, "stop", ctx)
        return Step(Draft(), (Reply(t("cancelled")),), erased=True)
    if word == "urgent":
        urgent = replace(draft, urgent=True)
        return Step(urgent, (_numbers(ctx), question(q, ctx, urgent)))
    if word in ("help", "contact", "signs"):
        return Step(draft, (_info(word, ctx, q), question(q, ctx, draft)))
    if command is not None and word == "edit" and not command.args:
        return Step(draft, (_edit_which(ctx),))
    if target is not None:
        return _edit(draft, target, ctx)
    if word == "send":
        return Step(draft, (Reply(t("not_yet", word=normalise(text))), question(q, ctx, draft)))
    if word == "language":   # the engine switches the language; here only the question again
        return Step(draft, (question(q, ctx, draft),))
    if has_attachment and not text.strip():
        return Step(draft, (Reply(t("attachment.describe")), question(q, ctx, draft)))

    if q in CHOICES and clean(text) and _choice(q, clean(text)) is None:
        reading = understand.choice(q, text, CHOICES[q], CHOICE_ALIASES[q])
        if reading.word is not None:     # "arbeidsuitbuiting", "ja graag, ik wil anoniem blijven"
            text = reading.word
        elif reading.near is not None:
            return _offered(draft, q, reading.near, ctx)
        elif q == "anoniem" and len(clean(text)) <= MAX_ANSWER:
            return Step(draft, _anonymity_again(text, ctx, draft))
    answer, problem = _validate(q, text, ctx)
    if problem:
        return Step(draft, (Reply(problem), question(q, ctx, draft)))
    answers = {**draft.answers, q: answer}
    new = replace(draft, answers=answers)
    if q == "wanneer":
        when = parse_when(answer, ctx.now, ctx.tz, ctx.texts.language)
        new = replace(new, when_iso=when.start.isoformat() if when.start else None, when_precision=when.precision,
                      when_end=when.end.isoformat() if when.end else None, when_assumed=when.assumed)
    replies: list[Reply] = []
    if has_attachment:
        replies.append(Reply(t("attachment.not_stored")))
    if draft.editing:
        new = _resumed(new)
        replies.append(current(ctx, new))
    elif QUESTIONS.index(q) == len(QUESTIONS) - 1:
        new = replace(new, step="summary")
        replies.append(summary(ctx, new))
    else:
        following = QUESTIONS[QUESTIONS.index(q) + 1]
        new = replace(new, step=following)
        replies.append(question(following, ctx, new))
    return Step(new, tuple(replies))


def _validate(q: str, text: str, ctx: DialogContext) -> tuple[str, str | None]:
    t = ctx.texts
    cleaned = clean(text)
    if not cleaned:
        return "", t("error.empty")
    if len(cleaned) > MAX_ANSWER:
        return "", t("error.too_long", max=MAX_ANSWER, length=len(cleaned))
    if q in CHOICES:
        choice = _choice(q, cleaned)
        if choice is None:
            options = ", ".join(f"{c.number} {c.word}" for c in _choices(q, t))
            return "", t("error.choice", options=options)
        return choice, None
    return cleaned, None


def clean(text: str) -> str:
    """The answer as stored: cleaned like everything that comes in (adapters did so already; drafts
    saved before they did were not), without surrounding white space. Adapters escape for display."""
    return clean_incoming(text).strip()


def _choice(q: str, text: str) -> str | None:
    norm = normalise(text).rstrip(".)")
    options = CHOICES[q]
    if norm.isdigit() and 1 <= int(norm) <= len(options):
        return options[int(norm) - 1]
    if norm in options:
        return norm
    return CHOICE_ALIASES[q].get(norm)


def _at_summary(draft: Draft, text: str, ctx: DialogContext, has_attachment: bool) -> Step:
    t = ctx.texts
    command = dialog_command(text)
    word = command.name if command is not None else None
    if word in ("send", "cancel") and asks(text):
        # "versturen?", "stop?": a question. Sending and erasing cannot be undone: nothing happens on a "?".
        if word == "cancel":
            return _offered(draft, "summary", "stop", ctx)
        return Step(draft, (Reply(t("summary.how")),))
    if word == "send":
        return Step(Draft(), (), submit=draft)
    if command is not None and word == "edit":
        if not command.args:
            return Step(draft, (_edit_which(ctx),))
        target = _edit_target(command.args)
        if target is None:
            return Step(draft, (Reply(t("error.edit", names=", ".join(QUESTIONS))),))
        return _edit(draft, target, ctx)
    if word == "back":
        prev = replace(draft, step=QUESTIONS[-1])
        return Step(prev, (question(QUESTIONS[-1], ctx, prev),))
    if word == "cancel":
        return Step(Draft(), (Reply(t("cancelled")),), erased=True)
    if word == "urgent":
        urgent = replace(draft, urgent=True)
        return Step(urgent, (_numbers(ctx), summary(ctx, urgent)))
    if word in ("help", "contact", "signs"):
        return Step(draft, (_info(word, ctx, "summary"), summary(ctx, draft)))
    if has_attachment:
        return Step(draft, (Reply(t("attachment.describe")), summary(ctx, draft)))
    reading = understand.confirm(text, QUESTIONS, EDIT_ALIASES)
    if reading.word is not None:     # "ja klopt, verstuur maar", "verander waar": the contract's words
        return _at_summary(draft, reading.word, ctx, has_attachment)
    if reading.near is not None:     # "laat maar", "versturne": only on a yes
        return _offered(draft, "summary", reading.near, ctx)
    return Step(draft, (Reply(t("summary.how")),))


# --- understanding people: "Bedoel je ...?" and short answers when nothing is understood -----------------------

def _suggestion(ctx: DialogContext, near: str, q: str | None = None) -> Reply:
    """"Bedoel je arbeid (arbeidsuitbuiting)?" with a button that sends the word. At the yes/no question a yes
    cannot mean "what you offered" (`ja` is an answer there), so the reply says which word to type. The word
    shown is the one the melder's language types ("Did you mean labour ...?", "Then type yes.")."""
    t = ctx.texts
    shown = said(t, near)
    label = t(f"choice.{q}.{near}") if q in CHOICES and t.has(f"choice.{q}.{near}") else None
    meant = t("understand.meant_choice", word=shown, label=label) if label else t("understand.meant", word=shown)
    if near == "stop":
        meant += " " + t("understand.stop_means")
    if q in (None, "anoniem"):
        return Reply(meant + " " + t("understand.type_word", word=shown), actions=(Action(shown, near),))
    return Reply(meant + " " + t("understand.yes"), actions=(Action(t("understand.button", word=shown), near),))


def _anonymity_again(text: str, ctx: DialogContext, draft: Draft) -> tuple[Reply, ...]:
    """No reading at the anonymity question. A question ("anoniem?") gets what the choice means; doubt ("liever
    niet"), a contradiction or a `nee` with a reason gets one short line and the two choices: guessing `nee`
    would show the melder's name to the AF."""
    t = ctx.texts
    if asks(text):
        return Reply(t("help.question.anoniem")), question("anoniem", ctx, draft)
    return (Reply(t("understand.anoniem_again", yes=said(t, "ja"), no=said(t, "nee")), choices=_choices("anoniem", t)),)


def _offered(draft: Draft, q: str, near: str, ctx: DialogContext) -> Step:
    """Nothing is kept: the offer waits for a yes; at the yes/no question only the button or the word itself."""
    offered = draft if q == "anoniem" else replace(draft, offer=near)
    return Step(offered, (_suggestion(ctx, near, q),))


def _not_understood(ctx: DialogContext) -> Reply:
    """Outside a report: two lines, not the whole welcome again (a greeting or `help` still gets that). As the
    contract asks of a first message, they name `melden`, 112 and the police number that is open now."""
    t = ctx.texts
    police = next((c for c in ctx.contacts if c.number.replace(" ", "") != "112"), None)
    line = t("understand.idle_police", label=police.label, number=police.number) if police else ""
    return Reply(t("understand.idle", police=line), actions=(Action(t("understand.start"), "melden"),))
