"""Credentials in URLs (issue 17 point 4): refused in every backend and storage URL
at config load, as database.url already is, and masked wherever a URL is printed."""

from __future__ import annotations

import pytest

from imagen_tui.backends.comfyui.client import Session
from imagen_tui.config.secrets import redact_text, redact_url, url_userinfo
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import ConfigError
from imagen_tui.storage.supabase import object_uri
from tests.conftest import Home

PASSWORD = "hunter2pw"
REFUSED = (
    "the URL holds a user name or password (user:password@); secrets must not be written "
    "in the config: remove it and give the token by the `*_env` key"
)


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ("  r:\n    type: replicate\n    base_url: http://u:{pw}@127.0.0.1:9/v1\n", "base_url"),
        ("  o:\n    type: openai\n    model: gpt-image-2\n    base_url: https://u:{pw}@x/v1\n",
         "base_url"),
        ("  c:\n    type: comfyui\n    url: http://admin:{pw}@127.0.0.1:8188\n", "url"),
        ("  c:\n    type: comfyui\n    url: http://{pw}@127.0.0.1:8188\n", "url"),  # a bare token
    ],
)  # fmt: skip
def test_a_backend_url_with_credentials_is_refused_at_load(home: Home, block: str, key: str):
    path = home.write_config("backends:\n" + block.format(pw=PASSWORD))
    with pytest.raises(ConfigError) as refused:
        open_workbench(path)
    message = str(refused.value)
    name = block.split(":")[0].strip()
    assert message == f"{path}:{block.count(chr(10)) + 1}: backends.{name}.{key}: {REFUSED}"
    assert PASSWORD not in message


def test_a_storage_url_with_credentials_is_refused_at_load(home: Home):
    path = home.write_config(
        "storage:\n  type: supabase\n  url: https://me:" + PASSWORD + "@x.supabase.co\n"
        "  bucket: images\n  key_env: SUPABASE_SECRET_KEY\n"
    )
    with pytest.raises(ConfigError) as refused:
        open_workbench(path).storage()
    assert str(refused.value) == f"{path}:3: storage.url: {REFUSED}"


def test_config_check_refuses_it_without_echoing_it(home: Home):
    home.write_config(f"backends:\n  c:\n    type: comfyui\n    url: http://a:{PASSWORD}@h:1\n")
    done = home.imagen("config", "check")
    assert done.returncode != 0
    assert "backends.c.url: the URL holds a user name or password" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


def test_one_helper_masks_userinfo_wherever_a_url_is_printed():
    url = f"http://admin:{PASSWORD}@127.0.0.1:8188/x?y=1"
    assert url_userinfo(url) and not url_userinfo("https://host/a@b")
    assert redact_url(url) == "http://***@127.0.0.1:8188/x?y=1"
    assert redact_url("https://host/path") == "https://host/path"
    text = f"cannot reach {url} (auth {PASSWORD} refused)"
    assert PASSWORD not in redact_text(text, url)
    # The places that print one: the object URI on the images row, ComfyUI's messages.
    assert PASSWORD not in object_uri(f"https://me:{PASSWORD}@x.supabase.co", "b", "p.png")
    session = Session(name="c", url=f"http://admin:{PASSWORD}@127.0.0.1:1", connect_timeout=1)
    assert PASSWORD not in session.shown_url
