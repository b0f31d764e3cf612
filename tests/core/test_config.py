"""Tests for meldbot.core.config: the example file, environment overrides, validation errors and lookups."""

import re
from datetime import date, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from meldbot.core.config import Config, ConfigError, _shape, config_warnings, load_config
from meldbot.core.i18n import texts
from tests.support import EXAMPLE

LOCAL = """
[storage]
allow_plaintext = true
"""
MELDPUNT = """
[[meldpunt]]
id = "bergeijk"
name = "Gemeente Bergeijk"
"""
AF = """
  [[meldpunt.af]]
  name = "anna"
  console = "af"
"""
MINIMAL = LOCAL + MELDPUNT + AF


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **environ: str) -> Config:
    return load_config(write(tmp_path, text), environ=environ)


def problems(tmp_path: Path, text: str, **environ: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, **environ)
    return caught.value.problems


def keys(tmp_path: Path, text: str, **environ: str) -> list[str]:
    return [key for key, _ in problems(tmp_path, text, **environ)]


# --- the example file ---------------------------------------------------------------------------------------

def test_the_example_config_loads():
    config = load_config(EXAMPLE, environ={})
    bergeijk = config.meldpunt_by_id("bergeijk")
    assert config.language == "nl"
    assert config.storage.allow_plaintext and config.storage.url == "sqlite+aiosqlite:///var/meldbot.db"
    assert config.console.user == "medewerker"
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8080)
    assert [(af.name, af.console, af.backup) for af in bergeijk.af] == [("anna", "af", False), ("bram", "af2", True)]
    assert [p.key for p in bergeijk.partners] == [
        "politie", "zorgcoordinator", "nla", "kmar", "ind", "riec", "veiligthuis"]
    assert [c.number for c in bergeijk.contact] == ["112", "088-9630320", "0900-8844", "0800-5151", "040-2193388"]
    assert not config.matrix.enabled and not config.teams.enabled
    assert config.data_key is None


