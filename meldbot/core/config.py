"""Configuration: the TOML file's shape (shared/config.md), its validation, environment overrides and lookups."""

import functools
import os
import re
import tomllib
import types
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PositiveInt, SecretStr
from pydantic import StringConstraints, ValidationError, model_validator

from meldbot.core.calendar import public_holidays

Problem = tuple[str, str]  # (dotted key, Dutch message)
Located = list[tuple[tuple[str | int, ...], str]]  # problems keyed relative to the model that found them


class ConfigError(Exception):
    """The configuration cannot be used; `problems` names every wrong key with a Dutch message."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(f"{key}: {message}" for key, message in self.problems)


class _Problems(ValueError):
    """Raised by model validators: problems keyed relative to the model, so they can name sub-keys."""

    def __init__(self, problems: Located):
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


def _raise_if(problems: Located) -> None:
    if problems:
        raise _Problems(problems)


def _fold(text: str) -> str:
    """Case- and accent-insensitive form, so `Zorgcoördinator` matches `zorgcoordinator`."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _valid(parse: Callable[[str], object]) -> AfterValidator:
    """Keep the text as written once `parse` accepts it (parse raises ValueError with a Dutch message)."""

    def check(value: str) -> str:
        parse(value)
        return value

    return AfterValidator(check)


def _pattern(regex: str, message: str) -> AfterValidator:
    compiled = re.compile(regex)

    def parse(value: str) -> None:
        if not compiled.fullmatch(value):
            raise ValueError(message)

    return _valid(parse)


@functools.lru_cache(maxsize=256)   # office hours are read at every chat turn; the text never changes
def _clock(text: str) -> time:
    match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", text)
    if not match:
        raise ValueError(f"'{text}' is geen tijd; schrijf UU:MM, zoals 09:00")
    return time(int(match[1]), int(match[2]))


@functools.lru_cache(maxsize=256)
def _time_range(text: str) -> tuple[time, time]:
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"'{text}' is geen tijdvak; schrijf UU:MM-UU:MM, zoals 08:30-17:00")
    begin, until = _clock(start.strip()), _clock(end.strip())
    if begin >= until:
        raise ValueError(f"'{text}': de begintijd moet voor de eindtijd liggen")
    return begin, until


_DAYS = ("ma", "di", "wo", "do", "vr", "za", "zo")
_HOURS = re.compile(r"(?:(ma|di|wo|do|vr|za|zo)(?:-(ma|di|wo|do|vr|za|zo))?\s+)?(\S+)")


@functools.lru_cache(maxsize=256)   # read at every turn (which contact is open now); the text never changes
def _parse_hours(text: str) -> tuple[frozenset[int], time, time]:
    """'ma-vr 08:00-16:30' -> ({0..4}, 08:00, 16:30); a day range may wrap (za-ma)."""
    match = _HOURS.fullmatch(text.strip())
    if not match:
        raise ValueError(f"'{text}' klopt niet; laat leeg (altijd) of schrijf zoals 'ma-vr 08:00-16:30'")
    first, last, span = match.groups()
    start, end = _time_range(span)
    if first is None:
        return frozenset(range(7)), start, end
    a, b = _DAYS.index(first), _DAYS.index(last or first)
    return frozenset((a + k) % 7 for k in range((b - a) % 7 + 1)), start, end


def _closing_day(text: str) -> str:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            date.fromisoformat(text)
            return text
        if re.fullmatch(r"\d{2}-\d{2}", text):
            date.fromisoformat(f"2000-{text}")  # a leap year, so 02-29 is allowed
            return text
    except ValueError:
        raise ValueError(f"'{text}' is geen bestaande datum") from None
    raise ValueError(f"'{text}' klopt niet; schrijf JJJJ-MM-DD (één keer) of MM-DD (elk jaar), zoals 05-05")


def _timezone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"'{name}' is geen bekende tijdzone; gebruik bijvoorbeeld Europe/Amsterdam") from None


