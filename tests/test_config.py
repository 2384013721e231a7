"""Config loading: defaults, precedence and every error a user can hit."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagen_tui.backends import registry
from imagen_tui.config import SAMPLE_CONFIG, load_config, write_sample
from imagen_tui.core.workbench import open_workbench
from imagen_tui.errors import ConfigError, InputError


def error_of(home, text: str) -> str:
    path = home.write_config(text)
    with pytest.raises(ConfigError) as caught:
        open_workbench(path)
    return str(caught.value)


def test_no_file_gives_mock_backend_and_pictures_dir(home):
    workbench = open_workbench()
    config = workbench.config
    assert config.path is None
    assert config.default_backend == "mock"
    assert workbench.backend_blocks["mock"]["type"] == "mock"
    assert config.output.directory == home.pictures
    assert config.output.write_metadata_json is True


def test_file_location_precedence(home, tmp_path, monkeypatch):
    home.write_config("default_backend: mock\noutput: {directory: /from/default}\n")
    assert load_config().output.directory == Path("/from/default")

    xdg = tmp_path / "xdg"
    (xdg).mkdir()
    (xdg / "imagen.yaml").write_text("output: {directory: /from/xdg}\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert load_config().output.directory == Path("/from/xdg")

    env_file = tmp_path / "env.yaml"
    env_file.write_text("output: {directory: /from/env}\n")
    monkeypatch.setenv("IMAGEN_CONFIG", str(env_file))
    assert load_config().output.directory == Path("/from/env")

    flag_file = tmp_path / "flag.yaml"
    flag_file.write_text("output: {directory: /from/flag}\n")
    assert load_config(flag_file).output.directory == Path("/from/flag")


def test_named_file_must_exist(home, tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: file not found; create it with"):
        load_config(tmp_path / "missing.yaml")


def test_relative_output_directory_is_relative_to_the_file(home):
    path = home.write_config("output:\n  directory: shots\n")
    assert load_config(path).output.directory == path.parent / "shots"


def test_unknown_top_level_key_names_file_line_and_known_keys(home):
    message = error_of(home, "default_backend: mock\noutptu:\n  directory: /x\n")
    assert message.startswith(f"{home.config_path}:2: outptu: unknown key")
    assert "default_backend, output, styles, backends" in message


def test_unknown_output_key(home):
    message = error_of(home, "output:\n  naming: '{slug}'\n  dir: /x\n")
    assert message == (
        f"{home.config_path}:3: output.dir: unknown key; "
        "known keys here: directory, naming, series_naming, write_metadata_json"
    )


def test_wrong_type(home):
    message = error_of(home, "output:\n  write_metadata_json: sometimes\n")
    assert message == (
        f"{home.config_path}:2: output.write_metadata_json: expected true or false, got 'sometimes'"
    )


def test_unknown_backend_type_lists_known_types(home):
    message = error_of(home, "backends:\n  gpu:\n    type: fluxx\n")
    known = ", ".join(registry.known_types())
    assert "mock" in known and "replicate" in known and "openai" in known
    assert message == (
        f"{home.config_path}:3: backends.gpu.type: unknown backend type 'fluxx'; known types: "
        + known
    )


def test_backend_without_type(home):
    message = error_of(home, "backends:\n  gpu:\n    model: x\n")
    assert message.startswith(f"{home.config_path}:2: backends.gpu: missing `type:`")


def test_unknown_adapter_key_and_bad_adapter_value(home):
    message = error_of(home, "backends:\n  m:\n    type: mock\n    colour: red\n")
    assert message == (
        f"{home.config_path}:4: backends.m.colour: unknown key for a mock backend; "
        "known keys: delay_blocks, delay_ms, fail_if_prompt_contains, model"
    )
    message = error_of(home, "backends:\n  m:\n    type: mock\n    delay_ms: -5\n")
    assert message == f"{home.config_path}:4: backends.m.delay_ms: -5 is below the minimum 0"
    message = error_of(home, "backends:\n  m:\n    type: mock\n    delay_ms: soon\n")
    assert "backends.m.delay_ms: expected a whole number, got 'soon'" in message


def test_default_backend_must_name_an_instance(home):
    message = error_of(home, "default_backend: flux\n")
    assert message == (
        f"{home.config_path}:1: default_backend: 'flux' names no backend instance; use one of: mock"
    )


@pytest.mark.parametrize("key", ["api_token", "api_key", "token", "password", "service_key"])
@pytest.mark.parametrize(
    ("kind", "fix"),
    [
        ("mock", "remove it: a mock backend takes no secret"),
        ("comfyui", "put the value in an environment variable and set auth_env: VARIABLE_NAME"),
        (
            "replicate",
            "put the value in an environment variable and set api_token_env: VARIABLE_NAME",
        ),
        ("openai", "put the value in an environment variable and set api_key_env: VARIABLE_NAME"),
    ],
)
def test_inline_secret_is_refused_without_echoing_it(home, key, kind, fix):
    """The fix names the key this backend's type takes, never one it would reject."""
    message = error_of(home, f"backends:\n  r:\n    type: {kind}\n    {key}: s3cr3t-value\n")
    assert message == (
        f"{home.config_path}:4: backends.r.{key}: secrets must not be written in the "
        f"config file; {fix}"
    )