def _fields(model: type[BaseModel]):
    for name, info in model.model_fields.items():
        yield info.alias or name
        inner, _ = _shape(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            yield from _fields(inner)


def test_the_example_config_documents_every_key():
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = {name for name in _fields(Config) if name not in ("data_key", "data_key_previous")
               and not re.search(rf"^\s*#?\s*{name}\s*=|^\s*\[+(\w+\.)?{name}\]", text, re.MULTILINE)}
    assert missing == set()


def test_the_example_config_holds_no_secrets():
    config = load_config(EXAMPLE, environ={})
    secrets = [config.matrix.password, config.matrix.access_token, config.teams.app_password,
               config.teams.outbound_token]
    assert all(secret.get_secret_value() == "" for secret in secrets)


def test_the_default_partners_and_contacts_apply_when_the_file_has_none(tmp_path):
    meldpunt = load(tmp_path, MINIMAL).meldpunten[0]
    assert [p.key for p in meldpunt.partners] == [
        "politie", "zorgcoordinator", "nla", "kmar", "ind", "riec", "veiligthuis"]
    assert [(c.number, c.hours) for c in meldpunt.contact] == [
        ("112", ""), ("088-9630320", "ma-vr 08:00-16:30"), ("0900-8844", "")]


# --- the environment ---------------------------------------------------------------------------------------

def test_an_environment_variable_overrides_a_scalar(tmp_path):
    config = load(tmp_path, MINIMAL, MELDBOT_STORAGE__URL="postgresql+asyncpg://meldbot@db/meldbot",
                  MELDBOT_LANGUAGE="en", MELDBOT_REMINDERS__DRAFT_EXPIRY_HOURS="12")
    assert config.storage.url == "postgresql+asyncpg://meldbot@db/meldbot"
    assert config.language == "en"
    assert config.reminders.draft_expiry_hours == 12


def test_an_environment_variable_reaches_into_an_array_of_tables_by_index(tmp_path):
    text = MINIMAL + '  [[meldpunt.af]]\n  name = "bram"\n  console = "af2"\n'
    config = load(tmp_path, text, MELDBOT_MELDPUNT__0__AF__1__TEAMS="0000-aad-object-id")
    assert config.meldpunten[0].af_by_name("bram").teams == "0000-aad-object-id"
    assert config.meldpunten[0].af_by_name("anna").teams == ""


def test_an_environment_list_is_split_on_commas(tmp_path):
    config = load(tmp_path, MINIMAL, MELDBOT_TEAMS__ALLOWED_SERVICE_URLS="https://a.example/, https://b.example/",
                  MELDBOT_MELDPUNT__0__MATRIX_DOMAINS="bergeijk.nl,Eersel.nl")
    assert config.teams.allowed_service_urls == ("https://a.example/", "https://b.example/")
    assert config.meldpunten[0].matrix_domains == ("bergeijk.nl", "eersel.nl")


def test_an_environment_bool_false_turns_a_setting_off(tmp_path):
    config = load(tmp_path, MINIMAL, MELDBOT_STORAGE__ALLOW_PLAINTEXT="false", MELDBOT_DATA_KEY="a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=")
    assert config.storage.allow_plaintext is False
    assert config.data_key.get_secret_value() == "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s="
    assert "k" * 32 not in repr(config)


def test_an_environment_variable_may_set_a_per_meldpunt_reminder(tmp_path):
    config = load(tmp_path, MINIMAL, MELDBOT_MELDPUNT__0__REMINDERS__OFFICE_HOURS="09:00-16:00")
    assert config.reminders_for("bergeijk").office_hours == "09:00-16:00"


@pytest.mark.parametrize("name", ["MELDBOT_STORAGE__URI", "MELDBOT_MELDPUNT__3__NAME", "MELDBOT_STORAGE",
                                  "MELDBOT_LANGUAGE__NL", "MELDBOT_MELDPUNT__NAME", "MELDBOT_LOGLEVEL"])
def test_an_unknown_meldbot_variable_is_an_error_naming_it(tmp_path, name):
    assert keys(tmp_path, MINIMAL, **{name: "x"}) == [name]


def test_variables_that_are_not_config_keys_are_left_alone(tmp_path):
    load(tmp_path, MINIMAL, MELDBOT_TEST_POSTGRES_URL="x", MELDBOT_DATA_KEY="a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=", OTHER__THING="y")


def test_meldbot_config_picks_the_file(tmp_path):
    path = tmp_path / "elders.toml"
    path.write_text(MINIMAL.replace("Gemeente Bergeijk", "Elders"), encoding="utf-8")
    assert load_config(environ={"MELDBOT_CONFIG": str(path)}).meldpunten[0].name == "Elders"


def test_config_toml_in_the_working_directory_is_the_fallback(tmp_path, monkeypatch):
    write(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}).meldpunten[0].id == "bergeijk"


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "weg.toml", environ={})
    assert caught.value.problems[0][0].endswith("weg.toml")
    assert "niet gevonden" in str(caught.value)


def test_a_toml_syntax_error_gives_the_line(tmp_path):
    [(key, message)] = problems(tmp_path, 'language = "nl"\n[storage\n')
    assert key.endswith("config.toml") and "regel 2" in message


# --- broken configs ----------------------------------------------------------------------------------------

