"""Database URLs: redacting them by parsing, refusing malformed ones, never echoing a secret."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from imagen_tui.config import DatabaseConfig
from imagen_tui.db.connect import connect, describe, first_line, redact
from imagen_tui.errors import DatabaseError, InputError

NOT_A_URL = "not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DBNAME"
AMBIGUOUS = (
    'its user name or password holds a "/" or "@"; percent-encode it ("/" is %2F, "@" is %40)'
)
UNPARSABLE = "(not a valid PostgreSQL URL)"
HIDDEN = "(a PostgreSQL URL holding a password; not shown)"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://ann:hunter2@db.example.com:5432/imagen",
            "postgresql://ann:***@db.example.com:5432/imagen",
        ),
        ("postgres://:hunter2@db.example.com/imagen", "postgres://:***@db.example.com/imagen"),
        (
            "postgresql://ann:hun:ter2@db.example.com/imagen",
            "postgresql://ann:***@db.example.com/imagen",
        ),
        (
            "postgresql://ann:hun?ter2@db.example.com/imagen",
            "postgresql://ann:***@db.example.com/imagen",
        ),
        (
            "postgresql://ann:hunter%32@db.example.com/imagen",
            "postgresql://ann:***@db.example.com/imagen",
        ),
        (
            "postgresql://ann:hun%2Fter2@db.example.com/imagen",
            "postgresql://ann:***@db.example.com/imagen",
        ),
        # libpq reads these differently from what the user meant; neither half may show
        (
            "postgresql://ann:hun/ter2@db.example.com/imagen",
            "postgresql://ann:***@db.example.com/imagen",
        ),
        (
            "postgresql://ann:hun@ter2@db.example.com/imagen",
            "postgresql://ann:***@db.example.com/imagen",
        ),
        (
            "postgresql://ann@db.example.com/imagen?sslmode=require&password=hunter2",
            "postgresql://ann@db.example.com/imagen?sslmode=require&password=***",
        ),
        (
            "postgresql://ann@db.example.com/imagen?pass%77ord=hunter2",
            "postgresql://ann@db.example.com/imagen?pass%77ord=***",
        ),
        (
            "postgresql://ann@db.example.com/imagen?sslpassword=hunter2",
            "postgresql://ann@db.example.com/imagen?sslpassword=***",
        ),
        (
            "host=db.example.com user=ann password=hunter2 dbname=imagen",
            "host=db.example.com user=ann password=*** dbname=imagen",
        ),
        (
            "host=db.example.com password = 'hunter2 \\' and more' dbname=imagen",
            "host=db.example.com password = *** dbname=imagen",
        ),
        (
            "host=db.example.com password=hun\\ ter2 dbname=imagen",
            "host=db.example.com password=*** dbname=imagen",
        ),
        (
            "host=db.example.com password=hunter2&x dbname=imagen",
            "host=db.example.com password=*** dbname=imagen",
        ),
        (
            "host=db.example.com sslpassword=hunter2 dbname=imagen",
            "host=db.example.com sslpassword=*** dbname=imagen",
        ),
        (  # a URL as the dbname is not expanded by psycopg, but it is shown
            "host=db.example.com dbname='postgresql://ann:hunter2@elsewhere/x'",
            "host=db.example.com dbname=***",
        ),
        ("postgresql://ann@db.example.com/imagen", "postgresql://ann@db.example.com/imagen"),
        ("postgresql://ann:@db.example.com/imagen", "postgresql://ann:@db.example.com/imagen"),
        (
            "postgresql://db.example.com/imagen?user=ann@corp",
            "postgresql://db.example.com/imagen?user=ann@corp",
        ),
        # the final guard: the password is also the user name, so nothing is shown
        ("host=db.example.com user=hunter2 password=hunter2", HIDDEN),
    ],
)
def test_redact_hides_the_password_in_every_form(url, shown):
    assert redact(url) == shown
    assert "ter2" not in redact(url)


@pytest.mark.parametrize(
    "url",
    [
        "not a url at all",
        "postgresql://ann:hunt%ZZer2@db.example.com/imagen",  # libpq echoes the token
        "host=db.example.com password=hunter2 dbname='unclosed",
        "host=db.example.com password=hunter2 colour=blue",
        "postgresql://ann:hunter2@db.example.com/imagen\x00",
        "postgresql://ann:hunter2@db.example.com/imagen\udcff",  # undecodable bytes in $VAR
    ],
)
def test_redact_shows_nothing_of_a_url_that_does_not_parse(url):
    assert redact(url) == UNPARSABLE


def test_redact_keeps_the_output_on_one_line():
    assert redact("host=db.example.com\ndbname=imagen\x1b[2J") == (
        "host=db.example.com dbname=imagen?[2J"
    )


def test_connect_never_prints_the_drivers_parse_error():
    with pytest.raises(InputError) as caught:
        connect("postgresql://ann:hunt%ZZer2@db.example.com/imagen")
    assert caught.value.field is None
    assert str(caught.value) == f"the database URL is {NOT_A_URL}"


def test_connect_failure_names_the_server_without_its_password(tmp_path):
    url = f"postgresql://ann:hunter2@/imagen?host={tmp_path}"
    with pytest.raises(DatabaseError) as caught:
        connect(url, connect_timeout=5)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to postgresql://ann:***@/imagen?host={tmp_path}: ")
    assert "hunter2" not in message


def test_driver_error_text_is_scrubbed_of_the_urls_secrets():
    # What libpq says when a "/" in the password made it read part of it as the port.
    error = psycopg.OperationalError('invalid integer value "hunter" for connection option "port"')
    line = first_line(error, "postgresql://ann:hunter/two@db.example.com/imagen")
    assert line == 'invalid integer value "***" for connection option "port"'
    error = psycopg.OperationalError("bad conninfo: host=db password='hunter 2' port=1\nmore")
    assert describe(error) == "database error: bad conninfo: host=db password=*** port=1"


@pytest.mark.parametrize("variable", ["IMAGEN_DATABASE_URL", "MY_QUEUE_URL"])
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("not a url password=hunter2", NOT_A_URL),
        ("postgresql://ann:hunt%ZZer2@db.example.com/imagen", NOT_A_URL),
        ("postgresql://ann:hun/ter2@db.example.com/imagen", AMBIGUOUS),
        ("postgresql://ann:hun@ter2@db.example.com/imagen", AMBIGUOUS),
    ],
)
def test_resolve_refuses_a_malformed_url_in_the_variable(monkeypatch, variable, value, problem):
    monkeypatch.delenv("IMAGEN_DATABASE_URL", raising=False)
    monkeypatch.setenv(variable, value)
    database = DatabaseConfig(url_env="MY_QUEUE_URL")
    with pytest.raises(InputError) as caught:
        database.resolve()
    assert caught.value.field == f"${variable}"
    assert caught.value.message == problem


def test_resolve_accepts_every_valid_form(monkeypatch):
    for url in (
        "postgresql://ann:hun%2Fter2@db.example.com:5432/imagen?sslmode=require",
        "postgresql://db.example.com/imagen?user=ann@corp",
        "host=/run/postgresql dbname=imagen user=ann",
    ):
        conninfo_to_dict(url)  # libpq reads it
        monkeypatch.setenv("IMAGEN_DATABASE_URL", url)
        assert DatabaseConfig().resolve() == (url, "$IMAGEN_DATABASE_URL")
