"""The harness runs a stock salt-master and salt-minion that talk to each other."""

from __future__ import annotations

from pathlib import Path

import pytest

from .saltpeer import (
    ENV_VAR,
    MinionFactory,
    SaltMaster,
    SaltPeerError,
    SaltPeerUnavailable,
    find_salt_venv,
)


def test_stock_minion_key_is_pending_then_accepted_and_pings(
    salt_master: SaltMaster, salt_minion_factory: MinionFactory
) -> None:
    minion = salt_minion_factory("smoke-1", master=salt_master)

    salt_master.wait_key("smoke-1", "minions_pre")
    keys = salt_master.key_lists()
    assert keys["minions_pre"] == ["smoke-1"], salt_master.diagnostics()
    assert keys["minions"] == []

    salt_master.accept_key("smoke-1")
    assert salt_master.key_lists()["minions"] == ["smoke-1"]
    minion.wait_ready()

    result = salt_master.salt("*", "test.ping")
    assert result == {"smoke-1": True}, f"{result!r}\n{minion.diagnostics()}"


def test_preaccepted_minion_answers_a_glob_publish_without_static(
    salt_master: SaltMaster, salt_minion_factory: MinionFactory
) -> None:
    minion = salt_minion_factory("smoke-2", master=salt_master, preaccept=True)
    minion.wait_ready()

    result = salt_master.salt("smoke-*", "test.echo", "hello", static=False)

    assert result == {"smoke-2": "hello"}, minion.diagnostics()
    assert salt_master.key_lists()["minions_pre"] == []


def test_missing_peer_skips_outside_ci_but_fails_in_ci(tmp_path: Path) -> None:
    env = {ENV_VAR: str(tmp_path)}

    with pytest.raises(SaltPeerUnavailable):
        find_salt_venv(env)
    with pytest.raises(SaltPeerError) as raised:
        find_salt_venv({**env, "CI": "true"})
    assert not isinstance(raised.value, SaltPeerUnavailable)
