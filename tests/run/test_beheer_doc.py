"""Issue 20 item 1: docs/beheer.md is what an administrator runs. The blocks marked `<!-- test: NAME -->` run
here as root, line by line, on a temporary root folder with a uniquely named system user and database, and
the restore drill reads a signal back from the restored copy; the EnvironmentFile example is read the way
systemd reads it. Deviations, each on purpose: this checkout's files are copied instead of `git clone`,
`git pull` and `git checkout`; instead of `pip install` (31 s from PyPI in the real run) the new venv sees this
checkout's venv; `systemctl` is a script that writes down what it was asked.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from meldbot.run.cli import _parser
from meldbot.storage.db import head_revision
from tests.support import ROOT, skip_or_fail

DOC = ROOT / "docs" / "beheer.md"
_BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```(\w+)\n(.*?)```", re.S)


def blocks() -> dict[str, str]:
    return {name: body for name, _, body in _BLOCK.findall(DOC.read_text(encoding="utf-8"))}


def block(name: str) -> str:
    """A marked block this file runs (or, for `config`, applies); test_every_marked_block_is_run counts the calls."""
    return blocks()[name]


def test_every_marked_block_is_run():
    ran = set(re.findall(r'\bblock\("([\w-]+)"\)', Path(__file__).read_text(encoding="utf-8")))
    assert ran == set(blocks()), (set(blocks()) - ran, ran - set(blocks()))


def _subcommands() -> set[str]:
    [action] = [a for a in _parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(action.choices)


# --- the EnvironmentFile, as systemd reads it (src/basic/env-file.c: comments only at the start of a line,
# quotes removed, backslash escapes; nothing ends a value but the end of the line).

def systemd_env(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.lstrip()
        if not line or line[0] in "#;":
            continue
        key, sep, rest = line.partition("=")
        assert sep, f"not KEY=VALUE: {raw!r}"
        value, i, quote, trailing = [], 0, None, 0
        rest = rest.lstrip()
        while i < len(rest):
            c = rest[i]
            if quote == "'":
                if c == "'":
                    quote = None
                else:
                    value.append(c)
            elif quote == '"':
                if c == '"':
                    quote = None
                elif c == "\\" and i + 1 < len(rest):
                    i += 1
                    value.append(rest[i])
                else:
                    value.append(c)
            elif c in "'\"":
                quote, trailing = c, 0
            elif c == "\\" and i + 1 < len(rest):
                i += 1
                value.append(rest[i])
                trailing = 0
            else:
                value.append(c)
                trailing = trailing + 1 if c.isspace() else 0
            i += 1
        values[key.strip()] = "".join(value[:len(value) - trailing] if trailing else value)
    return values


def test_the_parser_keeps_an_inline_comment_in_the_value_as_systemd_does():
    assert systemd_env("A=geheim  # van Matrix\n# B=x\n; C=y\nD='a b'  \nE=\"x\\\"y\"\n") == {
        "A": "geheim  # van Matrix", "D": "a b", "E": 'x"y'}


def _env_example() -> str:
    [text] = re.findall(r"<<'EOF'\n(.*?)\nEOF\n", blocks()["envfile"], re.S)
    return text + "\n"


def test_the_environment_file_example_quotes_every_value_with_single_quotes():
    values = [line for line in _env_example().splitlines() if line and not line.startswith("#")]
    assert values and all(re.fullmatch(r"MELDBOT_\w+='[^'\"]*'", line) for line in values), values
    assert '"' not in _env_example()


def test_publiccode_gives_a_release_date_with_its_version():
    text = (ROOT / "publiccode.yml").read_text(encoding="utf-8")
    assert re.search(r"^softwareVersion: ", text, re.M)
    assert re.search(r'^releaseDate: "\d{4}-\d{2}-\d{2}"$', text, re.M)


def test_the_environment_file_example_gives_the_values_the_doc_means(tmp_path):
    values = systemd_env(_env_example())
    assert values == {"MELDBOT_MATRIX__PASSWORD": "vul-hier-het-wachtwoord-in",
                      "MELDBOT_TEAMS__APP_PASSWORD": "vul-hier-het-clientgeheim-in"}
    # The helper script sources the file with sh: it must read every value as systemd does.
    env_file = tmp_path / "meldbot.env"
    env_file.write_text(_env_example() + "MELDBOT_X='a $b # c'\n")
    shell = subprocess.run(["sh", "-c", 'set -a; . "$1"; set +a; env -0', "sh", str(env_file)], capture_output=True,
                           text=True, env={"PATH": "/usr/bin:/bin"}, check=True)
    seen = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
    for key, value in systemd_env(env_file.read_text()).items():
        assert seen.get(key) == value, key


def test_the_doc_names_only_commands_and_options_meldbot_has():
    text = DOC.read_text(encoding="utf-8")
    known = _subcommands()
    code = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    named = {m for part in code for line in part.splitlines()
             for m in re.findall(r"(?:^|\s|bin/|')(?<!-u )meldbot ([a-z][a-z-]+)", line.split(" #")[0])}
    assert {"migrate", "doctor", "check-config", "chat", "new-key"} <= named
    assert not named - known, named - known
    assert "meldbot migrate --to " in text
    rollback = blocks()["rollback"]
    [to] = re.findall(r"meldbot (migrate --to \S+)", rollback)
    assert _parser().parse_args(to.split()).to == "0011"


def _meldbot_commands(text: str) -> list[str]:
    """Every `meldbot <subcommand> ...` the doc writes, in code blocks and inline code, up to where the shell
    command ends; a placeholder like <nummer> becomes 1."""
    code = re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
    found = []
    for part in code:
        for line in part.splitlines():
            for m in re.finditer(r"(?:^|\s|bin/)meldbot ([a-z][a-z-]+.*)", line):
                command = re.split(r"\s(?:\||&&|;|>|#)\s?|\s*\)?$", m.group(1))[0].rstrip(")")
                if command.split()[0] in _subcommands():
                    found.append(re.sub(r"<[^>]+>", "1", command))
    return found


def test_every_meldbot_line_of_the_doc_parses_with_the_real_options():
    commands = _meldbot_commands(DOC.read_text(encoding="utf-8"))
    assert {"chat --beheer", "migrate --to 0011 --yes", "outbox resend --all-parked"} <= set(commands)
    wrong = []
    for command in commands:
        try:
            _parser().parse_args(shlex.split(command))
        except SystemExit:
            wrong.append(command)
    assert not wrong, wrong


def test_the_option_check_catches_an_option_meldbot_does_not_have(capsys):
    [command] = _meldbot_commands("```sh\nmeldbot migrate --naar 0011\n```\n")
    with pytest.raises(SystemExit):
        _parser().parse_args(shlex.split(command))


def test_the_unit_writes_only_where_the_install_made_a_folder():
    install = blocks()["install"]
    assert re.search(r"useradd .*--create-home --home-dir /var/lib/meldbot\b", install)
    for unit in ("meldbot.service", "meldbot@.service"):
        text = (ROOT / "deploy" / unit).read_text()
        assert re.findall(r"^ReadWritePaths=(.*)$", text, re.M) == ["/var/lib/meldbot"]
        assert "WorkingDirectory=/var/lib/meldbot" in text
        assert "Environment=MELDBOT_CONFIG=/etc/meldbot/meldbot.toml" in text
        assert "EnvironmentFile=/etc/meldbot/meldbot.env" in text


# --- the run ------------------------------------------------------------------------------------------

def _local_postgres() -> bool:
    if os.geteuid() != 0 or not shutil.which("createdb") or not pwd.getpwnam("postgres"):
        return False
    done = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-tAc", "select 1"], cwd="/",
                          capture_output=True, text=True)
    return done.returncode == 0


class Machine:
    """The doc's paths under one temporary folder, and the name meldbot replaced by a unique one."""

    def __init__(self, root: Path, user: str) -> None:
        self.root, self.user = root, user
        self.errors = ""
        stubs = root / "stubs"
        stubs.mkdir()
        # systemctl: what the doc asks of it, one call a line; git: the commit of this checkout.
        (stubs / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {root}/systemctl.log\n')
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
        (stubs / "git").write_text(f'#!/bin/sh\ncase "$*" in *rev-parse*) echo {head.strip() or "0" * 40};; '
                                   f'*) echo "git $* is not stubbed" >&2; exit 1;; esac\n')
        for stub in stubs.iterdir():
            stub.chmod(0o755)
        self.paths = {"/opt/meldbot": root / "opt/meldbot", "/etc/meldbot": root / "etc/meldbot",
                      "/var/lib/meldbot": root / "var/lib/meldbot", "/var/backups/meldbot": root / "backups",
                      "/usr/local/sbin/meldbot": root / "sbin/meldbot", "/etc/systemd/system/": root / "systemd/",
                      "/etc/cron.d/": root / "etc/cron.d/"}
        (root / "sbin").mkdir()
        (root / "systemd").mkdir()
        (root / "var/lib").mkdir(parents=True)
        (root / "etc/cron.d").mkdir(parents=True)

    def sub(self, text: str) -> str:
        for old, new in self.paths.items():
            text = text.replace(old, str(new) + ("/" if old.endswith("/") else ""))
        text = text.replace("postgresql+asyncpg://meldbot@/meldbot", f"postgresql+asyncpg://{self.user}@/{self.user}")
        commands = "|".join(sorted(_subcommands(), key=len, reverse=True))
        return re.sub(rf"(?<![\w./@-])meldbot(_proef)?(?![\w./@-])(?! (?:{commands})\b)",
                      lambda m: self.user + (m.group(1) or ""), text)

    def run(self, block: str, *, may_fail: tuple[str, str] | None = None, **env: str) -> str:
        """Each line of the block as root in sh, stopping at the first failure; the output (stderr in
        self.errors). `may_fail`: (line, text) a line that may fail when its output says `text`."""
        out, self.errors = [], ""
        for line in _lines(block):
            original, line = line, self.sub(line)
            if line.startswith("git clone ") or re.match(r"git -C \S+ (pull|checkout)\b", line):
                _copy_checkout(self.paths["/opt/meldbot"])
                continue
            if "/.venv/bin/pip install" in line:   # the real run took 31 s from PyPI; here: this checkout's venv
                _see_this_venv(self.paths["/opt/meldbot"] / ".venv")
                continue
            done = subprocess.run(["sh", "-c", line], cwd="/", capture_output=True, text=True, timeout=120,
                                  env={"PATH": self.path, **env})
            self.errors += done.stderr
            if may_fail and original == may_fail[0] and may_fail[1] in done.stdout + done.stderr:
                continue
            assert done.returncode == 0, (line, done.stdout, done.stderr)
            if line.startswith("install -m 755") and line.endswith(str(self.paths["/usr/local/sbin/meldbot"])):
                helper = self.paths["/usr/local/sbin/meldbot"]
                helper.write_text(self.sub(helper.read_text()))
            if line.startswith("cp ") and line.endswith(str(self.paths["/etc/systemd/system/"]) + "/"):
                # The unit names the doc's paths; here they are this run's folders (verify checks ExecStart).
                for unit in self.paths["/etc/systemd/system/"].glob("*.service"):
                    unit.write_text(self.sub(unit.read_text()))
            out.append(done.stdout)
        return "".join(out)

    @property
    def path(self) -> str:
        return f"{self.root}/stubs:{self.root}/sbin:/usr/sbin:/usr/bin:/sbin:/bin"

    def psql(self, database: str, query: str) -> str:
        return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-tAc", query, database], cwd="/",
                              capture_output=True, text=True, check=True).stdout.strip()

    def reported(self) -> None:
        """Signal 1 in the service's database, once."""
        self.run(block("check"))
        if self.psql(self.user, "select count(*) from signal") != "0":
            return
        report = ["melden", "Een man schrijft steeds nieuwe vrouwen in op zijn adres en houdt hun paspoorten.",
                  "Kerkstraat 3, Bergeijk", "gisteren", "onbekend", "1", "balie", "nee", "versturen"]
        done = subprocess.run([str(self.paths["/usr/local/sbin/meldbot"]), "chat", "--beheer"],
                              input="\n".join(report) + "\n", capture_output=True, text=True, cwd="/", timeout=60,
                              env={"PATH": self.path})
        assert "MH-" in done.stdout, done.stdout + done.stderr