BROKEN = {
    "language": 'language = "fr"\n' + MINIMAL,
    "storage.url": MINIMAL.replace("[storage]", '[storage]\nurl = "mysql://db/meldbot"'),
    "storage.allow_plaintext": MELDPUNT + AF,
    "http.listen": MINIMAL + '[http]\nlisten = "8080"\n',
    "reminders.office_hours": MINIMAL + '[reminders]\noffice_hours = "17:00-08:30"\n',
    "reminders.weekly_overview": MINIMAL + '[reminders]\nweekly_overview = "9 uur"\n',
    "reminders.pick_up_after_working_days": MINIMAL + '[reminders]\npick_up_after_working_days = "een"\n',
    "reminders.urgent_repeat_hours": MINIMAL + "[reminders]\nurgent_repeat_hours = 0\n",
    "reminders.closing_days[1]": MINIMAL + '[reminders]\nclosing_days = ["05-05", "2026-02-30"]\n',
    "reminders.telefoon": MINIMAL + '[reminders]\ntelefoon = "x"\n',
    "meldpunt": LOCAL,
    "meldpunt[1].id": MINIMAL + MELDPUNT + AF,
    "meldpunt[0].id": MINIMAL.replace('"bergeijk"', '"Berg Eijk"'),
    "meldpunt[0].name": LOCAL + '[[meldpunt]]\nid = "bergeijk"\n' + AF,
    "meldpunt[0].timezone": MINIMAL.replace('name = "Gemeente Bergeijk"', 'name = "B"\ntimezone = "Europe/Bergeijk"'),
    "meldpunt[0].matrix_domains[0]": MINIMAL.replace('name = "Gemeente Bergeijk"',
                                                     'name = "B"\nmatrix_domains = ["https://bergeijk.nl"]'),
    "meldpunt[0].af": LOCAL + MELDPUNT + AF + "  backup = true\n",
    "meldpunt[0].af[0]": LOCAL + MELDPUNT + '  [[meldpunt.af]]\n  name = "anna"\n',
    "meldpunt[0].af[1].name": MINIMAL + AF,
    "meldpunt[0].af[0].name": LOCAL + MELDPUNT + '  [[meldpunt.af]]\n  name = "Anna de Vries"\n  console = "af"\n',
    "meldpunt[0].af[0].matrix": MINIMAL + '  matrix = "anna"\n',
    "meldpunt[0].af[0].backup": MINIMAL + '  backup = "ja"\n',
    "meldpunt[0].af[0].telefoon": MINIMAL + '  telefoon = "06"\n',
    "meldpunt[0].partner[1].aliases[0]": MINIMAL + (
        '  [[meldpunt.partner]]\n  key = "zorgcoordinator"\n  name = "Zorg"\n'
        '  [[meldpunt.partner]]\n  key = "lumens"\n  name = "Lumens"\n  aliases = ["Zorgcoördinator"]\n'),
    "meldpunt[0].partner[0].key": MINIMAL + '  [[meldpunt.partner]]\n  key = "team avim"\n  name = "AVIM"\n',
    "meldpunt[0].contact[0].hours": MINIMAL + (
        '  [[meldpunt.contact]]\n  label = "AVIM"\n  number = "088-9630320"\n  hours = "maandag 8-17"\n'),
    "meldpunt[0].contact[0].number": MINIMAL + '  [[meldpunt.contact]]\n  label = "Nood"\n  number = 112\n',
    "meldpunt[0].reminders.office_hours": MINIMAL + '  [meldpunt.reminders]\n  office_hours = "8-17"\n',
    "matrix.password": MINIMAL + '[matrix]\nenabled = true\nhomeserver = "https://m.example"\nuser_id = "@b:m.example"\n',
    "matrix.homeserver": MINIMAL + '[matrix]\nenabled = true\nuser_id = "@b:m.example"\naccess_token = "t"\n',
    "matrix.af_device_policy": MINIMAL + '[matrix]\naf_device_policy = "always"\n',
    "teams.app_id": MINIMAL + '[teams]\nenabled = true\napp_password = "p"\ntenant_id = "t"\n',
    "data_key": 'data_key = "geheim"\n' + MINIMAL,
}


@pytest.mark.parametrize("key", BROKEN)
def test_a_broken_config_names_the_exact_key(tmp_path, key):
    found = problems(tmp_path, BROKEN[key])
    assert key in [k for k, _ in found]
    for _, message in found:  # a specific Dutch message, not pydantic's English nor the catch-all
        assert message and message != "ongeldige waarde"
        assert not re.search(r"Input should|Value error|Field required", message)


def test_the_error_text_has_one_line_per_problem(tmp_path):
    text = 'language = "fr"\n' + MINIMAL + '[http]\nlisten = "nergens"\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert str(caught.value).splitlines() == [
        "language: moet een van deze waarden zijn: 'nl' of 'en'",
        "http.listen: 'nergens' klopt niet; schrijf host:poort, zoals 127.0.0.1:8080",
    ]


