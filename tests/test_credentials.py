"""Secrets from systemd's LoadCredential= ($CREDENTIALS_DIRECTORY/imagen.env)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagen_tui.config.credentials import CREDENTIAL_NAME, load_credentials, parse_env
from imagen_tui.errors import ConfigError

SECRET = "s3cr3t-Pa55"
EXAMPLE = Path(__file__).resolve().parent.parent / "scripts" / "imagen-worker.env.example"


def parse(text: str) -> dict[str, str]:
    return parse_env(text.encode("utf-8"), "/run/credentials/imagen-worker.service/imagen.env")


def credentials(tmp_path: Path, text: str | bytes) -> dict[str, str]:
    """An environment whose $CREDENTIALS_DIRECTORY holds `text` as imagen.env."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    (tmp_path / CREDENTIAL_NAME).write_bytes(data)
    return {"CREDENTIALS_DIRECTORY": str(tmp_path)}


# --------------------------------------------------------------------------- syntax


def test_the_three_value_forms_comments_and_blank_lines():
    text = (
        "# the queue\n"
        "\n"
        "IMAGEN_DATABASE_URL='postgresql://imagen:p%40ss@db.example.com:5432/imagen?sslmode=require'\n"
        "   # an indented comment\n"
        "PLAIN=abc-123_x.y/z:9?q=1\n"
        'DOUBLE="two words"\n'
        "  INDENTED='v'   \n"
        "EMPTY=\n"
        "EMPTY_QUOTED=''\n"
    )
    assert parse(text) == {
        "IMAGEN_DATABASE_URL": "postgresql://imagen:p%40ss@db.example.com:5432/imagen?sslmode=require",
        "PLAIN": "abc-123_x.y/z:9?q=1",
        "DOUBLE": "two words",
        "INDENTED": "v",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
    }


def test_single_quotes_are_literal_and_double_quotes_unescape_like_a_shell():
    text = (
        "SINGLE='a \"b\" $HOME `x` \\n'\n"
        'DOUBLE="q\\" b\\\\ d\\$ t\\` other\\n"\n'
    )  # fmt: skip
    assert parse(text) == {
        "SINGLE": 'a "b" $HOME `x` \\n',
        "DOUBLE": 'q" b\\ d$ t` other\\n',  # \n is not an escape: both keep the backslash
    }


def test_crlf_line_endings_and_a_later_line_wins():
    assert parse("A='1'\r\nB=2\r\nA='3'\r\n") == {"A": "3", "B": "2"}


def test_the_shipped_example_parses():
    variables = parse_env(EXAMPLE.read_bytes(), str(EXAMPLE))
    assert set(variables) == {"IMAGEN_DATABASE_URL"}  # the tokens are commented out
    assert variables["IMAGEN_DATABASE_URL"].startswith("postgresql://imagen:CHANGE-ME@")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"export TOKEN='{SECRET}'", "expected NAME=value"),
        (f"TOKEN = '{SECRET}'", "expected NAME=value"),
        (f"1TOKEN='{SECRET}'", "expected NAME=value"),
        (f"; TOKEN={SECRET}", "expected NAME=value"),
        (f"TOKEN= {SECRET}", "TOKEN: an unquoted value may hold only"),
        (f"TOKEN={SECRET} more", "TOKEN: an unquoted value may hold only"),
        (f"TOKEN={SECRET}&x", "TOKEN: an unquoted value may hold only"),
        (f"TOKEN={SECRET}$x", "TOKEN: an unquoted value may hold only"),
        (f"TOKEN=~{SECRET}", "TOKEN: an unquoted value may hold only"),
        (f"TOKEN={SECRET}'", "TOKEN: an unquoted value may hold only"),
        (f"TOKEN='{SECRET}", "TOKEN: the single-quoted value must close"),
        (f"TOKEN='{SECRET}' # note", "TOKEN: the single-quoted value must close"),
        (f"TOKEN='{SECRET}'x'", "TOKEN: the single-quoted value must close"),
        (f'TOKEN="{SECRET}', "TOKEN: the double-quoted value must close"),
        (f'TOKEN="{SECRET}$HOME"', "TOKEN: the double-quoted value must close"),
        (f'TOKEN="{SECRET}`id`"', "TOKEN: the double-quoted value must close"),
        (f'TOKEN="{SECRET}\\"', "TOKEN: the double-quoted value must close"),
    ],
)
def test_a_malformed_line_names_file_and_line_never_the_value(line, message):
    with pytest.raises(ConfigError) as caught:
        parse(f"# secrets\nOK='fine'\n{line}\n")
    text = str(caught.value)
    assert text.startswith("/run/credentials/imagen-worker.service/imagen.env:3: ")
    assert message in text
    assert SECRET not in text
    assert len(text.splitlines()) == 1
    assert caught.value.exit_code == 2  # the service stays down (RestartPreventExitStatus=2)
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # no chained value