def _split_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")  # IPv6 literal: [::1]:8080
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"'{text}' klopt niet; schrijf host:poort, zoals 127.0.0.1:8080")
    return host, int(port)


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Clock = Annotated[str, _valid(_clock)]
ClosingDay = Annotated[
    str, BeforeValidator(lambda v: v.isoformat() if isinstance(v, date) else v), AfterValidator(_closing_day)
]
WebAddress = Annotated[str, StringConstraints(strip_whitespace=True), _pattern(
    r"(https://[^\s/?#]+\.[^\s/?#]+([/?#]\S*)?)?", "moet een https-adres zijn, zoals https://www.bergeijk.nl "
    "(of leeg)")]
MatrixId = _pattern(r"(@[^:\s]+:\S+)?", "moet een Matrix-id zijn, zoals @anna:bergeijk.nl")
Domain = Annotated[
    str,
    _pattern(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?", "moet een kale domeinnaam zijn, zoals bergeijk.nl "
             "(zonder https:// of @)"),
    AfterValidator(str.lower),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Model):
    url: Annotated[str, _pattern(r"(sqlite\+aiosqlite|postgresql\+asyncpg)://.*", "moet beginnen met "
                                 "sqlite+aiosqlite:// of postgresql+asyncpg://")] = "sqlite+aiosqlite:///var/meldbot.db"
    allow_plaintext: bool = False  # false: refuse to start without MELDBOT_DATA_KEY
    # Matrix or Teams with plaintext storage is refused unless this is true: for tests only.
    allow_plaintext_with_platforms: bool = False


class HttpConfig(_Model):
    listen: Annotated[str, _valid(_split_listen)] = "127.0.0.1:8080"  # port 0: any free port
    # Empty: /metrics on `listen`. Set: /metrics only here, so it need not be reachable where Teams is.
    metrics_listen: Annotated[str, _valid(lambda v: v == "" or _split_listen(v))] = ""

    @property
    def host(self) -> str:
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        return _split_listen(self.metrics_listen) if self.metrics_listen else None

    @model_validator(mode="after")
    def _check(self) -> "HttpConfig":
        if not self.metrics_listen:
            return self
        host, port = _split_listen(self.metrics_listen)
        # A wildcard host takes the port on every address, so any other host on that port collides too.
        if port and port == self.port and (host == self.host or WILDCARD_HOSTS & {host, self.host}):
            raise ValueError(f"metrics_listen ({self.metrics_listen}) en listen ({self.listen}) gebruiken dezelfde "
                             f"poort {port} op hetzelfde adres (0.0.0.0 en :: zijn elk adres): kies een andere poort "
                             "voor metrics_listen (of laat hem leeg)")
        return self


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*"})


class ListenFailed(Exception):
    """`http.listen` or `http.metrics_listen` could not be opened at start: `setting` is the dotted key,
    `address` what it says, `reason` a catalogue word (in_use, not_here, denied, other)."""

    def __init__(self, setting: str, address: str, error: OSError) -> None:
        super().__init__(f"cannot listen on {address} ({setting}): {type(error).__name__} {error.errno}")
        self.setting, self.address, self.error = setting, address, error

    @property
    def reason(self) -> str:
        import errno

        return {errno.EADDRINUSE: "in_use", errno.EADDRNOTAVAIL: "not_here", errno.EACCES: "denied"}.get(
            self.error.errno or 0, "other")


class ConsoleConfig(_Model):
    user: Text = "medewerker"


class ReportConfig(_Model):
    # `meldbot report --anonymous`: a hidden count may, by the published figures, be at least this much
    # more than it really is (and at least 5), so nobody can work it out (meldbot/service/disclosure.py).
    protection: PositiveInt = 3