def _lines(block: str) -> list[str]:
    """Shell lines; a here-document stays with its command."""
    lines, current, end = [], [], None
    for line in block.splitlines():
        if end is not None:
            current.append(line)
            if line == end:
                lines.append("\n".join(current))
                current, end = [], None
            continue
        heredoc = re.search(r"<<'(\w+)'$", line)
        if heredoc:
            current, end = [line], heredoc.group(1)
        elif line.strip():
            lines.append(line)
    return lines


def _copy_checkout(target: Path) -> None:
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"],
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file() and not name.startswith(("tests/", "benchmarks/")):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _see_this_venv(venv: Path) -> None:
    """Instead of `pip install`: the new venv sees this venv's packages and this checkout (its .pth files
    too), and gets the `meldbot` command pip would write."""
    purelib = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    (Path(purelib) / "zz-test-packages.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    script = venv / "bin/meldbot"
    script.write_text(f"#!{venv}/bin/python\nimport sys\nfrom meldbot.run.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)


@pytest.fixture(scope="module")
def machine():
    # Where the full set-up is required (MELDBOT_TEST_REQUIRE_POSTGRES, as in CI), a missing piece fails.
    if os.geteuid() != 0:
        skip_or_fail("docs/beheer.md's install runs as root")
    if not _local_postgres():
        skip_or_fail("docs/beheer.md installs on a local PostgreSQL (runuser -u postgres -- psql failed)")
    root = Path(tempfile.mkdtemp(prefix="beheer-", dir="/tmp"))
    root.chmod(0o755)
    user = "mbt" + secrets.token_hex(4)
    m = Machine(root, user)
    try:
        yield m
    finally:
        for db in (f"{user}_proef", user):
            subprocess.run(["runuser", "-u", "postgres", "--", "dropdb", "--if-exists", db], cwd="/", capture_output=True)
        subprocess.run(["runuser", "-u", "postgres", "--", "dropuser", "--if-exists", user], cwd="/", capture_output=True)
        subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(machine):
    machine.run(block("install"))
    machine.run(block("postgresql"))
    machine.run(block("config-file"))
    toml = machine.paths["/etc/meldbot"] / "meldbot.toml"
    toml.write_text(_apply(toml.read_text(), machine.sub(block("config"))))
    machine.run(block("envfile"))
    return machine


def test_running_the_envfile_block_again_keeps_the_data_key(installed):
    env_file = installed.paths["/etc/meldbot"] / "meldbot.env"
    before = env_file.read_text()
    assert before.count("MELDBOT_DATA_KEY=") == 1
    out = installed.run(block("envfile"))
    assert env_file.read_text() == before
    assert "Let op: meldbot.env heeft al een MELDBOT_DATA_KEY. Die blijft staan." in out


def _apply(toml: str, snippet: str) -> str:
    """Set the snippet's `key = value` lines in their [section] of the file, as an administrator edits it."""
    section, lines = "", toml.splitlines()
    changes: dict[tuple[str, str], str] = {}
    for line in snippet.splitlines():
        if line.startswith("["):
            section = line
        elif "=" in line:
            changes[(section, line.split("=")[0].strip())] = line
    section = ""
    for i, line in enumerate(lines):
        if line.startswith("["):
            section = line.strip()
        key = line.split("=")[0].strip() if "=" in line and not line.startswith("#") else None
        if (section, key) in changes:
            lines[i] = changes.pop((section, key))
    assert not changes, f"keys the example file does not have: {changes}"
    return "\n".join(lines) + "\n"


def test_the_install_makes_the_user_folders_and_permissions_the_doc_promises(installed):
    m = installed
    entry = pwd.getpwnam(m.user)
    home = m.paths["/var/lib/meldbot"]
    assert entry.pw_dir == str(home) and home.is_dir() and home.stat().st_uid == entry.pw_uid
    assert oct(home.stat().st_mode & 0o777) == "0o750"
    assert (home / "matrix").stat().st_uid == entry.pw_uid
    env_file = m.paths["/etc/meldbot"] / "meldbot.env"
    st = env_file.stat()
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name, oct(st.st_mode & 0o777)) == (0, m.user, "0o640")
    values = systemd_env(env_file.read_text())
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", values["MELDBOT_DATA_KEY"])
    # Every folder the units may write to exists after the install.
    for unit in ("meldbot.service", "meldbot@.service"):
        for folder in re.findall(r"^ReadWritePaths=(.*)$", (ROOT / "deploy" / unit).read_text(), re.M):
            assert Path(m.sub(folder)).is_dir(), folder


def test_check_config_migrate_and_doctor_run_as_the_service_user(installed):
    out = installed.run(block("check"))
    assert "De configuratie is in orde" in out and "Alles in orde." in out
    assert "De sleutel (MELDBOT_DATA_KEY) past bij de gegevens." in out


def test_systemd_accepts_the_installed_unit(installed):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is needed (Debian: apt-get install systemd)")
    installed.run(block("unit"))
    unit = installed.paths["/etc/systemd/system/"] / "meldbot.service"
    assert unit.exists()
    # verify exits 0 on some complaints too: nothing it says may name the unit.
    assert not [line for line in installed.errors.splitlines() if "meldbot.service" in line], installed.errors


def test_the_restore_drill_reads_signal_1_back_and_a_wrong_key_is_refused(installed):
    m = installed
    m.run(block("check"))
    m.reported()
    m.run(block("backup-postgresql"))
    env_file = m.paths["/etc/meldbot"] / "meldbot.env"
    saved = env_file.read_text()
    # As the doc tells a site with PostgreSQL elsewhere: the production address in meldbot.env. The drill's own
    # MELDBOT_STORAGE__URL must still win, or it reads (and audits) production.
    env_file.write_text(saved + f"MELDBOT_STORAGE__URL='postgresql+asyncpg://{m.user}@/{m.user}?host=/run/postgresql'\n")
    try:
        out = m.run(block("restore-postgresql"))
        assert "De sleutel (MELDBOT_DATA_KEY) past bij de gegevens." in out
        reads = "select count(*) from audit where action = 'gelezen'"
        production, proef = m.psql(m.user, reads), m.psql(f"{m.user}_proef", reads)
        out = m.run(block("restore-read"))
        assert "Wat: Een man schrijft steeds nieuwe vrouwen in" in out, out
        assert m.psql(m.user, reads) == production
        assert int(m.psql(f"{m.user}_proef", reads)) == int(proef) + 1
    finally:
        env_file.write_text(saved)
    # The same copy with another key: refused with the doc's sentence, nothing shown.
    try:
        env_file.write_text(re.sub(r"^MELDBOT_DATA_KEY=.*$", "", saved, flags=re.M))
        line = m.sub(_lines(block("restore-read"))[-1])
        done = subprocess.run(["sh", "-c", line], cwd="/", capture_output=True, text=True, timeout=60,
                              env={"PATH": m.path})
        assert done.returncode != 0 and "Wat:" not in done.stdout
        assert "maar MELDBOT_DATA_KEY ontbreekt" in done.stderr, done.stderr
        assert "maar MELDBOT_DATA_KEY ontbreekt" in DOC.read_text(encoding="utf-8")
    finally:
        env_file.write_text(saved)


def test_the_sqlite_backup_command_makes_a_copy_that_opens_with_the_key(installed, tmp_path):
    m = installed
    url = f"sqlite+aiosqlite:///{m.paths['/var/lib/meldbot']}/meldbot.db"
    m.run("meldbot migrate\n", MELDBOT_STORAGE__URL=url)
    m.run(block("backup-sqlite"))
    m.run(block("upgrade-sqlite"))
    assert (m.paths["/var/backups/meldbot"] / "voor-update.db").stat().st_size > 0
    [copy] = [p for p in m.paths["/var/backups/meldbot"].glob("meldbot-*.db")]
    restored = m.paths["/var/lib/meldbot"] / "meldbot-proef.db"   # a fresh file where the service may write
    shutil.copy(copy, restored)
    shutil.chown(restored, m.user, m.user)
    out = m.run("meldbot doctor\n", MELDBOT_STORAGE__URL=f"sqlite+aiosqlite:///{restored}")
    assert "De sleutel (MELDBOT_DATA_KEY) past bij de gegevens." in out


def test_no_doc_points_the_service_at_a_folder_the_unit_cannot_write():
    """The unit may write only below /var/lib/meldbot: docs/matrix.md's store_path once said /opt/meldbot/var."""
    import re

    docs = Path(__file__).resolve().parents[2] / "docs"
    bad = [(p.name, m) for p in docs.glob("*.md")
           for m in re.findall(r'(?:store_path|url)\s*=\s*"(/opt/[^"]*)"', p.read_text(encoding="utf-8"))]
    assert not bad, bad


def test_upgrade_then_rollback_to_0011_then_upgrade_again_and_signal_1_still_reads(installed):
    """The doc's upgrade and rollback blocks as written. This checkout is the only code there is, so between the
    rollback and the next upgrade `meldbot doctor` sees new code on a 0011 schema and says so."""
    m = installed
    m.reported()
    log = m.root / "systemctl.log"
    revision = "select version_num from alembic_version"
    m.run(block("upgrade"))
    assert m.psql(m.user, revision) == head_revision()
    assert (m.paths["/var/backups/meldbot"] / "voor-update.dump").stat().st_size > 0
    m.run(block("rollback"))
    assert m.psql(m.user, revision) == "0011"
    m.run(block("upgrade"), may_fail=("meldbot doctor", "Het databaseschema is oud (versie 0011"))
    assert m.psql(m.user, revision) == head_revision()
    assert log.read_text().splitlines() == [f"stop {m.user} meldbot@*", f"start {m.user}"] * 3
    done = subprocess.run(["sh", "-c", f"printf '%s\\n' ':als af' 'toon 1' | {m.paths['/usr/local/sbin/meldbot']} chat --beheer"],
                          cwd="/", capture_output=True, text=True, timeout=60, env={"PATH": m.path})
    assert "Wat: Een man schrijft steeds nieuwe vrouwen in" in done.stdout, done.stdout + done.stderr


def test_the_backup_cron_line_makes_a_dump_and_deletes_what_is_older_than_35_days(installed):
    m = installed
    m.reported()
    m.run(block("backup-cron"))
    [line] = [x for x in (m.root / "etc/cron.d/meldbot-backup").read_text().splitlines() if x and x[0] != "#"]
    fields = line.split(None, 6)
    assert fields[:6] == ["30", "2", "*", "*", "*", "root"]
    folder = m.paths["/var/backups/meldbot"]
    old, young = folder / "meldbot-oud.dump", folder / "meldbot-jong.dump"
    for path, days in ((old, 36), (young, 34)):
        path.write_text("x")
        subprocess.run(["touch", "-d", f"{days} days ago", str(path)], check=True)
    today = folder / f"meldbot-{subprocess.run(['date', '+%F'], capture_output=True, text=True).stdout.strip()}.dump"
    today.unlink(missing_ok=True)
    m.run(fields[6].replace("\\%", "%") + "\n")        # cron turns \% into %
    assert today.stat().st_size > 0 and young.exists() and not old.exists()