def test_a_table_where_an_array_of_tables_belongs_gets_a_hint(tmp_path):
    text = LOCAL + '[meldpunt]\nid = "bergeijk"\nname = "B"\n'
    assert problems(tmp_path, text) == [("meldpunt", "moet een lijst van tabellen zijn: schrijf [[meldpunt]]")]


def test_an_empty_list_of_meldpunten_is_refused(tmp_path):
    assert problems(tmp_path, "meldpunt = []\n" + LOCAL) == [("meldpunt", "minstens één [[meldpunt]] nodig")]


def test_a_secret_from_the_environment_completes_the_matrix_section(tmp_path):
    text = MINIMAL + '[matrix]\nenabled = true\nhomeserver = "https://m.example"\nuser_id = "@bot:m.example"\n'
    config = load(tmp_path, text, MELDBOT_MATRIX__PASSWORD="geheim", MELDBOT_DATA_KEY=KEY)
    assert config.matrix.password.get_secret_value() == "geheim"
    assert "geheim" not in repr(config)


def test_teams_without_credentials_is_fine_when_anonymous(tmp_path):
    assert load(tmp_path, MINIMAL + "[teams]\nenabled = true\nanonymous = true\n", MELDBOT_DATA_KEY=KEY).teams.enabled


KEY = "q8Ue0RDIK8Cw-E6CrQzGSJcCymfN8aa1Z9CCmIDxW3A="   # a valid data key, for tests only


@pytest.mark.parametrize("platform", ["matrix", "teams"])
def test_a_platform_with_plaintext_storage_is_refused_unless_overridden_for_tests(tmp_path, platform):
    text = MINIMAL + ('[matrix]\nenabled = true\nhomeserver = "https://m.example"\nuser_id = "@bot:m.example"\n'
                      'password = "x"\n' if platform == "matrix" else "[teams]\nenabled = true\nanonymous = true\n")
    [(key, message)] = problems(tmp_path, text)
    assert key == f"{platform}.enabled" and "MELDBOT_DATA_KEY" in message
    assert "allow_plaintext_with_platforms" in message
    assert getattr(load(tmp_path, text, MELDBOT_DATA_KEY=KEY), platform).enabled
    overridden = load(tmp_path, text, MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS="true")
    assert overridden.storage.allow_plaintext_with_platforms and getattr(overridden, platform).enabled


# --- reminders ---------------------------------------------------------------------------------------------

def test_closing_days_may_be_one_date_or_every_year(tmp_path):
    text = MINIMAL + '[reminders]\nclosing_days = ["2026-12-24", "05-05", 2026-12-31, "02-29"]\n'
    reminders = load(tmp_path, text).reminders
    assert reminders.is_closing_day(date(2026, 12, 24))
    assert not reminders.is_closing_day(date(2027, 12, 24))
    assert reminders.is_closing_day(date(2026, 5, 5)) and reminders.is_closing_day(date(2031, 5, 5))
    assert reminders.is_closing_day(date(2026, 12, 31))
    assert reminders.is_closing_day(date(2028, 2, 29))
    assert not reminders.is_closing_day(date(2026, 5, 6))


@pytest.mark.parametrize("day", ["2026-02-30", "02-30", "5-5", "2026/05/05", "13-01", "Bevrijdingsdag"])
def test_a_closing_day_in_another_form_is_refused(tmp_path, day):
    assert keys(tmp_path, MINIMAL + f'[reminders]\nclosing_days = ["{day}"]\n') == ["reminders.closing_days[0]"]


def test_a_meldpunt_overrides_only_the_reminder_keys_it_sets(tmp_path):
    text = (MINIMAL + '  [meldpunt.reminders]\n  office_hours = "09:00-16:00"\n'
            + "[reminders]\nurgent_repeat_hours = 2\n")
    config = load(tmp_path, text)
    merged = config.reminders_for("bergeijk")
    assert (merged.office_hours, merged.urgent_repeat_hours) == ("09:00-16:00", 2)
    assert merged.office_start.hour == 9 and merged.office_end.hour == 16
    assert config.reminders.office_hours == "08:30-17:00"


