"""Issue 17, H3: an access token is one Matrix device, so `--instance` (several processes) with
matrix.access_token is refused at start with one line in plain words and exit code 2."""

from __future__ import annotations

import pytest

from tests.support.cli import env_for, meldbot


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_instance_with_an_access_token_is_refused_in_one_line(tmp_path, how):
    env = env_for(tmp_path, MELDBOT_MATRIX__ENABLED="true", MELDBOT_STORAGE__ALLOW_PLAINTEXT_WITH_PLATFORMS="true",
                  MELDBOT_MATRIX__HOMESERVER="http://127.0.0.1:9", MELDBOT_MATRIX__ACCESS_TOKEN="syt_geheim",
                  MELDBOT_MATRIX__STORE_PATH=str(tmp_path / "matrix"), MELDBOT_HTTP__LISTEN="127.0.0.1:0")
    assert meldbot(tmp_path, "migrate", env=env).returncode == 0
    if how == "flag":
        result = meldbot(tmp_path, "run", "--instance", "meldbot-1", env=env, timeout=60)
    else:
        result = meldbot(tmp_path, "run", env={**env, "MELDBOT_INSTANCE": "meldbot-1"}, timeout=60)
    assert result is not None and result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if "access_token" in line]
    assert lines == ["Met matrix.access_token delen alle processen één Matrix-apparaat. Gebruik voor meer "
                     "processen matrix.password en geen access_token, of start één proces zonder --instance."]
    assert "Traceback" not in result.stderr and "syt_geheim" not in result.stderr