def test_secret_anywhere_in_the_file_is_refused(home):
    message = error_of(home, "output:\n  directory: /x\nstyles: {}\ntoken: abc\n")
    assert message.startswith(f"{home.config_path}:4: token: secrets must not be")


def test_duplicate_key(home):
    message = error_of(home, "output:\n  naming: '{slug}'\n  naming: '{seed}'\n")
    assert message == f"{home.config_path}:3: naming: appears twice in the same block; keep one"


def test_yaml_syntax_error_names_the_line(home):
    message = error_of(home, "output:\n  naming: '{slug}\n  directory: /x\n")
    assert message.startswith(f"{home.config_path}:")
    assert "not valid YAML" in message


def test_top_level_must_be_a_mapping(home):
    message = error_of(home, "- a\n- b\n")
    assert message.startswith(f"{home.config_path}:1: the top level must be a mapping")


def test_bad_naming_template_is_a_config_error(home):
    message = error_of(home, "output:\n  naming: '{date}/{colour}'\n")
    assert message.startswith(f"{home.config_path}:2: output.naming:")
    assert "colour" in message


def test_bad_user_style(home):
    message = error_of(home, "styles:\n  mine:\n    prompt: no placeholder here\n")
    assert message.startswith(f"{home.config_path}:3: styles.mine.prompt: must be a string")
    assert "{prompt}" in message
    message = error_of(home, "styles:\n  mine:\n    prompt: '{prompt}'\n    size: huge\n")
    assert message.startswith(f"{home.config_path}:4: styles.mine.size: 'huge' is not a size")


def test_sample_config_is_valid_and_init_refuses_to_overwrite(home):
    write_sample(home.config_path)
    assert home.config_path.read_text() == SAMPLE_CONFIG
    workbench = open_workbench(home.config_path)
    assert "my-poster" in workbench.styles
    home.config_path.write_text("default_backend: mock\n")
    with pytest.raises(InputError, match="already exists; pass --force"):
        write_sample(home.config_path)
    assert home.config_path.read_text() == "default_backend: mock\n"
    write_sample(home.config_path, force=True)
    assert home.config_path.read_text() == SAMPLE_CONFIG


def test_secret_outside_backends_gets_a_fix_that_exists(home):
    message = error_of(home, "database:\n  password: hunter2\n")
    assert message.startswith(f"{home.config_path}:2: database.password: secrets must not be")
    assert "IMAGEN_DATABASE_URL" in message
    assert "password_env" not in message and "hunter2" not in message


def test_url_env_naming_an_unset_variable_is_reported_by_check(home, monkeypatch):
    monkeypatch.delenv("NO_SUCH_DB_URL", raising=False)
    path = home.write_config("database:\n  url_env: NO_SUCH_DB_URL\n")
    config = open_workbench(path).config
    with pytest.raises(ConfigError) as caught:
        config.database.resolve()
    assert str(caught.value).startswith(
        f"{path}:2: database.url_env: the variable NO_SUCH_DB_URL is not set"
    )


def test_output_directory_expands_set_variables(home, monkeypatch):
    monkeypatch.setenv("SHOTS", "/data/shots")
    path = home.write_config("output:\n  directory: $SHOTS/${SHOTS}x/a$/b$5\n")
    assert load_config(path).output.directory == Path("/data/shots/data/shotsx/a$/b$5")


@pytest.mark.parametrize("text", ["$UNSET_VAR/x", "${UNSET_VAR}/x", "/x/pre${UNSET_VAR}"])
def test_output_directory_with_an_unset_variable_names_it(home, monkeypatch, text):
    monkeypatch.delenv("UNSET_VAR", raising=False)
    message = error_of(home, f"styles: {{}}\noutput:\n  directory: {text}\n")
    assert message == (
        f"{home.config_path}:3: output.directory: $UNSET_VAR is not set; "
        "export it, or write the path without it"
    )


