"""The Teams app package (manifest.json and two icons, zipped) that IT uploads to make the bot installable."""

from __future__ import annotations

import io
import json
import struct
import uuid
import zipfile
import zlib
from functools import cache
from importlib import metadata

from meldbot.core.i18n import texts

MANIFEST_VERSION = "1.30"   # the current generally available Teams/Microsoft 365 app manifest (August 2026)
SCHEMA_URL = f"https://developer.microsoft.com/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
ACCENT = (0x1F, 0x4E, 0x79)   # dark blue, readable behind white
COLOR_SIZE, OUTLINE_SIZE = 192, 32
LANGUAGE_TAGS = {"nl": "nl-nl", "en": "en-us"}
COMMANDS = ("report", "mine", "signs", "contact", "help")
# Limits of the manifest schema, checked here so an upload never fails on them.
LIMITS = {"name.short": 30, "name.full": 100, "description.short": 80, "description.full": 4000}


class ManifestError(ValueError):
    """The package cannot be built; the message (Dutch) says which input is wrong."""


def _version() -> str:
    try:
        found = metadata.version("meldbot")
    except metadata.PackageNotFoundError:
        return "1.0.0"
    parts = (found.split("+")[0].split(".") + ["0", "0"])[:3]
    return ".".join(p if p.isdigit() else "0" for p in parts)


def _https(url: str | None, option: str, t) -> str:
    if not url or not url.startswith("https://") or len(url) > 2048 or " " in url:
        raise ManifestError(t("teams.manifest.error_https", option=option, value=repr(url)))
    return url


def build_manifest(app_id: str, *, developer_name: str, website_url: str, privacy_url: str | None = None,
                   terms_url: str | None = None, language: str = "nl", version: str | None = None) -> dict:
    """manifest.json for a bot in the personal scope only: signals are never handled in shared chats."""
    t = texts(language)
    try:
        app_id = str(uuid.UUID(app_id.strip()))
    except (ValueError, AttributeError):
        raise ManifestError(t("teams.manifest.error_app_id", value=repr(app_id))) from None
    if not developer_name.strip():
        raise ManifestError(t("teams.manifest.error_developer"))
    website = _https(website_url, "--website", t)
    manifest = {
        "$schema": SCHEMA_URL,
        "manifestVersion": MANIFEST_VERSION,
        "version": version or _version(),
        "id": app_id,
        "localizationInfo": {"defaultLanguageTag": LANGUAGE_TAGS.get(language, "nl-nl")},
        "developer": {
            "name": developer_name.strip()[:32],
            "websiteUrl": website,
            "privacyUrl": _https(privacy_url or website, "--privacy", t),
            "termsOfUseUrl": _https(terms_url or website, "--terms", t),
        },
        "name": {"short": t("teams.manifest.short_name"), "full": t("teams.manifest.full_name")},
        "description": {"short": t("teams.manifest.short_description"),
                        "full": t("teams.manifest.full_description")},
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": "#{:02X}{:02X}{:02X}".format(*ACCENT),
        "bots": [{
            "botId": app_id,
            "scopes": ["personal"],
            "isNotificationOnly": False,
            "supportsFiles": False,
            "supportsCalling": False,
            "supportsVideo": False,
            "commandLists": [{
                "scopes": ["personal"],
                "commands": [{"title": t(f"teams.manifest.command.{c}_title"),
                              "description": t(f"teams.manifest.command.{c}_description")} for c in COMMANDS],
            }],
        }],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [],
    }
    for dotted, limit in LIMITS.items():
        group, key = dotted.split(".")
        if len(manifest[group][key]) > limit:
            raise ManifestError(t("teams.manifest.error_too_long", key=dotted, limit=limit))
    return manifest


# --- icons: drawn here, so building the package needs no network and no image library ------------------

