"""Configuration files for the reload tests (tests/run/test_reload.py, tests/integration/test_replicas_reload.py):
the example configuration on a test's database, with the AF bram (in the example) left out or the AF carl
added, as an administrator edits the file."""

from __future__ import annotations

from tests.support import EXAMPLE

BRAM = '''  [[meldpunt.af]]
  name = "bram"
  display_name = "Bram Jansen"
  matrix = ""
  teams = ""
  console = "af2"
  backup = true
'''
CARL = BRAM.replace('"bram"', '"carl"').replace("Bram Jansen", "Carl Smit").replace('"af2"', '"af3"').replace(
    "backup = true", "backup = false")


def config_text(url: str, *, bram: bool = True, carl: bool = False, bram_teams: str = "") -> str:
    """The example configuration on the database `url`, with or without the AFs bram and carl; bram's Teams
    id is `bram_teams`."""
    text = EXAMPLE.read_text(encoding="utf-8").replace('url = "sqlite+aiosqlite:///var/meldbot.db"', f'url = "{url}"')
    assert BRAM in text and f'url = "{url}"' in text
    bram_block = BRAM.replace('teams = ""', f'teams = "{bram_teams}"')
    return text.replace(BRAM, (bram_block if bram else "") + (CARL if carl else ""))


def gemeente(id_: str, name: str, domain: str, af_console: str, *, af_name: str, af_display: str) -> str:
    """A gemeente to append to the example configuration, with one AF on the console under `af_console`."""
    return f'''
[[meldpunt]]
id = "{id_}"
name = "{name}"
matrix_domains = ["{domain}"]

  [[meldpunt.af]]
  name = "{af_name}"
  display_name = "{af_display}"
  console = "{af_console}"
'''


def eersel(af_console: str) -> str:
    """A second gemeente to append to the example configuration: Eersel, with Anna as its AF on the console
    under `af_console` (the same user as Bergeijk's AF makes her an AF of two gemeenten)."""
    return gemeente("eersel", "Gemeente Eersel", "eersel.nl", af_console, af_name="anna", af_display="Anna de Vries")