def test_invalid_utf8_is_reported_without_the_bytes():
    with pytest.raises(ConfigError) as caught:
        parse_env(b"A='ok'\nTOKEN='s3cr\xff\xfet'\n", "f.env")
    assert str(caught.value) == "f.env:2: not valid UTF-8; save the file as UTF-8"


# --------------------------------------------------------------------------- loading


def test_sets_the_variables_of_imagen_env(tmp_path):
    env = credentials(tmp_path, f"IMAGEN_DATABASE_URL='postgresql://u:{SECRET}@db/imagen'\nB=2\n")
    assert load_credentials(env) == ["IMAGEN_DATABASE_URL", "B"]
    assert env["IMAGEN_DATABASE_URL"] == f"postgresql://u:{SECRET}@db/imagen"
    assert env["B"] == "2"


def test_an_already_set_variable_wins_even_when_empty(tmp_path):
    env = credentials(tmp_path, "A='from-file'\nB='from-file'\nC='from-file'\n")
    env.update(A="from-environment", B="")
    assert load_credentials(env) == ["C"]
    assert (env["A"], env["B"], env["C"]) == ("from-environment", "", "from-file")


def test_nothing_to_do_without_the_directory_or_the_file(tmp_path):
    env: dict[str, str] = {}
    assert load_credentials(env) == [] and env == {}
    env = {"CREDENTIALS_DIRECTORY": ""}
    assert load_credentials(env) == []
    (tmp_path / "other-credential").write_text("A=1\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}  # another service's credentials only
    assert load_credentials(env) == [] and set(env) == {"CREDENTIALS_DIRECTORY"}
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "missing")}
    assert load_credentials(env) == []


def test_an_unreadable_file_is_one_line_naming_it(tmp_path):
    (tmp_path / CREDENTIAL_NAME).mkdir()  # unreadable as a file, even for root
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    with pytest.raises(ConfigError) as caught:
        load_credentials(env)
    assert (
        str(caught.value) == f"{tmp_path / CREDENTIAL_NAME}: cannot read the file (Is a directory)"
    )


def test_a_malformed_file_sets_nothing(tmp_path):
    env = credentials(tmp_path, f"A='1'\nTOKEN='{SECRET}\n")
    with pytest.raises(ConfigError):
        load_credentials(env)
    assert set(env) == {"CREDENTIALS_DIRECTORY"}


# --------------------------------------------------------------------------- the command


def test_imagen_reads_the_credential_before_running_the_command(home, tmp_path):
    url = f"postgresql://app:{SECRET}@db.example:5432/imagen"
    home.env.update(credentials(tmp_path, f"IMAGEN_DATABASE_URL='{url}'\n"))
    home.env.pop("IMAGEN_DATABASE_URL", None)
    done = home.imagen("config", "show")
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("database ="))
    assert line.startswith("database = postgresql://app:***@db.example:5432/imagen")
    assert line.endswith("# $IMAGEN_DATABASE_URL")
    assert SECRET not in done.stdout + done.stderr

    home.env["IMAGEN_DATABASE_URL"] = "postgresql://other@elsewhere:5432/imagen"
    done = home.imagen("config", "show")
    line = next(x for x in done.stdout.splitlines() if x.startswith("database ="))
    assert line.startswith("database = postgresql://other@elsewhere:5432/imagen")  # env wins


def test_imagen_refuses_a_malformed_credential_in_one_line_with_exit_2(home, tmp_path):
    home.env.update(credentials(tmp_path, f"# secrets\nIMAGEN_DATABASE_URL='{SECRET}\n"))
    done = home.imagen("config", "show")
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"imagen: {tmp_path / CREDENTIAL_NAME}:2: IMAGEN_DATABASE_URL: ")
    assert SECRET not in done.stderr
