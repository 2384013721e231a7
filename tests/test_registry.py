"""The backend registry: adapter options, secrets by env-var name, status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from imagen_tui.backends import registry
from imagen_tui.backends.mock import MockBackend
from imagen_tui.errors import ConfigError

REMOTE = registry.BackendType(
    name="test-remote",
    summary="a remote adapter as later issues add them",
    options=(
        registry.Option("model", str, default="m-1"),
        registry.Option("api_token_env", str, default="TEST_REMOTE_TOKEN", env=True),
        registry.Option("timeout_s", float, default=60.0, minimum=1),
    ),
    factory=MockBackend,
    default_model="m-1",
)


@pytest.fixture
def remote_type() -> Iterator[None]:
    registry.register(REMOTE)
    yield
    registry.unregister(REMOTE.name)


def test_defaults_are_filled_and_ints_accepted_for_floats(remote_type):
    block = registry.validate_block("r", {"type": "test-remote", "timeout_s": 5})
    assert block == {
        "type": "test-remote",
        "model": "m-1",
        "api_token_env": "TEST_REMOTE_TOKEN",
        "timeout_s": 5.0,
    }


def test_status_names_the_missing_variable(remote_type, monkeypatch):
    monkeypatch.delenv("MY_TOKEN", raising=False)
    block = registry.validate_block("r", {"type": "test-remote", "api_token_env": "MY_TOKEN"})
    assert registry.status(block) == "not configured (set MY_TOKEN)"
    monkeypatch.setenv("MY_TOKEN", "x")
    assert registry.status(block) == "ok"


def test_env_key_must_hold_a_variable_name(remote_type):
    with pytest.raises(ConfigError) as caught:
        registry.validate_block("r", {"type": "test-remote", "api_token_env": "r8_abc-123 xyz"})
    message = str(caught.value)
    assert "backends.r.api_token_env: not an environment variable name" in message
    assert "r8_abc" not in message  # it may be the token itself: never echoed


def test_bool_is_not_a_number(remote_type):
    with pytest.raises(ConfigError, match=r"backends\.r\.timeout_s: expected a number, got True"):
        registry.validate_block("r", {"type": "test-remote", "timeout_s": True})


def test_unconfigured_backend_is_refused_by_generate(remote_type, home, monkeypatch):
    from imagen_tui.core.pipeline import plan
    from imagen_tui.core.spec import RequestSpec
    from imagen_tui.core.workbench import open_workbench
    from imagen_tui.errors import InputError

    monkeypatch.delenv("TEST_REMOTE_TOKEN", raising=False)
    path = home.write_config("backends:\n  cloud:\n    type: test-remote\n")
    workbench = open_workbench(path)
    with pytest.raises(InputError) as caught:
        plan(workbench, RequestSpec(prompt="x", backend="cloud"))
    assert (caught.value.field, caught.value.message) == (
        "backend",
        "cloud is not configured (set TEST_REMOTE_TOKEN)",
    )