class RemindersConfig(_Model):
    pick_up_after_working_days: PositiveInt = 1
    partner_feedback_after_working_days: PositiveInt = 10
    partner_feedback_repeat_days: PositiveInt = 7
    melder_feedback_after_working_days: PositiveInt = 3
    melder_silence_weeks: PositiveInt = 6
    urgent_repeat_hours: PositiveInt = 1
    weekly_overview: Clock = "09:00"
    office_hours: Annotated[str, _valid(_time_range)] = "08:30-17:00"
    closing_days: tuple[ClosingDay, ...] = ()
    # Working days although the holiday library lists them (Goede Vrijdag in many gemeenten).
    open_days: tuple[ClosingDay, ...] = ()
    retention_closed_months: PositiveInt = 24
    draft_expiry_hours: PositiveInt = 24
    sweep_seconds: float = Field(default=60.0, gt=0, le=3600)  # how often the database is asked what is due

    @property
    def weekly_overview_at(self) -> time:
        return _clock(self.weekly_overview)

    @property
    def office_start(self) -> time:
        return _time_range(self.office_hours)[0]

    @property
    def office_end(self) -> time:
        return _time_range(self.office_hours)[1]

    @model_validator(mode="after")
    def _check(self) -> "RemindersConfig":
        _raise_if(_closed_and_open(self.closing_days, self.open_days))
        return self

    def is_closing_day(self, day: date) -> bool:
        """A configured closing day (once or every year); Dutch public holidays are the caller's to add."""
        return day.isoformat() in self.closing_days or day.strftime("%m-%d") in self.closing_days

    def is_open_day(self, day: date) -> bool:
        """A configured open day (once or every year): a working day even if it is a Dutch public holiday."""
        return day.isoformat() in self.open_days or day.strftime("%m-%d") in self.open_days


def _closed_and_open(closing: Sequence[str], open_days: Sequence[str]) -> Located:
    """Open days that are closing days as well ("05-05" every year covers "2030-05-05" once): which one
    counts would be a guess, so the configuration says it instead."""
    def same(a: str, b: str) -> bool:
        return a == b or a[-5:] == b[-5:] and (len(a) == 5 or len(b) == 5)

    return [(("open_days", i), f"'{day}' staat ook in closing_days (als '{other}'); een dag is gesloten of open, "
             "niet allebei: haal hem uit een van de twee lijsten")
            for i, day in enumerate(open_days) for other in [next((c for c in closing if same(c, day)), None)]
            if other is not None]


class AFConfig(_Model):
    name: Annotated[str, _pattern(r"[a-z][a-z0-9_-]{0,29}", "moet één kort woord zijn in kleine letters, "
                                  "zoals anna")]
    display_name: Text = Field(default_factory=lambda data: data.get("name", "?"))
    matrix: Annotated[str, MatrixId] = ""
    teams: str = ""  # aadObjectId
    console: str = ""
    backup: bool = False

    @model_validator(mode="after")
    def _has_platform_id(self) -> "AFConfig":
        if not (self.matrix or self.teams or self.console):
            _raise_if([((), "geen matrix-, teams- of console-id; vul er minstens één in")])
        return self


class PartnerConfig(_Model):
    key: Annotated[str, _pattern(r"[a-z][a-z0-9]*", "moet één woord zijn in kleine letters, zoals politie")]
    name: Text
    aliases: tuple[Annotated[str, _pattern(r"\S+", "een alias is één woord zonder spaties")], ...] = ()
    contact: str = ""


class ContactConfig(_Model):
    label: Text
    number: Text
    hours: Annotated[str, StringConstraints(strip_whitespace=True), _valid(lambda v: v and _parse_hours(v))] = ""

    def is_open(self, moment: datetime) -> bool:
        """Whether this number is staffed at `moment`, given in the meldpunt's local time. A number with
        hours is closed on Dutch public holidays, like an office."""
        if not self.hours:
            return True
        days, start, end = _parse_hours(self.hours)
        if moment.date() in public_holidays(moment.year):
            return False
        return moment.weekday() in days and start <= moment.time() < end


# Used when a meldpunt has no [[meldpunt.partner]] / [[meldpunt.contact]]; numbers from the policy plan, appendix 4.
DEFAULT_PARTNERS = tuple(PartnerConfig(key=k, name=n, aliases=a, contact=c) for k, n, a, c in [
    ("politie", "Politie, team AVIM", ("avim", "police"),
     "088-9630320 (ma-vr 08:00-16:30); buiten kantooruren 0900-8844"),
    ("zorgcoordinator", "Zorgcoördinator mensenhandel", ("zorg", "zorgcoördinator"), ""),
    ("nla", "Nederlandse Arbeidsinspectie", ("arbeidsinspectie", "inspectie"), "0800-5151 (anoniem melden)"),
    ("kmar", "Koninklijke Marechaussee", ("marechaussee",), "0800-1814"),
    ("ind", "IND", (), "088-0430430"),
    ("riec", "RIEC", (), ""),
    ("veiligthuis", "Veilig Thuis", ("vt",), "0800-2000"),
])
DEFAULT_CONTACTS = (
    ContactConfig(label="Acuut gevaar", number="112"),
    ContactConfig(label="Politie, team AVIM", number="088-9630320", hours="ma-vr 08:00-16:30"),
    ContactConfig(label="Politie buiten kantooruren", number="0900-8844"),
)


