"""Writes the understanding sets (one TSV per question): realistic messages with what they mean.

Run once by hand after changing the lists below (`python tests/data/understanding/make_sets.py`); the tests read
the TSV files, never this script. Columns: message, expected. Expected is the contract message the text means
(`arbeid`, `ja`, `versturen`, `wijzig waar`, `melden`, a gemeente's number), `?word` where a "Bedoel je word?"
is the right answer (a typo), or `-`: not understood, the question is asked again. A `-` line must never get a
meaning: that is the "must not guess" part of each set. Typos are made here by rule (a letter swapped,
dropped, doubled or a neighbour on the keyboard), the rest is written by hand.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
NEIGHBOURS = {"a": "s", "e": "r", "i": "o", "o": "i", "u": "y", "r": "t", "s": "a", "t": "r", "n": "m", "l": "k",
              "d": "f", "g": "h", "b": "v", "k": "l", "m": "n", "p": "o", "v": "b", "w": "e", "c": "x", "j": "h"}


def typos(word: str) -> list[str]:
    """Four typos of `word`, one of each kind, in the middle of the word (where people make them)."""
    m = len(word) // 2
    out = [word[:m - 1] + word[m] + word[m - 1] + word[m + 1:],     # swapped
           word[:m] + word[m + 1:],                                 # dropped
           word[:m] + word[m] + word[m:],                           # doubled
           word[:m] + NEIGHBOURS.get(word[m], "e") + word[m + 1:]]  # neighbour key
    return [t for t in dict.fromkeys(out) if t != word]


def write(name: str, rows: list[tuple[str, str]]) -> None:
    seen: dict[str, str] = {}
    for text, expected in rows:
        assert "\t" not in text and seen.get(text, expected) == expected, text
        seen[text] = expected
    lines = ["message\texpected"] + [f"{t}\t{e}" for t, e in seen.items()]
    (HERE / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(name, len(seen))


def labelled(expected: str, *texts: str) -> list[tuple[str, str]]:
    return [(t, expected) for t in texts]


# --- soort -------------------------------------------------------------------------------------------------------
soort: list[tuple[str, str]] = []
soort += labelled("seksueel", "1", "seksueel", "Seksueel", "seksuele uitbuiting", "Seksuele uitbuiting",
                  "1 seksueel", "1. seksuele uitbuiting", "seksueel (seksuele uitbuiting)", "prostitutie",
                  "gedwongen prostitutie", "ik denk seksueel", "seksuele uitbuiting denk ik", "volgens mij seksueel",
                  "seks", "loverboy", "het gaat om prostitutie", "waarschijnlijk seksuele uitbuiting",
                  "Seksuele uitbuiting.", "seksueel!", "optie 1", "nummer 1", "1 graag", "sexual exploitation",
                  "sexual", "SEKSUELE UITBUITING", "seksuele uitbuiting, er kwamen steeds andere mannen",
                  "illegale prostitutie", "seksueel denk ik", "ik gok seksueel", "sekswerk")
soort += labelled("arbeid", "2", "arbeid", "Arbeid", "arbeidsuitbuiting", "Arbeidsuitbuiting", "2 arbeid",
                  "2. arbeidsuitbuiting", "arbeid (arbeidsuitbuiting)", "arbeids uitbuiting", "ik denk arbeid",
                  "arbeidsuitbuiting denk ik", "volgens mij arbeidsuitbuiting", "uitbuiting op het werk",
                  "werk", "dwangarbeid", "gedwongen arbeid", "labour exploitation", "labour", "labor",
                  "het is arbeidsuitbuiting", "arbeidsuitbuiting, ze werkten 14 uur per dag",
                  "arbeid, ze sliepen in de kas", "waarschijnlijk arbeid", "Arbeidsuitbuiting!", "optie 2",
                  "nummer 2", "2 denk ik", "ik gok arbeid", "misschien arbeidsuitbuiting",
                  "forced labour", "arbeid graag", "uitbuiting in het werk")
soort += labelled("crimineel", "3", "crimineel", "Crimineel", "criminele uitbuiting", "3 crimineel",
                  "3. criminele uitbuiting", "crimineel (criminele uitbuiting)", "drugs", "drugskoerier",
                  "ik denk crimineel", "criminele uitbuiting denk ik", "gedwongen criminaliteit", "geldezels",
                  "criminal exploitation", "criminal", "optie 3", "volgens mij crimineel",
                  "crimineel, ze moesten drugs verkopen", "winkeldiefstal")
soort += labelled("orgaan", "4", "orgaan", "Orgaan", "gedwongen orgaanverwijdering", "4 orgaan",
                  "4. gedwongen orgaanverwijdering", "orgaanverwijdering", "organen", "orgaanhandel",
                  "organ removal", "forced organ removal", "optie 4", "ik denk orgaan", "nier afstaan")
soort += labelled("onbekend", "5", "onbekend", "Onbekend", "weet ik niet", "Weet ik niet", "5 onbekend",
                  "5. weet ik niet", "onbekend (weet ik niet)", "geen idee", "ik weet het niet", "weet niet",
                  "weet ik nog niet", "geen flauw idee", "onduidelijk", "niet zeker", "ik twijfel",
                  "lastig te zeggen", "don't know", "dont know", "unknown", "no idea", "not sure",
                  "ik weet het niet zeker", "Geen idee eigenlijk", "optie 5", "moeilijk te zeggen", "idk",
                  "weet ik eigenlijk niet", "kan ik niet zeggen")
for word, expected in (("seksueel", "seksueel"), ("arbeid", "arbeid"), ("crimineel", "crimineel"),
                       ("orgaan", "orgaan"), ("onbekend", "onbekend"), ("arbeidsuitbuiting", "arbeid"),
                       ("prostitutie", "seksueel"), ("orgaanverwijdering", "orgaan")):
    soort += labelled(f"?{expected}", *typos(word))
soort += labelled("?arbeid", "arbied", "arbei", "arbeit", "ik denk arbied", "arbeidsuitbuitng")
soort += labelled("?seksueel", "sexueel", "seksueeel", "seksuel", "sekseel")
soort += labelled("?crimineel", "crimneel", "crimineeel", "criemineel", "krimineel")
# Must not guess: two forms, negations, out of range, words that are no form.
soort += labelled("-", "6", "0", "12", "seksueel of arbeid", "arbeid en seksueel", "geen arbeid", "niet seksueel",
                  "niet crimineel maar iets anders", "1 of 2", "2 of 3", "ja", "nee", "ok", "misschien", "zo",
                  "er waren 2 mannen", "de buurman", "kapsalon", "een vaag gevoel", "na", "sex of werk",
                  "arbeid of crimineel", "ik wil stoppen", "huisbezoek", "balie", "?", "...", "help me",
                  "wat betekent dat", "soort", "uitbuiting", "allebei", "alle drie", "beide", "anders",
                  "geen van allen", "seksueel en crimineel", "zwartwerk", "zwart werk")
write("soort", soort)

# --- context -----------------------------------------------------------------------------------------------------
context: list[tuple[str, str]] = []
context += labelled("balie", "1", "balie", "Balie", "aan de balie", "Aan de balie", "bij de balie", "1 balie",
                    "1. aan de balie", "balie (aan de balie)", "loket", "aan het loket", "receptie",
                    "bij de receptie", "publieksbalie", "burgerzaken", "aan de balie bij burgerzaken",
                    "ik zat aan de balie", "optie 1", "at the front desk", "desk", "spreekuur", "aan de balie!")
context += labelled("huisbezoek", "2", "huisbezoek", "Huisbezoek", "bij een huisbezoek", "2 huisbezoek",
                    "2. bij een huisbezoek", "huisbezoek (bij een huisbezoek)", "op huisbezoek",
                    "tijdens een huisbezoek", "bij iemand thuis", "bij mensen thuis", "keukentafelgesprek",
                    "on a home visit", "home visit", "optie 2", "huisbezoek, voor de wmo", "een huisbezoek",
                    "huisbezoekje")
context += labelled("toezicht", "3", "toezicht", "Toezicht", "controle", "bij controle of toezicht",
                    "3 toezicht", "3. bij controle of toezicht", "bij een controle", "tijdens een controle",
                    "inspectie", "bij een inspectie", "handhaving", "bij handhaving", "adrescontrole",
                    "during an inspection", "inspection", "optie 3", "controle of toezicht",
                    "controle door handhaving", "toezicht (bij controle of toezicht)", "boa")
context += labelled("vergunning", "4", "vergunning", "Vergunning", "aanvraag", "bij een vergunning of aanvraag",
                    "4 vergunning", "4. bij een vergunning of aanvraag", "vergunningaanvraag",
                    "bij een aanvraag", "een aanvraag", "exploitatievergunning", "bibob", "permit", "application",
                    "with a permit or application", "optie 4", "vergunning of aanvraag", "bij een vergunning",
                    "inschrijving")
context += labelled("anders", "5", "anders", "Anders", "5 anders", "5. anders", "iets anders", "overig",
                    "ergens anders", "geen van deze", "other", "something else", "optie 5", "overige")
for word, expected in (("balie", "balie"), ("huisbezoek", "huisbezoek"), ("toezicht", "toezicht"),
                       ("vergunning", "vergunning"), ("anders", "anders"), ("controle", "toezicht"),
                       ("inspectie", "toezicht"), ("aanvraag", "vergunning")):
    context += labelled(f"?{expected}", *typos(word))
context += labelled("?huisbezoek", "huisbzoek", "huis bezoek", "huisbezeok")
context += labelled("?vergunning", "vergunnig", "vergunnnig")
context += labelled("-", "6", "0", "9", "balie of huisbezoek", "huisbezoek en controle", "niet aan de balie",
                    "geen huisbezoek", "1 of 2", "kantoor", "op straat", "in de supermarkt", "ja", "nee", "ok",
                    "weet ik niet", "telefoon", "via de mail", "een melding van een buurman", "werk", "thuis",
                    "bij de gemeente", "?", "na", "toen ik boodschappen deed", "arbeid", "seksueel", "misschien",
                    "allebei", "beide", "help me")
write("context", context)

# --- anoniem: "Wil je anoniem blijven voor de AF?" 1 nee (the AF sees your name), 2 ja (a pseudonym) ---------------
anoniem: list[tuple[str, str]] = []
anoniem += labelled("ja", "2", "ja", "Ja", "JA", "ja.", "2.", "2 ja", "yes", "ja graag", "Ja graag",
                    "ja graag, ik wil anoniem blijven", "ja, ik wil anoniem blijven", "ja hoor", "jazeker",
                    "ja zeker", "zeker", "graag", "prima", "ok", "oké", "okay", "akkoord", "jawel", "jaaa",
                    "anoniem", "anoniem graag", "graag anoniem", "liever anoniem", "ik wil anoniem blijven",
                    "anoniem blijven", "ik wil graag anoniem blijven", "ja, de AF ziet alleen een schuilnaam",
                    "ja (ja, de AF ziet alleen een schuilnaam)", "schuilnaam", "met een schuilnaam",
                    "alleen een schuilnaam", "zonder mijn naam", "mijn naam liever niet", "liever geen naam",
                    "niet met mijn naam", "mijn naam niet noemen", "yes please", "stay anonymous", "anonymous",
                    "yes, anonymous", "ja, anoniem", "Ja, graag anoniem.", "ja graag, want ik ken de familie",
                    "liever wel", "liefst wel", "ja please", "natuurlijk", "uiteraard", "Jazeker!", "ja!",
                    "ja anoniem graag", "wel anoniem", "ja dank je", "ja, liever anoniem", "sure", "yep",
                    "graag zelfs", "ja, zonder naam")
anoniem += labelled("nee", "1", "nee", "Nee", "NEE", "nee.", "1.", "1 nee", "no", "nee hoor", "Nee hoor",
                    "nee dank je", "nee dank u", "nee bedankt", "nee dankjewel", "hoeft niet",
                    "niet nodig", "is niet nodig", "nee, hoeft niet", "niet anoniem", "ik wil niet anoniem blijven",
                    "ik hoef niet anoniem te blijven", "ik wil liever niet anoniem blijven", "liever niet anoniem",
                    "anoniem hoeft niet", "mijn naam mag erbij", "mijn naam mag", "naam mag erbij",
                    "de AF mag mijn naam zien", "nee, de AF mag mijn naam zien",
                    "nee (nee, de AF mag mijn naam zien)", "met mijn naam", "met naam", "mijn naam is prima",
                    "not anonymous", "no thanks", "nope", "neen", "nee, niet nodig",
                    "welnee", "nee hoor, mijn naam mag erbij", "Nee!", "neee", "nee, niet anoniem", "niet per se",
                    "nee hoor, hoeft niet", "no need", "my name is fine", "nee dankje", "mijn naam erbij",
                    "ok, maar mijn naam mag erbij", "nee, is goed", "nee hoor, prima")
anoniem += labelled("?ja", "anonim", "anonieme", "anoiem", "schuilnam", "anoniiem")
anoniem += labelled("?nee", "neej" )
# Must not guess: contradictions, questions, doubt, and short words one letter from ja and nee.
anoniem += labelled("-", "3", "0", "12", "misschien", "weet ik niet", "geen idee", "maakt niet uit",
                    "maakt me niet uit", "nee, ik wil anoniem blijven", "ja, mijn naam mag erbij",
                    "ja of nee", "ja nee", "nee ja", "wat betekent anoniem?", "wat is een schuilnaam",
                    "wie is de AF?", "hangt ervan af", "twijfel", "ik weet het niet", "na", "ha", "jo", "ne",
                    "nu", "ka", "neh?", "dat weet ik nog niet", "mag ik dat later zeggen", "geen voorkeur",
                    "wat raad je aan", "ja maar alleen als het moet", "liever niet anoniem, of toch wel",
                    "niet", "anoniem of niet", "ja, niet anoniem", "nee, anoniem", "help", "?", "arbeid",
                    "balie", "de buurman", "whatever", "nee graag anoniem",
                    # Were `nee` until the review of issue 19: "liever niet" may be "rather not be named", and a
                    # wrong `nee` shows the name to the AF; these are asked again ("Wil je anoniem blijven?").
                    "liever niet", "geen probleem")
write("anoniem", anoniem)

# --- the summary: "Klopt dit? Typ versturen." -----------------------------------------------------------------
summary: list[tuple[str, str]] = []
summary += labelled("versturen", "versturen", "Versturen", "/versturen", "send", "verstuur", "Verstuur",
                    "verstuur maar", "Verstuur maar!", "versturen maar", "versturen graag", "ok", "Ok", "oké",
                    "okay", "OK!", "klopt", "Klopt", "klopt!", "het klopt", "dat klopt", "alles klopt",
                    "klopt allemaal", "ja", "Ja", "ja klopt", "ja, klopt", "ja klopt, verstuur maar",
                    "ja, versturen", "ja verstuur maar", "ja graag", "ja hoor", "jazeker", "prima", "prima, verstuur",
                    "akkoord", "is goed", "goed", "top", "perfect", "correct", "helemaal goed", "ziet er goed uit",
                    "stuur maar", "stuur maar op", "stuur op", "opsturen", "verzenden", "verzend", "indienen",
                    "send it", "submit", "yes", "ok verstuur", "klopt, verstuur maar", "alles klopt, versturen",
                    "ja dat klopt", "Ja, alles klopt.", "klopt helemaal", "super", "mooi, verstuur maar",
                    "verstuur hem maar", "ja, stuur maar", "Oké, versturen.", "akkoord, verstuur",
                    "versturen alsjeblieft", "ja klopt helemaal", "prima zo", "klopt zo", "dat is goed",
                    "is juist")
summary += labelled("wijzig", "wijzig", "Wijzig", "edit", "nee", "Nee", "klopt niet", "het klopt niet",
                    "dat klopt niet", "niet helemaal", "klopt niet helemaal", "wijzigen", "veranderen",
                    "aanpassen", "iets wijzigen", "ik wil iets veranderen", "ik wil iets wijzigen",
                    "ik wil iets aanpassen", "niet goed", "fout", "er klopt iets niet", "nee, klopt niet",
                    "change", "no", "nee, niet helemaal", "verbeteren")
summary += labelled("wijzig waar", "wijzig waar", "Wijzig waar", "edit where", "wijzig 2", "verander waar",
                    "waar veranderen", "waar aanpassen", "pas waar aan", "wijzigen waar")
summary += labelled("wijzig wanneer", "wijzig wanneer", "verander wanneer", "wanneer aanpassen",
                    "wanneer wijzigen", "wijzig 3")
summary += labelled("wijzig soort", "wijzig soort", "verander soort", "soort aanpassen", "edit form")
summary += labelled("wijzig anoniem", "wijzig anoniem", "verander anoniem", "anoniem aanpassen")
summary += labelled("stop", "stop", "Stop", "annuleren", "cancel", "/stop")
summary += labelled("?stop", "annuleer", "stoppen", "afbreken", "niet versturen", "niet sturen", "toch niet",
                    "laat maar", "laat maar zitten", "verwijderen", "wissen", "toch niet versturen",
                    "don't send", "anuleren", "annulerne", "stpo")
summary += labelled("terug", "terug", "back", "Terug")
summary += labelled("spoed", "spoed", "urgent")
summary += labelled("?versturen", *typos("versturen"), "verstuuren", "versturn", "vesturen", "verstruen",
                    "versturren", "verstur", *typos("verstuur"), "klpt", "kolpt")
summary += labelled("?wijzig", "wijzg", "wijizg", "wiijzig", "wzijig")
summary += labelled("?terug", "terg", "teurg", "truug")
# Must not send: a negation, a question, doubt, something that is not a yes.
summary += labelled("-", "ok dan", "misschien", "weet ik niet", "wacht even", "nog niet", "niet", "nog niet versturen",
                    "klopt, maar de straat is fout", "ja maar het adres klopt niet", "ja, maar", "hmm",
                    "is dit anoniem?", "wat gebeurt er nu?", "wie leest dit?", "kan ik later nog iets toevoegen?",
                    "moment", "eh", "bedankt", "dank je", "graag", "de buurman", "Kerkstraat 3", "?", "na", "ja nee",
                    "ja of nee", "niet verzenden maar bewaren", "klopt bijna", "ik weet het niet zeker",
                    "versturen of niet?", "bijna", "nee versturen", "verstuur niet", "stuur nog niet",
                    "helemaal niet goed, maar verstuur toch", "twijfel", "later", "arbeid", "2", "balie",
                    "ok ok wacht", "ja het was een man met een busje")
write("summary", summary)

# --- outside a report (idle): openers, other commands in other words, greetings ----------------------------------
idle: list[tuple[str, str]] = []
idle += labelled("melden", "melden", "Melden", "/melden", "report", "ik wil iets melden", "Ik wil iets melden",
                 "ik wil een melding doen", "ik wil een melding maken", "ik heb een signaal", "ik heb een signaal.",
                 "Ik heb een signaal van mensenhandel", "ik wil een signaal doorgeven", "melding", "een melding",
                 "nieuwe melding", "melding maken", "melding doen", "signaal", "signaal doorgeven",
                 "ik wil mensenhandel melden", "mensenhandel melden", "kan ik hier iets melden?",
                 "hoe kan ik iets melden?", "waar kan ik iets melden", "ik wil graag iets melden",
                 "Hallo, ik wil iets melden", "hoi, ik heb een signaal", "goedemorgen, ik wil een melding doen",
                 "ik heb iets gezien", "ik wil iets doorgeven", "ik heb een vermoeden van uitbuiting, ik wil het melden",
                 "ik wil een vermoeden melden", "meld", "melding mensenhandel", "ik zou graag een melding willen doen",
                 "ik wilde iets melden", "I want to report something", "new report", "make a report",
                 "start", "beginnen", "ik wil beginnen", "signaleren", "ik heb een signaal over een bedrijf",
                 "ik wil iets melden over een kapsalon", "melden graag", "Melden!", "ik wil een melding",
                 "ik heb een melding", "ik wil een signaal melden", "graag een melding maken",
                 "melding doen van mensenhandel", "ik heb iets verdachts gezien en wil het melden",
                 "mag ik iets melden?", "ik moet iets melden", "even iets melden", "nieuwe melding maken")
idle += labelled("melden", *typos("melden"), "meldne", "mleden", "meldn", "meldenn", "melen",
                 "meldin", "meldig", "sigmaal")
idle += labelled("spoed", "spoed", "Spoed!", "urgent", "het is dringend", "dringend", "noodgeval",
                 "er is nu gevaar", "spoedmelding", "ik wil met spoed iets melden", "spoed melding", "acuut",
                 "gevaar", "spoed, er is iemand in gevaar", "emergency")
idle += labelled("help", "help", "Help", "help me", "hulp", "wat kan je", "wat kun je doen", "uitleg", "menu",
                 "wat kan jij", "opties", "wat moet ik typen", "what can you do", "help mij")
idle += labelled("contact", "contact", "Contact", "nummers", "telefoonnummer", "wie kan ik bellen",
                 "wie moet ik bellen", "nummer van de politie", "avim", "bellen", "politie bellen")
idle += labelled("signalen", "signalen", "Signalen", "signs", "hoe herken ik mensenhandel", "kenmerken",
                 "indicatoren", "signalen herkennen", "waar moet ik op letten")
idle += labelled("hallo", "hoi", "Hoi", "hallo", "Hallo!", "hey", "hi", "hello", "goedemorgen", "Goedemiddag",
                 "goedenavond", "hoi hoi", "beste", "goedemorgen, hoe werkt dit?", "hallo, wat is dit?",
                 "hoi, wie ben jij?", "hallo daar", "")
idle += labelled("?mijn meldingen", "mijn melding", "status van mijn melding", "wat is er met mijn melding gebeurd",
                 "hoe staat het met mijn melding?", "mijn meldngen", "mijn meldigen", "ik heb al iets gemeld",
                 "vorige melding", "mijn eerdere melding")
idle += labelled("?help", "hlep", "hepl", "helpp")
idle += labelled("?contact", "contcat", "kontakt", "contackt", "conatct")
idle += labelled("?signalen", "signalne", "sigalen", "signallen")
idle += labelled("?spoed", "spoedd", "speod", "spoet")
idle += labelled("-", "xyz", "ja", "nee", "ok", "bedankt", "dank je wel", "toen ik daar was zag ik veel mensen",
                 "ik wil niets melden", "ik wil geen melding doen", "geen melding", "niet melden", "nog iets",
                 "Kerkstraat 3", "de buurman", "wat is mensenhandel?", "wie ben jij", "arbeid", "2", "1",
                 "is dit anoniem?", "test", "testbericht", "mensenhandel", "uitbuiting", "?", "...", "na", "md",
                 "mel", "sorry", "verkeerd", "laat maar", "doei", "tot ziens", "een vaag gevoel bij de kapsalon",
                 "de baas houdt de paspoorten in", "ze werken 14 uur per dag", "help ik weet het niet",
                 "ik twijfel of dit mensenhandel is", "mag dit", "werkt dit?", "hoe laat is het",
                 "ik zoek de afdeling burgerzaken", "ik wil mijn adres wijzigen", "ik heb een vraag over mijn uitkering",
                 "👍", "🙂", "ik ben het", "wachtwoord vergeten")
write("idle", idle)

# --- the gemeente question (several meldpunten): 1 Gemeente Bergeijk, 2 Gemeente Eersel, 3 Gemeente Valkenswaard -
NAMES = ("Gemeente Bergeijk", "Gemeente Eersel", "Gemeente Valkenswaard")
gemeente: list[tuple[str, str]] = []
for number, place in ((1, "Bergeijk"), (2, "Eersel"), (3, "Valkenswaard")):
    n = str(number)
    gemeente += labelled(n, n, f" {n} ", place, place.lower(), place.upper(), f"gemeente {place}",
                         f"Gemeente {place}", f"ik werk bij {place}", f"ik werk bij de gemeente {place}",
                         f"bij {place}", f"{place} graag", f"{n} {place}", f"{n}. {place}", f"{n}. gemeente {place}",
                         f"nummer {n}", f"optie {n}", f"{place}!", f"{place}.", f"voor {place}", f"in {place}",
                         f"gem. {place}", f"ik zit in {place}", f"{n} graag", f"{n}.", f"gemeente {place.lower()}",
                         f"ik werk voor de gemeente {place}", f"de gemeente {place}", f"{place} is mijn gemeente",
                         f"ik werk in {place}", f"{place} (gemeente)", f"ik ben van {place}",
                         f"municipality of {place}", f"{place} denk ik", f"{n} - {place}",
                         f"gewoon {place}", f"{place} natuurlijk", f"{place} alsjeblieft")
    gemeente += labelled(f"?{n}", *typos(place.lower()))
gemeente += labelled("?1", "bergijk", "berg eijk", "bergeik", "bergeyk")
gemeente += labelled("?2", "eersl", "eerssel", "ersel")
gemeente += labelled("?3", "valkenswaart", "valkenswad", "valkesnwaard", "valkenwaard")
gemeente += labelled("-", "4", "0", "12", "1 of 2", "Bergeijk of Eersel", "Eersel en Valkenswaard",
                     "niet Eersel", "geen van deze", "Eindhoven", "Veldhoven", "weet ik niet", "ja", "nee",
                     "melden", "help", "?", "de buurman", "gemeente", "ik werk bij de provincie",
                     "ik werk niet bij een gemeente", "allebei", "Best", "Waalre", "2 en 3", "na", "ok",
                     "ik wil iets melden", "Bergeijk, maar ik woon in Eersel")
write("gemeente", gemeente)