def test_output_directory_with_an_empty_variable_names_it(home, monkeypatch):
    # Empty is refused too: `$SHOTS/x` would silently become `/x`.
    monkeypatch.setenv("EMPTY_VAR", "")
    message = error_of(home, "output:\n  directory: $EMPTY_VAR/x\n")
    assert message == (
        f"{home.config_path}:2: output.directory: $EMPTY_VAR is empty; "
        "give it a value, or write the path without it"
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("/x/${UNCLOSED", '"${" has no closing "}"'),
        ("/x/${}", "${} is not a variable name"),
        ("/x/${1ST}", "${1ST} is not a variable name"),
    ],
)
def test_output_directory_with_a_broken_variable_reference(home, text, problem):
    message = error_of(home, f"output:\n  directory: '{text}'\n")
    assert message == f"{home.config_path}:2: output.directory: {problem}; write $NAME or ${{NAME}}"


def test_unset_variable_fails_check_and_generate_writes_nothing(home):
    home.env.pop("UNSET_VAR", None)
    home.write_config("output:\n  directory: $UNSET_VAR/x\n")
    for command in (["config", "check"], ["generate", "a fox", "--size", "64x64"]):
        done = home.imagen(*command)
        assert done.returncode == 2, command
        assert done.stdout == ""
        assert done.stderr.strip() == (
            f"imagen: {home.config_path}:2: output.directory: $UNSET_VAR is not set; "
            "export it, or write the path without it"
        )
    assert sorted(home.root.rglob("*")) == [home.config_path.parent, home.config_path]


DB_PASSWORD_REFUSED = (
    "database.url: the URL holds a password; secrets must not be written in the config file: "
    "put the URL in $IMAGEN_DATABASE_URL, or in another variable named by database.url_env"
)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:hunter2@db/imagen",
        "postgresql://app:hun/ter2@db/imagen",
        "postgresql://app:hun@ter2@db/imagen",
        "postgresql://app@db/imagen?pass%77ord=hunter2",
        "postgresql://app@db/imagen?sslpassword=hunter2",
        "host=db password='hunter 2'",
        # malformed, and with a password: refused as holding one
        "host=db password=hunter2 dbname='unclosed",
        "postgresql://app:hunt%ZZer2@db/imagen",
    ],
)
def test_database_url_holding_a_password_in_any_form_is_refused(home, url):
    message = error_of(home, f'database:\n  url: "{url}"\n')
    assert message == f"{home.config_path}:2: {DB_PASSWORD_REFUSED}"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url at all", "not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DBNAME"),
        ("host=db colour=blue", "not a PostgreSQL URL; write postgresql://USER@HOST:PORT/DBNAME"),
        (
            "postgresql://app@corp@db/imagen",
            'its user name or password holds a "/" or "@"; '
            'percent-encode it ("/" is %2F, "@" is %40)',
        ),
    ],
)
def test_malformed_database_url_is_a_config_error_without_echoing_it(home, url, problem):
    message = error_of(home, f'styles: {{}}\ndatabase:\n  url: "{url}"\n')
    assert message == f"{home.config_path}:3: database.url: {problem}"


def test_database_url_of_the_wrong_type_is_not_echoed(home):
    message = error_of(home, "database:\n  url: [postgresql://app:hunter2@db/imagen]\n")
    assert message == f"{home.config_path}:2: database.url: expected a PostgreSQL URL, got a list"


@pytest.mark.parametrize(
    "value", ["postgresql://app:hunter2@db/imagen", "hunter2 hunter2", "[hunter2]"]
)
def test_url_env_that_is_no_variable_name_is_not_echoed(home, value):
    message = error_of(home, f"database:\n  url_env: {value}\n")
    assert message == (
        f"{home.config_path}:2: database.url_env: not an environment variable name; "
        "name the variable that holds the URL, e.g. url_env: IMAGEN_QUEUE_URL"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("123456", "123456"),
        ("98765.4", "98765.4"),
        ("0", None),
        ("true", None),
        ("[s3cr3t-a, s3cr3t-b]", "s3cr3t"),
        ("{value: s3cr3t-c}", "s3cr3t"),
        ("\n      nested: s3cr3t-d", "s3cr3t"),
    ],
    ids=["int", "float", "zero", "bool", "list", "flow-mapping", "block-mapping"],
)
@pytest.mark.parametrize("key", ["password", "api_token", "service_key"])
def test_inline_secret_of_any_type_is_refused_without_echoing_it(home, key, value, shown):
    message = error_of(home, f"backends:\n  r:\n    type: replicate\n    {key}: {value}\n")
    assert message == (
        f"{home.config_path}:4: backends.r.{key}: secrets must not be written in the config "
        "file; put the value in an environment variable and set api_token_env: VARIABLE_NAME"
    )
    if shown:
        assert shown not in message