class MeldpuntConfig(_Model):
    id: Annotated[str, _pattern(r"[a-z0-9]+(-[a-z0-9]+)*", "alleen kleine letters, cijfers en streepjes, "
                                "zoals bergeijk")]
    name: Text
    timezone: Annotated[str, _valid(_timezone)] = "Europe/Amsterdam"
    matrix_domains: tuple[Domain, ...] = ()
    teams_tenants: tuple[str, ...] = ()
    af: tuple[AFConfig, ...] = ()
    partners: tuple[PartnerConfig, ...] = Field(DEFAULT_PARTNERS, alias="partner")
    contact: tuple[ContactConfig, ...] = DEFAULT_CONTACTS
    reminders: RemindersConfig | None = None  # only the keys written in the file override the defaults
    signals_text: str | None = None  # None: the built-in text of `signalen`

    @model_validator(mode="after")
    def _check(self) -> "MeldpuntConfig":
        problems: Located = []
        first_af: dict[str, int] = {}
        for i, af in enumerate(self.af):
            if first_af.setdefault(af.name, i) != i:
                problems.append((("af", i, "name"), f"de naam '{af.name}' staat ook bij af[{first_af[af.name]}]"))
        if all(af.backup for af in self.af):
            problems.append((("af",), "minstens één [[meldpunt.af]] nodig die geen backup is"))
        owner: dict[str, int] = {}
        for i, partner in enumerate(self.partners):
            words: list[tuple[tuple[str | int, ...], str]] = [(("partner", i, "key"), partner.key)]
            words += [(("partner", i, "aliases", j), alias) for j, alias in enumerate(partner.aliases)]
            for key, word in words:
                if owner.setdefault(_fold(word), i) != i:
                    problems.append((key, f"'{word}' wordt al gebruikt door partner[{owner[_fold(word)]}]"))
        _raise_if(problems)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def af_by_name(self, name: str) -> AFConfig | None:
        return next((af for af in self.af if af.name == name.strip().lower()), None)

    def partner(self, key_or_alias: str) -> PartnerConfig | None:
        """The partner named by its key or an alias, ignoring case and accents."""
        wanted = _fold(key_or_alias)
        return next((p for p in self.partners if wanted in {_fold(w) for w in (p.key, *p.aliases)}), None)

    def reminder_settings(self, defaults: RemindersConfig) -> RemindersConfig:
        if self.reminders is None:
            return defaults
        return defaults.model_copy(update=self.reminders.model_dump(exclude_unset=True))


class MatrixConfig(_Model):
    enabled: bool = False
    homeserver: str = ""
    user_id: Annotated[str, MatrixId] = ""
    password: SecretStr = SecretStr("")  # first login only
    access_token: SecretStr = SecretStr("")
    device_name: Text = "meldbot"
    store_path: Text = "var/matrix"
    af_device_policy: Literal["tofu", "signed"] = "tofu"  # "verified" (wave 1) never worked: now "signed"

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> "MatrixConfig":
        needed = {
            "homeserver": (self.homeserver.startswith(("https://", "http://")), "het adres, zoals https://matrix.nl"),
            "user_id": (self.user_id, "de Matrix-id van de bot"),
            "password": (self.password.get_secret_value() or self.access_token.get_secret_value(), "password of "
                         "access_token, in de omgeving: MELDBOT_MATRIX__PASSWORD of MELDBOT_MATRIX__ACCESS_TOKEN"),
        }
        if self.enabled:
            _raise_if([((key,), f"nodig als matrix.enabled = true: {what}")
                       for key, (present, what) in needed.items() if not present])
        return self


