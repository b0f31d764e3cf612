"""The signal's lifecycle table, references, and the words of the contract."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from meldbot.dialogs.commands import AF_ONLY, ANYONE, DIALOG, exact, normalise, parse
from meldbot.core import i18n
from meldbot.core.domain import (
    ALLOWED, Content, Context, EventKind, Form, InvalidTransition, Outcome, Reference, RefQuery,
    Signal, SignalClosed, Status,
)

AT = datetime(2026, 11, 18, 10, 0, tzinfo=timezone.utc)


def new_signal() -> Signal:
    return Signal.submit(meldpunt_id="bergeijk", reference=Reference(2026, 7), content=Content(wat="x"),
                         form=Form.LABOUR, context=Context.DESK, urgent=False, anonymous=False,
                         pseudonym=None, at=AT)


def test_a_new_signal_is_received_with_a_submitted_event():
    signal = new_signal()
    assert signal.status is Status.RECEIVED
    assert [e.kind for e in signal.events] == [EventKind.SUBMITTED]


def test_the_full_route_records_every_step_as_an_event():
    signal = new_signal()
    signal.pick_up("anna", AT)
    signal.forward("anna", "politie", AT)
    signal.forward("anna", "nla", AT)          # several partners at once
    signal.close("anna", Outcome.DONE, AT)
    signal.inform_melder("anna", "Het is doorgezet.", AT)            # still allowed after closing
    signal.reopen("anna", AT)
    assert signal.status is Status.IN_PROGRESS and signal.outcome is None
    assert [e.kind for e in signal.events] == [
        EventKind.SUBMITTED, EventKind.PICKED_UP, EventKind.FORWARDED, EventKind.FORWARDED,
        EventKind.CLOSED, EventKind.MELDER_INFORMED, EventKind.REOPENED,
    ]


def test_taking_over_returns_the_previous_handler():
    signal = new_signal()
    assert signal.pick_up("anna", AT) is None
    assert signal.pick_up("bram", AT) == "anna"
    assert signal.handler == "bram"


def test_a_closed_signal_cannot_be_forwarded_or_closed_again():
    signal = new_signal()
    signal.close("anna", Outcome.NO_TRAFFICKING, AT)
    with pytest.raises(SignalClosed):
        signal.forward("anna", "politie", AT)
    with pytest.raises(InvalidTransition):
        signal.close("anna", Outcome.DONE, AT)


def test_every_status_has_a_row_in_the_lifecycle_table():
    assert set(ALLOWED) == set(Status)
    for targets in ALLOWED.values():
        assert targets <= set(Status)


@pytest.mark.parametrize("typed, expected", [
    ("MH-2026-0007", RefQuery(7, 2026)), ("mh-2026-7", RefQuery(7, 2026)), ("7", RefQuery(7)),
    ("0007", RefQuery(7)), ("  12 ", RefQuery(12)), ("MH-2026-12345", RefQuery(12345, 2026)),
    ("abc", None), ("0", None), ("", None), ("MH-26-1", None),
])
def test_references_are_read_in_full_or_as_a_bare_number(typed, expected):
    assert RefQuery.parse(typed) == expected


def test_a_reference_prints_with_at_least_four_digits():
    assert str(Reference(2026, 7)) == "MH-2026-0007"
    assert str(Reference(2027, 12345)) == "MH-2027-12345"


@pytest.mark.parametrize("typed, name", [
    ("melden", "report"), ("  MELDEN ", "report"), ("/melden", "report"), ("!report", "report"),
    ("mijn meldingen", "my_reports"), ("Mijn  Meldingen", "my_reports"), ("my reports", "my_reports"),
    ("taal en", "language"), ("signalen", "signs"), ("contact", "contact"),
])
def test_contract_words_match_whatever_the_case_spacing_or_prefix(typed, name):
    command = parse(typed, ANYONE)
    assert command is not None and command.name == name


def test_free_text_after_a_command_keeps_its_case_and_accents():
    command = parse("aanvullen 7 De Vries reed een Peugeot, café ’t Hoekje", ANYONE)
    assert command.name == "supplement"
    assert command.args == "7 De Vries reed een Peugeot, café ’t Hoekje"


def test_accents_are_ignored_in_command_words():
    assert normalise("Téminàl  ") == "teminal"
    assert exact("ánnuleren", DIALOG) == "cancel"


def test_inside_the_dialog_only_a_whole_message_is_a_command():
    assert exact("stop", DIALOG) == "cancel"
    assert exact("stop met uitbuiten", DIALOG) is None


def test_every_af_command_has_its_english_alias():
    assert {"queue", "show", "take", "note", "tag", "consult", "forward", "feedback", "inform", "close",
            "reopen", "merge", "handover", "stats"} <= set(AF_ONLY)


def test_both_catalogues_have_the_same_sentences_with_the_same_placeholders():
    assert i18n.keys("nl") == i18n.keys("en")
    for key in i18n.keys("nl"):
        assert i18n.placeholders("nl", key) == i18n.placeholders("en", key), key
