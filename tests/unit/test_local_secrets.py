"""Files ``make up`` and the demo write that hold a password are readable by their owner only."""

from __future__ import annotations

import json
import os
import stat

import pytest


@pytest.fixture
def open_umask():
    """Umask 0: a file written without an explicit mode would come out 666 (644 under the usual 022)."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_make_up_s_state_with_the_admin_password_is_mode_600(tmp_path, open_umask):
    """Seen on main: ``.stack/state.json``, which holds the admin password, was written mode 644."""
    from demo.up import write_state

    path = tmp_path / "state.json"
    path.write_text("{}")
    path.chmod(0o644)  # a state file left by an earlier version
    write_state({"user": "admin", "password": "pw-1"}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["password"] == "pw-1"


def test_the_admin_password_file_is_mode_600(tmp_path, open_umask):
    from demo.stack import admin_password

    password = admin_password(tmp_path)
    path = tmp_path / "simple_auth_manager_passwords.json.generated"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and json.loads(path.read_text()) == {"admin": password}