def test_contact_hours_say_when_a_number_is_staffed(tmp_path):
    avim = load(tmp_path, MINIMAL).meldpunten[0].contact[1]
    assert avim.is_open(datetime(2026, 11, 23, 9, 0))  # a Monday
    assert not avim.is_open(datetime(2026, 11, 23, 16, 30))
    assert not avim.is_open(datetime(2026, 11, 28, 9, 0))  # a Saturday
    assert not avim.is_open(datetime(2026, 12, 25, 9, 0))  # Christmas, a Friday
    assert load(tmp_path, MINIMAL).meldpunten[0].contact[0].is_open(datetime(2026, 12, 25, 9, 0))  # 112


# --- who belongs where -------------------------------------------------------------------------------------

TWO = LOCAL + """
[[meldpunt]]
id = "bergeijk"
name = "Gemeente Bergeijk"
matrix_domains = ["bergeijk.nl"]
teams_tenants = ["TENANT-B"]
  [[meldpunt.af]]
  name = "anna"
  matrix = "@anna:bergeijk.nl"
  console = "af"
[[meldpunt]]
id = "eersel"
name = "Gemeente Eersel"
matrix_domains = ["eersel.nl"]
teams_tenants = ["tenant-e"]
  [[meldpunt.af]]
  name = "anna"
  matrix = "@anna:bergeijk.nl"
  console = "af"
  [[meldpunt.af]]
  name = "erik"
  teams = "aad-erik"
  console = "erik"
"""


def test_with_one_meldpunt_everyone_belongs_to_it(tmp_path):
    config = load(tmp_path, MINIMAL)
    for platform, user in [("matrix", "@x:elders.nl"), ("teams", "aad-1"), ("console", "wie")]:
        assert [m.id for m in config.meldpunten_for(platform, user)] == ["bergeijk"]


def test_with_two_meldpunten_the_domain_tenant_or_af_role_decides(tmp_path):
    config = load(tmp_path, TWO)

    def ids(platform, user, tenant=None):
        return [m.id for m in config.meldpunten_for(platform, user, tenant)]

    assert ids("matrix", "@piet:eersel.nl") == ["eersel"]
    assert ids("matrix", "@piet:EERSEL.nl") == ["eersel"]
    assert ids("matrix", "@piet:elders.nl") == []
    assert ids("teams", "aad-piet", "tenant-b") == ["bergeijk"]
    assert ids("teams", "aad-piet", None) == []
    assert ids("teams", "aad-erik", "tenant-b") == ["bergeijk", "eersel"]  # an AF always belongs to its meldpunt
    assert ids("matrix", "@anna:bergeijk.nl") == ["bergeijk", "eersel"]
    assert ids("console", "af") == ["bergeijk", "eersel"]
    assert ids("console", "erik") == ["eersel"]
    assert ids("console", "medewerker") == ["bergeijk", "eersel"]


def test_af_for_compares_matrix_ids_exactly_and_teams_object_ids_in_any_case(tmp_path):
    config = load(tmp_path, TWO)
    assert [(m.id, af.name) for m, af in config.af_for("matrix", "@anna:bergeijk.nl")] == [
        ("bergeijk", "anna"), ("eersel", "anna")]
    # Another account on a server that allows capitals (the spec's ids are case-sensitive): no AF.
    assert config.af_for("matrix", "@ANNA:bergeijk.nl") == [] and config.af_for("matrix", "@Anna:bergeijk.nl") == []
    assert config.meldpunten_for("matrix", "@Anna:bergeijk.nl")[0].id == "bergeijk"   # staff by its server still
    # Entra object ids are GUIDs, written in either case by Teams and by administrators.
    assert [af.name for _, af in config.af_for("teams", "AAD-ERIK")] == ["erik"]
    assert config.af_for("teams", "aad-nobody") == []


