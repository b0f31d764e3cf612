"""`lijst` (issue 18, item 6): urgent signals nobody has taken come first, an AF of several gemeenten sees which
gemeente each signal belongs to, and every call is in the audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meldbot.core.clock import ManualClock
from meldbot.core.config import load_config
from meldbot.core.domain import Context, Form
from meldbot.core.messaging import Identity
from meldbot.core.ports import UnitOfWorkFactory
from meldbot.service.services import SubmitSignal, submit_signal
from meldbot.service.desk import console_operator
from tests.service.office import NAMED, OTHER, PLATFORMS, Office
from tests.support import EXAMPLE
from tests.support.configs import eersel

EERSEL = eersel("af")


def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("- ")]


async def test_urgent_signals_nobody_took_come_first(office: Office, clock: ManualClock) -> None:
    await office.submit("piet")
    await office.submit("klaas", OTHER)
    await office.submit("kees", urgent=True)
    await office.submit("joost", urgent=True)
    await office.af("af", "oppakken 4")                                  # taken: no longer first
    lines = _lines(await office.af("af", "lijst"))
    assert [line.split()[1] for line in lines] == ["MH-2026-0003", "MH-2026-0001", "MH-2026-0002", "MH-2026-0004"]
    assert "SPOED" in lines[0]


async def test_lijst_is_in_the_audit_trail_of_every_signal_it_shows(office: Office) -> None:
    await office.submit("piet")
    await office.submit("klaas", OTHER)
    await office.af("af", "sluiten 2 geen-mensenhandel")
    await office.af("af", "lijst")
    assert (await office.actions(1))[-1] == "lijst-bekeken"
    assert "lijst-bekeken" not in await office.actions(2)                 # closed: not in the list
    entry = (await office.audit(1))[-1]
    assert entry.actor_kind == "af" and entry.actor == f"anna (console:{console_operator()})"


@pytest.fixture
def two_gemeenten(tmp_path: Path) -> Any:
    path = tmp_path / "twee-gemeenten.toml"
    path.write_text(EXAMPLE.read_text(encoding="utf-8") + EERSEL, encoding="utf-8")
    return load_config(path, {"MELDBOT_STORAGE__URL": "sqlite+aiosqlite:///unused.db"})


async def test_an_af_of_several_gemeenten_sees_the_gemeente_of_each_signal(
        storage: UnitOfWorkFactory, two_gemeenten: Any, clock: ManualClock) -> None:
    office = Office(storage, two_gemeenten, clock)
    await office.submit("piet")                                           # Bergeijk
    cmd = SubmitSignal(meldpunt_id="eersel", melder=Identity("console", "els"), melder_name="Els", content=NAMED,
                       form=Form.LABOUR, context=Context.DESK, urgent=False, anonymous=False)
    async with storage() as uow:
        await submit_signal(cmd, uow, two_gemeenten, clock, PLATFORMS)
        await uow.commit()
    lines = _lines(await office.af("af", "lijst"))
    assert len(lines) == 2
    assert "Gemeente Bergeijk" in lines[0] and "MH-2026-0001" in lines[0]
    assert "Gemeente Eersel" in lines[1] and "MH-2026-0002" in lines[1]


async def test_an_af_of_one_gemeente_is_not_told_the_gemeente(office: Office) -> None:
    await office.submit("piet")
    assert "Gemeente Bergeijk" not in await office.af("af", "lijst")
