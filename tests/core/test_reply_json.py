"""A Reply as stored in the outbox and with a platform event's answer (Reply.to_json, written field by field):
every field but the picture comes back, whatever its text, and a field added to Reply is not silently lost."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, strategies as st

from meldbot.core.messaging import Action, Choice, Fact, Reply

_text = st.text(max_size=40)
_replies = st.builds(
    Reply,
    text=_text,
    choices=st.lists(st.builds(Choice, st.integers(0, 99), _text, _text), max_size=3).map(tuple),
    actions=st.lists(st.builds(Action, _text, _text), max_size=3).map(tuple),
    image=st.none() | st.binary(max_size=8),
    image_alt=_text,
    urgent=st.booleans(),
    language=st.none() | st.sampled_from(["nl", "en"]),
    facts=st.lists(st.builds(Fact, _text, _text), max_size=3).map(tuple),
    facts_lines=st.tuples(st.integers(0, 9), st.integers(0, 9)),
)


@given(_replies)
def test_every_field_but_the_picture_comes_back(reply):
    assert Reply.from_json(reply.to_json()) == dataclasses.replace(reply, image=None)


def test_the_stored_form_names_every_field_of_reply():
    stored = json.loads(Reply("x", image=b"png").to_json())
    assert set(stored) == {f.name for f in dataclasses.fields(Reply)} - {"image"}
