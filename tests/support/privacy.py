"""A small history for the storage tests of data protection: three signals (an address and an organisation,
the same address written differently by an anonymous melder, the same organisation elsewhere), an addition,
an unsent draft and a language setting, all from one melder."""

from __future__ import annotations

from meldbot.core.messaging import Identity, IncomingMessage
from meldbot.run.app import build_app
from tests.support import FakeNotifier, make_config
from tests.support.chat import migrated

MELDER = "zwaantje.brouwersgracht"
MELDER_NAME = "Zwaantje Brouwersgracht"
SCRIPTS = [
    [  # signal 1: an address and an organisation
        "melden", "Negen matrassen op zolder bij Mosselkreek Uitzendbureau B.V.", "Kwikstaartlaan 77-b, 5571 AB Bergeijk",
        "gisteravond", "Fenneke Oudewater en een man in een bestelbus", "arbeid", "toezicht", "nee", "versturen",
    ],
    [  # signal 2: the same address written differently, anonymous melder
        "melden", "Weer veel mensen in en uit", "kwikstaartlaan 77 B", "vandaag", "onbekend", "2", "huisbezoek",
        "ja", "versturen",
    ],
    [  # signal 3: the same organisation, another address
        "melden", "Uitzendkracht van Mosselkreek Uitzendbureau BV zonder paspoort", "Pruimelaarsweg 3", "maandag",
        "onbekend", "5", "balie", "nee", "versturen",
    ],
]


def say(text: str) -> IncomingMessage:
    return IncomingMessage(sender=Identity("console", MELDER), conversation_id=MELDER, text=text,
                           sender_name=MELDER_NAME)


async def seed(url: str, sealer, clock) -> FakeNotifier:
    await migrated(url)
    notifier = FakeNotifier()
    app = build_app(make_config(url), clock=clock, sealer=sealer, notifiers={"console": notifier}, mode="chat")
    async with app:
        for script in SCRIPTS:
            for line in script:
                await app.bot.handle(say(line))
        await app.bot.handle(say("aanvullen 1 aanvulling-over-de-bestelbus"))
        await app.bot.handle(say("melden"))
        await app.bot.handle(say("Een concept over de Pruimelaarsweg dat nog niet verstuurd is"))
        await app.bot.handle(say("taal en"))
        await app.dispatcher.deliver_pending()
    return notifier
