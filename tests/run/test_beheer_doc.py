"""Issue 20 item 1: docs/beheer.md is what an administrator runs. The blocks marked `<!-- test: NAME -->` run
here as root, line by line, on a temporary root folder with a uniquely named system user and database, and
the restore drill reads a signal back from the restored copy; the EnvironmentFile example is read the way
systemd reads it. Deviations, each on purpose: this checkout's files are copied instead of `git clone`, and
instead of `pip install` (31 s from PyPI in the real run) the new venv sees this checkout's venv.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from meldbot.run.cli import _parser
from tests.support import ROOT

DOC = ROOT / "docs" / "beheer.md"
_BLOCK = re.compile(r"<!-- test: ([\w-]+) -->\n```(\w+)\n(.*?)```", re.S)


def blocks() -> dict[str, str]:
    return {name: body for name, _, body in _BLOCK.findall(DOC.read_text(encoding="utf-8"))}


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
        self.paths = {"/opt/meldbot": root / "opt/meldbot", "/etc/meldbot": root / "etc/meldbot",
                      "/var/lib/meldbot": root / "var/lib/meldbot", "/var/backups/meldbot": root / "backups",
                      "/usr/local/sbin/meldbot": root / "sbin/meldbot", "/etc/systemd/system/": root / "systemd/"}
        (root / "sbin").mkdir()
        (root / "systemd").mkdir()
        (root / "var/lib").mkdir(parents=True)
        (root / "etc").mkdir()

    def sub(self, text: str) -> str:
        for old, new in self.paths.items():
            text = text.replace(old, str(new) + ("/" if old.endswith("/") else ""))
        text = text.replace("postgresql+asyncpg://meldbot@/meldbot", f"postgresql+asyncpg://{self.user}@/{self.user}")
        commands = "|".join(sorted(_subcommands(), key=len, reverse=True))
        return re.sub(rf"(?<![\w./@-])meldbot(_proef)?(?![\w./@-])(?! (?:{commands})\b)",
                      lambda m: self.user + (m.group(1) or ""), text)

    def run(self, block: str, **env: str) -> str:
        """Each line of the block as root in sh, stopping at the first failure; the output."""
        out = []
        for line in _lines(block):
            line = self.sub(line)
            if line.startswith("git clone "):
                _copy_checkout(self.paths["/opt/meldbot"])
                continue
            if "/.venv/bin/pip install" in line:   # the real run took 31 s from PyPI; here: this checkout's venv
                _see_this_venv(self.paths["/opt/meldbot"] / ".venv")
                continue
            done = subprocess.run(["sh", "-c", line], cwd="/", capture_output=True, text=True, timeout=120,
                                  env={"PATH": f"{self.root}/sbin:/usr/sbin:/usr/bin:/sbin:/bin", **env})
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
    if os.geteuid() != 0:
        pytest.skip("the install runs as root")
    if not _local_postgres():
        if os.environ.get("MELDBOT_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("docs/beheer.md installs on a local PostgreSQL (runuser -u postgres -- psql failed)")
        pytest.skip("no local PostgreSQL cluster")
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
    b = blocks()
    for name in ("install", "postgresql", "config-file"):
        machine.run(b[name])
    toml = machine.paths["/etc/meldbot"] / "meldbot.toml"
    toml.write_text(_apply(toml.read_text(), machine.sub(b["config"])))
    machine.run(b["envfile"])
    return machine


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
    out = installed.run(blocks()["check"])
    assert "De configuratie is in orde" in out and "Alles in orde." in out
    assert "De sleutel (MELDBOT_DATA_KEY) past bij de gegevens." in out


def test_systemd_accepts_the_installed_unit(installed):
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is needed (Debian: apt-get install systemd)")
    installed.run(blocks()["unit"])
    unit = installed.paths["/etc/systemd/system/"] / "meldbot.service"
    assert unit.exists()


def test_the_restore_drill_reads_signal_1_back_and_a_wrong_key_is_refused(installed):
    m = installed
    m.run(blocks()["check"])
    report = ["melden", "Een man schrijft steeds nieuwe vrouwen in op zijn adres en houdt hun paspoorten.",
              "Kerkstraat 3, Bergeijk", "gisteren", "onbekend", "1", "balie", "nee", "versturen"]
    helper = str(m.paths["/usr/local/sbin/meldbot"])
    done = subprocess.run([helper, "chat"], input="\n".join(report) + "\n", capture_output=True, text=True,
                          cwd="/", timeout=60)
    assert "MH-" in done.stdout, done.stdout + done.stderr
    m.run(blocks()["backup-postgresql"])
    out = m.run(blocks()["restore-postgresql"])
    assert "De sleutel (MELDBOT_DATA_KEY) past bij de gegevens." in out
    out = m.run(blocks()["restore-read"])
    assert "Wat: Een man schrijft steeds nieuwe vrouwen in" in out, out
    # The same copy with another key: refused with the doc's sentence, nothing shown.
    env_file = m.paths["/etc/meldbot"] / "meldbot.env"
    saved = env_file.read_text()
    try:
        env_file.write_text(re.sub(r"^MELDBOT_DATA_KEY=.*$", "", saved, flags=re.M))
        line = m.sub(_lines(blocks()["restore-read"])[-1])
        done = subprocess.run(["sh", "-c", line], cwd="/", capture_output=True, text=True, timeout=60,
                              env={"PATH": f"{m.root}/sbin:/usr/sbin:/usr/bin:/sbin:/bin"})
        assert done.returncode != 0 and "Wat:" not in done.stdout
        assert "maar MELDBOT_DATA_KEY ontbreekt" in done.stderr, done.stderr
        assert "maar MELDBOT_DATA_KEY ontbreekt" in DOC.read_text(encoding="utf-8")
    finally:
        env_file.write_text(saved)


def test_the_sqlite_backup_command_makes_a_copy_that_opens_with_the_key(installed, tmp_path):
    m = installed
    url = f"sqlite+aiosqlite:///{m.paths['/var/lib/meldbot']}/meldbot.db"
    m.run("meldbot migrate\n", MELDBOT_STORAGE__URL=url)
    m.run(blocks()["backup-sqlite"])
    [copy] = m.paths["/var/backups/meldbot"].glob("*.db")
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