def _png(size: int, pixels: list[bytearray]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(row) for row in pixels)   # filter type 0 per row
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)   # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _in_rounded(x: float, y: float, x0: float, y0: float, x1: float, y1: float, r: float) -> bool:
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        return False
    cx = min(max(x, x0 + r), x1 - r)
    cy = min(max(y, y0 + r), y1 - r)
    return (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def _in_triangle(x: float, y: float, a, b, c) -> bool:
    def side(p, q):
        return (x - q[0]) * (p[1] - q[1]) - (p[0] - q[0]) * (y - q[1])
    d1, d2, d3 = side(a, b), side(b, c), side(c, a)
    return not ((d1 < 0 or d2 < 0 or d3 < 0) and (d1 > 0 or d2 > 0 or d3 > 0))


def _bubble(x: float, y: float) -> bool:
    """A speech bubble in the unit square ..."""
    return (_in_rounded(x, y, 0.16, 0.20, 0.84, 0.66, 0.10)
            or _in_triangle(x, y, (0.28, 0.64), (0.48, 0.64), (0.25, 0.82)))


def _mark(x: float, y: float) -> bool:
    """... with an exclamation mark cut out of it."""
    return _in_rounded(x, y, 0.465, 0.29, 0.535, 0.49, 0.03) or _in_rounded(x, y, 0.465, 0.53, 0.535, 0.59, 0.03)


@cache
def icon_png(size: int, *, outline: bool) -> bytes:
    """Colour icon: a white bubble on the accent colour, edge to edge. Outline icon: white on transparent,
    as Teams requires for its 32x32 outline."""
    samples = 3
    step = 1.0 / (size * samples)
    pixels = []
    for py in range(size):
        row = bytearray()
        for px in range(size):
            covered = 0
            for sy in range(samples):
                for sx in range(samples):
                    x = (px * samples + sx + 0.5) * step
                    y = (py * samples + sy + 0.5) * step
                    covered += _bubble(x, y) and not _mark(x, y)
            share = covered / (samples * samples)
            if outline:
                row += bytes((255, 255, 255, round(255 * share)))
            else:
                row += bytes(round(c + (255 - c) * share) for c in ACCENT) + b"\xff"
        pixels.append(row)
    return _png(size, pixels)


def build_package(manifest: dict) -> bytes:
    """The zip Teams accepts: manifest.json and both icons at the top level; fixed dates, so the same
    input always gives the same bytes."""
    files = {
        "manifest.json": json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8"),
        "color.png": icon_png(COLOR_SIZE, outline=False),
        "outline.png": icon_png(OUTLINE_SIZE, outline=True),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def package_for(config, *, website_url: str | None = None, privacy_url: str | None = None,
                terms_url: str | None = None, developer_name: str | None = None) -> bytes:
    """The package for this deployment: the bot id from teams.app_id, the organisation from the first meldpunt,
    the addresses from [teams] website, privacy_url and terms_url unless given here. An empty privacy or terms
    address is the website's (the one given here, else the configured one)."""
    settings, t = config.teams, texts(config.language)
    website = website_url or settings.website
    if not website:
        raise ManifestError(t("teams.manifest.no_website"))
    manifest = build_manifest(settings.app_id, developer_name=developer_name or config.meldpunten[0].name,
                              website_url=website, privacy_url=privacy_url or settings.privacy_url or website,
                              terms_url=terms_url or settings.terms_url or website, language=config.language)
    return build_package(manifest)


# --- `meldbot teams-manifest`: the CLI wires these two in ---------------------------------------------------

def add_command(subparsers) -> None:
    t = texts("nl")
    parser = subparsers.add_parser("teams-manifest", help=t("teams.manifest.help"))
    parser.add_argument("--output", default="meldbot-teams.zip", help=t("teams.manifest.help_output"))
    # Each overrides its key in [teams]; without the flag and the key the command says which key to set.
    parser.add_argument("--website", default=None, help=t("teams.manifest.help_site"))
    parser.add_argument("--privacy", default=None, help=t("teams.manifest.help_privacy_page"))
    parser.add_argument("--terms", default=None, help=t("teams.manifest.help_terms_page"))
    parser.add_argument("--developer", default=None, help=t("teams.manifest.help_developer"))


async def run_command(config, t, args) -> int:
    """Write the package; 2 (like a configuration error) when an input is wrong."""
    import sys
    from pathlib import Path

    try:
        data = package_for(config, website_url=args.website, privacy_url=args.privacy, terms_url=args.terms,
                           developer_name=args.developer)
    except ManifestError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    Path(args.output).write_bytes(data)
    print(t("teams.manifest.written", path=args.output))
    return 0