class TeamsConfig(_Model):
    enabled: bool = False
    app_id: str = ""
    app_password: SecretStr = SecretStr("")
    tenant_id: str = ""
    anonymous: bool = False  # local testing without credentials only
    openid_metadata_url: Text = "https://login.botframework.com/v1/.well-known/openidconfiguration"
    outbound_token: SecretStr = SecretStr("")  # tests only
    allowed_service_urls: tuple[str, ...] = ()
    # For the app package (`meldbot teams-manifest`): Teams shows them with the app. Empty privacy and terms
    # addresses are the website's.
    website: WebAddress = ""
    privacy_url: WebAddress = ""
    terms_url: WebAddress = ""

    @property
    def privacy_address(self) -> str:
        return self.privacy_url or self.website

    @property
    def terms_address(self) -> str:
        return self.terms_url or self.website

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> "TeamsConfig":
        if self.enabled and not self.anonymous:
            values = {"app_id": self.app_id, "app_password": self.app_password.get_secret_value(),
                      "tenant_id": self.tenant_id}
            _raise_if([((name,), "nodig als teams.enabled = true (of zet teams.anonymous = true om lokaal te testen)")
                       for name, value in values.items() if not value])
        return self


Platform = Literal["matrix", "teams", "console"]


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Model):
    language: Literal["nl", "en"] = "nl"
    storage: StorageConfig = Field(default_factory=StorageConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    reminders: RemindersConfig = Field(default_factory=RemindersConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    meldpunt: tuple[MeldpuntConfig, ...]
    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    teams: TeamsConfig = Field(default_factory=TeamsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    data_key: SecretStr | None = Field(default=None, repr=False)  # from MELDBOT_DATA_KEY only
    # Keys being rotated away from: still read, never written (MELDBOT_DATA_KEY_PREVIOUS, comma-separated).
    data_key_previous: tuple[SecretStr, ...] = Field(default=(), repr=False)

    @model_validator(mode="after")
    def _check(self) -> "Config":
        problems: Located = []
        if not self.meldpunt:
            problems.append((("meldpunt",), "minstens één [[meldpunt]] nodig"))
        first: dict[str, int] = {}
        for i, m in enumerate(self.meldpunt):
            if first.setdefault(m.id, i) != i:
                problems.append((("meldpunt", i, "id"), f"'{m.id}' staat ook bij meldpunt[{first[m.id]}]"))
            # A [meldpunt.reminders] table overrides one list and keeps the other: check the two together.
            if m.reminders is not None and {"closing_days", "open_days"} & m.reminders.model_fields_set:
                merged = m.reminder_settings(self.reminders)
                problems += [(("meldpunt", i, "reminders", *key), message)
                             for key, message in _closed_and_open(merged.closing_days, merged.open_days)]
        _raise_if(problems)
        return self

    @property
    def platforms_off(self) -> frozenset[str]:
        """The chat platforms switched off here; the console (`meldbot chat`) is never off. Messages queued
        for one of these are sent by no process, so the outbox parks them after a while."""
        return frozenset(name for name in ("matrix", "teams") if not getattr(self, name).enabled)

    @property
    def meldpunten(self) -> tuple[MeldpuntConfig, ...]:
        return self.meldpunt

    def meldpunt_by_id(self, meldpunt_id: str) -> MeldpuntConfig | None:
        return next((m for m in self.meldpunt if m.id == meldpunt_id), None)

    def reminders_for(self, meldpunt_id: str) -> RemindersConfig:
        # Asked at every chat turn (office hours, draft expiry): worked out once per configuration. Kept with
        # the sections it comes from, so a copy with other sections (model_copy, a reload) works it out anew.
        cached = self.__dict__.get("_reminders_cache")
        if cached is None or cached[0] is not self.meldpunt or cached[1] is not self.reminders:
            cached = (self.meldpunt, self.reminders, {m.id: m.reminder_settings(self.reminders) for m in self.meldpunt})
            self.__dict__["_reminders_cache"] = cached
        found = cached[2].get(meldpunt_id)
        if found is None:
            raise KeyError(meldpunt_id)
        return found

    def af_for(self, platform: Platform, user_id: str) -> list[tuple[MeldpuntConfig, AFConfig]]:
        """Every (meldpunt, AF) where this platform id is configured as AF.

        Matrix ids compare exactly: `@Anna:bergeijk.nl` is another account than `@anna:bergeijk.nl`
        (the spec makes ids case-sensitive, and some servers allow both). Teams ids are Entra object
        ids, GUIDs that Teams and configuration files write in either case; console ids are typed."""
        if platform not in ("matrix", "teams", "console"):
            raise ValueError(f"unknown platform {platform!r}")
        if platform == "matrix":
            return [(m, af) for m in self.meldpunt for af in m.af if af.matrix and af.matrix == user_id]
        wanted = user_id.casefold()
        return [(m, af) for m in self.meldpunt for af in m.af if getattr(af, platform) and
                getattr(af, platform).casefold() == wanted]

    def meldpunten_for(self, platform: Platform, user_id: str, tenant: str | None = None) -> list[MeldpuntConfig]:
        """The meldpunten a user belongs to: none or several means the bot has to ask which gemeente."""
        if len(self.meldpunt) == 1:
            return list(self.meldpunt)
        as_af = {m.id for m, _ in self.af_for(platform, user_id)}
        if platform == "console":
            return [m for m in self.meldpunt if m.id in as_af] or list(self.meldpunt)
        if platform == "matrix":
            domain = user_id.partition(":")[2].casefold()
            matches = {m.id for m in self.meldpunt if domain and domain in m.matrix_domains}
        else:
            wanted = (tenant or "").casefold()
            matches = {m.id for m in self.meldpunt if wanted and wanted in {t.casefold() for t in m.teams_tenants}}
        return [m for m in self.meldpunt if m.id in as_af | matches]


# --- warnings: allowed, but likely wrong -------------------------------------------------------------------

@dataclass(frozen=True)
class ConfigWarning:
    """Something the configuration allows but that probably does not do what was meant: `key` is the dotted
    key, `text_key` the catalogue sentence and `params` its values (`setting` among them, the dotted key).
    `check-config` and `doctor` show it; nothing refuses it."""

    key: str
    text_key: str
    params: dict[str, str] = field(default_factory=dict)
    # The bot starts, but cannot do its work for some people: doctor shows it as a fault ([!!], exit 1).
    blocking: bool = False


def config_warnings(config: Config) -> list[ConfigWarning]:
    """Matrix ids with capitals. The ids are compared exactly (af_for), and servers give out ids in
    lowercase (the spec requires it of new localparts; server names are DNS names), so `@Anna:bergeijk.nl`
    would never match the sender `@anna:bergeijk.nl`. Not an error: an old account may have capitals.

    A meldpunt without `teams_tenants` while Teams is on: the Teams adapter admits only users of a listed
    tenant, so no Teams user reaches that meldpunt. Blocking when no meldpunt lists one (every Teams user is
    refused); beside meldpunten that do, it may be a meldpunt on Matrix only. Not refused: Teams is often
    switched on before the tenant id is known."""
    ids = [("matrix.user_id", config.matrix.user_id)] + [
        (_dotted(("meldpunt", i, "af", j, "matrix")), af.matrix)
        for i, meldpunt in enumerate(config.meldpunt) for j, af in enumerate(meldpunt.af)]
    found = [ConfigWarning(key, "cli.config.matrix_id_case",
                           {"setting": key, "user_id": user_id, "lowercase": user_id.lower()})
             for key, user_id in ids if user_id != user_id.lower()]
    found += _open_days_without_holiday(config)
    if config.teams.enabled:
        without = [(i, m) for i, m in enumerate(config.meldpunt) if not any(t.strip() for t in m.teams_tenants)]
        everyone = len(without) == len(config.meldpunt)
        found += [ConfigWarning(key, "cli.config.teams_no_tenants", {"setting": key, "meldpunt": meldpunt.name},
                                blocking=everyone)
                  for i, meldpunt in without for key in [_dotted(("meldpunt", i, "teams_tenants"))]]
    return found


def _open_days_without_holiday(config: Config) -> list[ConfigWarning]:
    """An open day (one date) that is no Dutch public holiday changes nothing: a weekend stays closed and
    an ordinary weekday is open anyway. Probably a typing error, like Good Friday one day off."""
    tables: list[tuple[tuple[str | int, ...], RemindersConfig]] = [(("reminders",), config.reminders)]
    tables += [(("meldpunt", i, "reminders"), m.reminders) for i, m in enumerate(config.meldpunt)
               if m.reminders is not None and "open_days" in m.reminders.model_fields_set]
    found = []
    for where, settings in tables:
        for j, text in enumerate(settings.open_days):
            if len(text) != 10:
                continue   # every year: a holiday in some years only (Koningsdag on a Sunday moves)
            day = date.fromisoformat(text)
            if day not in public_holidays(day.year):
                key = _dotted((*where, "open_days", j))
                found.append(ConfigWarning(key, "cli.config.open_day_no_holiday", {"setting": key, "day": text}))
    return found


# --- loading -----------------------------------------------------------------------------------------------

_NOT_CONFIG = ("MELDBOT_CONFIG", "MELDBOT_DATA_KEY", "MELDBOT_DATA_KEY_PREVIOUS",  # and MELDBOT_TEST_*: read by others,
               "MELDBOT_INSTANCE",  # not config keys (MELDBOT_INSTANCE: the process name, `meldbot run --instance`;
               "MELDBOT_OPERATOR")  # MELDBOT_OPERATOR: who sits at `meldbot chat`, for the audit, meldbot.service.desk)

_MESSAGES = {kind: text for kinds, text in [  # pydantic error type -> Dutch; anything else: "ongeldige waarde"
    ("missing", "ontbreekt"),
    ("extra_forbidden", "onbekende sleutel (een tikfout, of staat hij in de verkeerde tabel?)"),
    ("int_parsing int_type int_from_float", "moet een geheel getal zijn"),
    ("bool_parsing bool_type", "moet true of false zijn"),
    ("string_type", "moet tekst tussen aanhalingstekens zijn"),
    ("string_too_short", "mag niet leeg zijn"),
    ("list_type tuple_type", 'moet een lijst zijn, zoals ["a", "b"]'),
    ("model_type model_attributes_type dict_type", "moet een tabel zijn"),
    ("greater_than", "moet groter zijn dan {gt}"),
    ("literal_error", "moet een van deze waarden zijn: {expected}"),
] for kind in kinds.split()}


def _dotted(loc: Sequence[str | int]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _problems_from(error: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        loc, ctx = tuple(item["loc"]), item.get("ctx", {})
        cause = ctx.get("error")
        if item["type"] == "default_factory_not_called":
            continue  # follows from an error reported on another key
        if item["type"] in ("list_type", "tuple_type") and isinstance(item["input"], dict):
            problems.append((_dotted(loc), f"moet een lijst van tabellen zijn: schrijf [[{loc[-1]}]]"))
        elif isinstance(cause, _Problems):
            problems += [(_dotted(loc + rel), message) for rel, message in cause.problems]
        elif isinstance(cause, ValueError):
            problems.append((_dotted(loc), str(cause)))
        else:
            template = _MESSAGES.get(item["type"], "ongeldige waarde")
            expected = str(ctx.get("expected", "")).replace(" or ", " of ")
            problems.append((_dotted(loc), template.format(**{**ctx, "expected": expected})))
    return problems


def _shape(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is a list) of a field annotation, looking through Optional and Annotated."""
    many = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        elif origin in (list, tuple) and not many:
            annotation, many = get_args(annotation)[0], True
        else:
            return annotation, many


def _set_from_env(model: type[BaseModel], node: Any, parts: list[str], value: str) -> None:
    """Put one MELDBOT_ value into the raw TOML data, walking the models; ValueError says what is wrong."""
    if not isinstance(node, dict):
        raise ValueError("kan niet: op die plek in het bestand staat geen tabel")
    name, rest = parts[0], parts[1:]
    field = {info.alias or key: info for key, info in model.model_fields.items()}.get(name)
    if field is None or name == "data_key":
        raise ValueError("onbekende instelling; verwacht MELDBOT_<SECTIE>__<SLEUTEL>, zoals MELDBOT_STORAGE__URL")
    inner, many = _shape(field.annotation)
    if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
        if rest:
            raise ValueError(f"onbekende instelling: {name} heeft geen onderdelen")
        node[name] = [v.strip() for v in value.split(",") if v.strip()] if many else value
    elif not many:
        if not rest:
            raise ValueError(f"{name} is een tabel; noem een sleutel erin, zoals ..._{name.upper()}__<SLEUTEL>")
        _set_from_env(inner, node.setdefault(name, {}), rest, value)
    else:
        if len(rest) < 2 or not rest[0].isdigit():
            raise ValueError(f"{name} is een lijst van tabellen; noem een volgnummer en een sleutel, "
                             f"zoals ..._{name.upper()}__0__<SLEUTEL>")
        items, index = node.get(name), int(rest[0])
        if not isinstance(items, list) or index >= len(items):
            raise ValueError(f"{name}[{index}] staat niet in het configuratiebestand")
        _set_from_env(inner, items[index], rest[1:], value)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError([(str(path), "bestand niet gevonden; geef --config of zet MELDBOT_CONFIG")])
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        where = re.search(r"\s*\(at line (\d+), column (\d+)\)", str(error))
        place, detail = (f"regel {where[1]}, kolom {where[2]}: ", str(error)[: where.start()]) if where else ("", error)
        raise ConfigError([(str(path), f"{place}geen geldige TOML ({detail})")]) from None
    except UnicodeDecodeError:
        raise ConfigError([(str(path), "is geen UTF-8-tekst")]) from None
    except OSError as error:
        raise ConfigError([(str(path), f"kan niet worden gelezen ({error.strerror})")]) from None


def _is_data_key(text: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.urlsafe_b64decode(text.encode("ascii"))) == 32
    except (ValueError, binascii.Error):
        return False


def load_config(path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment and validate the configuration; ConfigError lists every problem.

    The file is `path`, else $MELDBOT_CONFIG, else ./config.toml.
    """
    environ = os.environ if environ is None else environ
    raw = _read_toml(Path(path if path is not None else environ.get("MELDBOT_CONFIG") or "config.toml"))
    problems: list[Problem] = []
    if raw.pop("data_key", None) is not None:
        problems.append(("data_key", "hoort niet in het bestand; zet de sleutel in de omgeving als MELDBOT_DATA_KEY"))
    for name in sorted(environ):
        if name.startswith("MELDBOT_") and name not in _NOT_CONFIG and not name.startswith("MELDBOT_TEST_"):
            try:
                _set_from_env(Config, raw, name.removeprefix("MELDBOT_").lower().split("__"), environ[name])
            except ValueError as error:
                problems.append((name, str(error)))
    data_key = environ.get("MELDBOT_DATA_KEY") or None
    previous = tuple(k.strip() for k in environ.get("MELDBOT_DATA_KEY_PREVIOUS", "").split(",") if k.strip())
    for name, key in [("MELDBOT_DATA_KEY", data_key)] + [("MELDBOT_DATA_KEY_PREVIOUS", k) for k in previous]:
        if key is not None and not _is_data_key(key):
            problems.append((name, "is geen geldige sleutel (32 bytes in base64); maak er een met: meldbot new-key"))
    try:
        config = Config.model_validate({**raw, "data_key": data_key, "data_key_previous": previous})
    except ValidationError as error:
        problems += _problems_from(error)
    else:
        if not config.storage.allow_plaintext and data_key is None:
            problems.append(("storage.allow_plaintext", "staat op false, maar MELDBOT_DATA_KEY ontbreekt in de "
                             "omgeving; zet die sleutel, of (alleen lokaal) allow_plaintext = true"))
        if data_key is None and not config.storage.allow_plaintext_with_platforms:
            problems += [(f"{name}.enabled", "staat aan, maar de gegevens worden dan onversleuteld opgeslagen "
                          "(geen MELDBOT_DATA_KEY). Zet MELDBOT_DATA_KEY (maak er een met: meldbot new-key). "
                          "Alleen om te testen: storage.allow_plaintext_with_platforms = true")
                         for name in ("matrix", "teams") if getattr(config, name).enabled]
    if problems:
        raise ConfigError(problems)
    return config