def test_inline_secret_inside_a_list_is_refused_without_echoing_it(home):
    # Found before the style check, which would quote the whole list back.
    message = error_of(home, "styles:\n  mine:\n    - prompt: '{prompt}'\n      token: s3cr3t\n")
    assert message == (
        f"{home.config_path}:4: styles.mine.token: secrets must not be written in the config "
        "file; remove it and keep the secret in an environment variable"
    )


ORIGINAL_NAMES = {"replicate": "api_token_env", "openai": "api_key_env"}


@pytest.mark.parametrize("kind", sorted(ORIGINAL_NAMES))
def test_the_original_imagen_key_names_credentials_and_token_env_is_an_alias(home, kind):
    """The original ImaGen's `api_token_env`/`api_key_env` work as written there;
    `token_env` (this project's first name) is accepted too, never both at once."""
    original = ORIGINAL_NAMES[kind]
    block = f"backends:\n  c:\n    type: {kind}\n    model: some/model\n"
    for key in (original, "token_env"):
        home.write_config(block + f"    {key}: MY_CLOUD_KEY\n")
        workbench = open_workbench(home.config_path)
        assert registry.missing_env(workbench.backend_blocks["c"]) == ["MY_CLOUD_KEY"]
        backend = workbench.backend("c")
        assert backend.http.token_env == "MY_CLOUD_KEY"  # type: ignore[attr-defined]  # a cloud one
    message = error_of(home, block + f"    {original}: A_KEY\n    token_env: B_KEY\n")
    assert message == (
        f"{home.config_path}:6: backends.c.token_env: the same setting as {original} "
        "(another name for it); keep one of the two"
    )
    message = error_of(home, block + "    token_env: not a name\n")
    assert message.startswith(f"{home.config_path}:5: backends.c.token_env: not an environment")


@pytest.mark.parametrize("kind", sorted(ORIGINAL_NAMES))
def test_the_default_credential_key_is_the_original_name(home, kind):
    home.write_config(f"backends:\n  c:\n    type: {kind}\n    model: some/model\n")
    block = open_workbench(home.config_path).backend_blocks["c"]
    assert ORIGINAL_NAMES[kind] in block and "token_env" not in block
    message = error_of(home, f"backends:\n  c:\n    type: {kind}\n    colour: red\n")
    known = message.split("known keys: ")[1].split(", ")
    assert ORIGINAL_NAMES[kind] in known and "token_env" not in known


def test_config_show_names_the_credential_key_as_the_file_writes_it(home):
    home.write_config(
        "backends:\n  old:\n    type: replicate\n    token_env: OLD_TOKEN\n"
        "  new:\n    type: openai\n    model: gpt-image-2\n"
    )
    done = home.imagen("config", "show")
    assert done.returncode == 0, done.stderr
    lines = [" ".join(line.split()) for line in done.stdout.splitlines()]
    assert f"backends.old.token_env = OLD_TOKEN # {home.config_path}:4" in lines
    assert not any(line.startswith("backends.old.api_token_env") for line in lines)
    assert "backends.new.api_key_env = OPENAI_API_KEY # default of type openai" in lines


def test_sample_config_names_credentials_as_the_original_imagen():
    assert "#   api_token_env: REPLICATE_API_TOKEN" in SAMPLE_CONFIG
    assert "#   api_key_env: OPENAI_API_KEY" in SAMPLE_CONFIG
    assert "token_env" not in SAMPLE_CONFIG.replace("api_token_env", "")


def test_a_config_path_naming_a_directory_is_one_line_and_exit_2(home, tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    for args, origin in (
        (["generate", "x"], "$IMAGEN_CONFIG"),
        (["--config", str(folder), "generate", "x"], "--config"),
    ):
        home.env["IMAGEN_CONFIG"] = str(folder)
        done = home.imagen(*args)
        assert done.returncode == 2
        assert done.stderr == (
            f"imagen: {folder}: {origin} names a directory; name the config file, "
            f"e.g. {folder / 'imagen.yaml'}\n"
        )
        assert home.files() == []
    home.env.pop("IMAGEN_CONFIG")
    home.config_path.mkdir(parents=True)  # the default path, a directory
    done = home.imagen("generate", "x")
    assert done.returncode == 2 and "Errno" not in done.stderr
    assert done.stderr.startswith(f"imagen: {home.config_path}: the default path names a directory")


def test_an_unreadable_config_file_says_why_without_errno(home, tmp_path):
    path = tmp_path / "broken.yaml"
    path.symlink_to(path)  # a loop: reading fails with ELOOP, whoever runs the test
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: cannot read the file (Too many levels of symbolic links)"