def test_a_matrix_id_with_capitals_is_a_warning_naming_the_key_and_the_id_in_lowercase(tmp_path):
    config = load(tmp_path, MINIMAL + '  matrix = "@Anna:Bergeijk.nl"\n', MELDBOT_MATRIX__USER_ID="@MeldBot:bergeijk.nl")
    warnings = config_warnings(config)
    assert [w.key for w in warnings] == ["matrix.user_id", "meldpunt[0].af[0].matrix"]
    text = texts("nl")(warnings[1].text_key, **warnings[1].params)
    assert text.startswith('meldpunt[0].af[0].matrix = "@Anna:Bergeijk.nl"') and "hoofdletters" in text
    assert text.endswith("@anna:bergeijk.nl")
    assert "@meldbot:bergeijk.nl" in texts("en")(warnings[0].text_key, **warnings[0].params)
    # Allowed, only likely wrong: the configuration still loads, and lowercase ids give no warning.
    assert config_warnings(load(tmp_path, MINIMAL + '  matrix = "@anna:bergeijk.nl"\n')) == []


def test_a_partner_is_found_by_key_or_alias_ignoring_case_and_accents(tmp_path):
    meldpunt = load(tmp_path, MINIMAL).meldpunten[0]
    assert meldpunt.partner("Zorgcoördinator").key == "zorgcoordinator"
    assert meldpunt.partner("ZORGCOORDINATOR").key == "zorgcoordinator"
    assert meldpunt.partner(" AVIM ").key == "politie"
    assert meldpunt.partner("Marechaussée").key == "kmar"
    assert meldpunt.partner("brandweer") is None


def test_lookups_by_id_and_af_name(tmp_path):
    config = load(tmp_path, TWO)
    assert config.meldpunt_by_id("eersel").af_by_name("Erik").teams == "aad-erik"
    assert config.meldpunt_by_id("nergens") is None
    assert config.meldpunt_by_id("eersel").tz.key == "Europe/Amsterdam"


def test_teams_on_with_a_meldpunt_without_tenants_is_a_warning_naming_the_key(tmp_path):
    teams = "[teams]\nenabled = true\nanonymous = true\n"
    config = load(tmp_path, MINIMAL + teams, MELDBOT_DATA_KEY=KEY)
    [warning] = config_warnings(config)
    assert warning.key == "meldpunt[0].teams_tenants" and warning.blocking
    text = texts("nl")(warning.text_key, **warning.params)
    assert text.startswith("meldpunt[0].teams_tenants") and "Gemeente Bergeijk" in text
    assert "meldpunt[0].teams_tenants" in texts("en")(warning.text_key, **warning.params)
    with_tenant = MINIMAL.replace('name = "Gemeente Bergeijk"\n', 'name = "Gemeente Bergeijk"\nteams_tenants = ["t-1"]\n')
    assert config_warnings(load(tmp_path, with_tenant + teams, MELDBOT_DATA_KEY=KEY)) == []
    assert config_warnings(load(tmp_path, MINIMAL)) == []        # Teams off: no tenants needed


@pytest.mark.parametrize("listen, metrics", [
    ("0.0.0.0:9100", "127.0.0.1:9100"), ("127.0.0.1:9100", "0.0.0.0:9100"), ("[::]:9100", "10.0.0.5:9100"),
    ("192.168.1.2:9100", "[::]:9100"), ("0.0.0.0:9100", "[::]:9100"),
])
def test_metrics_listen_on_the_port_of_a_wildcard_listen_is_refused(tmp_path, listen, metrics):
    found = problems(tmp_path, MINIMAL, MELDBOT_HTTP__LISTEN=listen, MELDBOT_HTTP__METRICS_LISTEN=metrics)
    assert [key for key, _ in found] == ["http"]
    assert "metrics_listen" in found[0][1] and "9100" in found[0][1]


def test_metrics_listen_on_another_port_or_another_specific_host_is_fine(tmp_path):
    for listen, metrics in [("0.0.0.0:9100", "127.0.0.1:9108"), ("10.0.0.5:9100", "127.0.0.1:9100"),
                            ("0.0.0.0:0", "127.0.0.1:0")]:
        config = load(tmp_path, MINIMAL, MELDBOT_HTTP__LISTEN=listen, MELDBOT_HTTP__METRICS_LISTEN=metrics)
        assert config.http.metrics_listen == metrics
