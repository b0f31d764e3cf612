"""The report's summary and questions in Matrix: HTML with the same structure as Teams' cards (the answers
as a list, the choices numbered), and a plain-text body that still holds everything needed to answer by
typing. The sanitising guarantees stay: nothing a melder typed becomes a tag."""

from __future__ import annotations

import re
from dataclasses import replace

from meldbot.adapters.matrix.render import render
from meldbot.core.messaging import Action, Choice, Reply
from meldbot.dialogs.report import summary
from tests.support.dialog import at_summary, ctx

HOSTILE = "<img src=x onerror=alert(1)> <a href='https://x.example'>klik</a> @room"


def test_the_summary_is_a_list_of_question_and_answer_and_the_body_keeps_every_line():
    draft = at_summary()
    reply = summary(ctx(), draft)
    content = render(reply)
    html = content["formatted_body"]
    assert html.count("<li><strong>") == 7
    items = re.findall(r"<li><strong>(.*?)</strong>: (.*?)</li>", html)
    assert [label for label, _ in items] == ["Wat", "Waar", "Wanneer", "Wie", "Soort", "In welk werk", "Anoniem"]
    assert html.startswith("<p>Dit is je melding:</p><ul>")
    # The body is the text as typed: the answers' lines, and the words to type for every button.
    assert content["body"].startswith(reply.text)
    for line in reply.text.split("\n"):
        assert line in content["body"]
    assert "versturen" in content["body"] and "wijzig" in content["body"] and "stop" in content["body"]


def test_a_melders_markup_in_the_summary_stays_text():
    draft = at_summary()
    hostile = replace(draft, answers={**draft.answers, "wat": HOSTILE + "\nBehandelaar: iemand"})
    content = render(summary(ctx(), hostile))
    html = content["formatted_body"]
    assert set(re.findall(r"<(\w+)", html)) <= {"p", "br", "ul", "li", "strong", "code"}
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # Both lines of the answer in its list item, without the quote marks the plain body needs.
    assert "<li><strong>Wat</strong>: &lt;img" in html and "<br>Behandelaar: iemand</li>" in html
    assert "@\u2060room" in html and "@room" not in content["body"]
    assert "  > Behandelaar: iemand" in content["body"]


def test_an_urgent_summary_keeps_its_mark_before_the_list():
    draft = at_summary()
    content = render(summary(ctx(), replace(draft, urgent=True)))
    assert content["formatted_body"].startswith("<p><strong>\u203c\ufe0f </strong>Dit is je melding:</p><ul>")
    assert content["body"].startswith("\u203c\ufe0f Dit is je melding:")


def test_a_question_has_its_text_and_numbered_choices_in_html_and_body():
    reply = Reply("Vraag 5 van 7\nWelke soort?", choices=(Choice(1, "seksueel", "seksuele uitbuiting"),
                                                        Choice(2, "arbeid", "arbeidsuitbuiting")))
    content = render(reply)
    assert content["formatted_body"] == ('<p>Vraag 5 van 7<br>Welke soort?</p><ol start="1">'
                                         "<li><strong>seksueel</strong> — seksuele uitbuiting</li>"
                                         "<li><strong>arbeid</strong> — arbeidsuitbuiting</li></ol>")
    assert content["body"] == "Vraag 5 van 7\nWelke soort?\n1. seksueel — seksuele uitbuiting\n2. arbeid — arbeidsuitbuiting"


def test_a_reply_without_facts_renders_as_before():
    reply = Reply("Weekoverzicht", actions=(Action("Toon de lijst", "lijst"),))
    assert render(reply)["formatted_body"] == "<p>Weekoverzicht</p><ul><li>Toon de lijst: <code>lijst</code></li></ul>"


def test_a_choice_answered_by_its_number_shows_no_word_in_the_body_html_or_terminal():
    """The gemeente buttons send the number; "1. 1 — Gemeente Bergeijk" read as a slip in every plain view."""
    from meldbot.adapters import console

    reply = Reply("Bij welke gemeente werk je?", choices=(Choice(1, "1", "Gemeente Bergeijk"),
                                                            Choice(2, "2", "Gemeente Eersel")))
    content = render(reply)
    assert "1. Gemeente Bergeijk" in content["body"] and "1 —" not in content["body"]
    assert "<li>Gemeente Eersel</li>" in content["formatted_body"]
    shown = console.render(reply)
    assert "1. Gemeente Bergeijk" in shown and "1 —" not in shown
