"""The `imagen` command as scripts and people use it: through a subprocess."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from PIL import Image

from imagen_tui import cli
from imagen_tui.config import SAMPLE_CONFIG
from tests.conftest import IMAGEN, Home
from tests.terminal import HOSTILE, SHOWN, raw_controls

SUMMARY_RE = re.compile(
    r"^mock \(mock-v1\) seed (\d+), (\d+)x(\d+), (\d+) steps, (\d+) ms, \$0\.0000$"
)


def test_generate_prints_only_the_path_of_a_real_png(home):
    done = home.imagen("generate", "a lighthouse at dusk", "--seed", "42", "--size", "512x512")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    path = Path(lines[0])
    assert path.is_absolute()
    assert path.is_relative_to(home.pictures)  # built-in default: ~/Pictures/imagen
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (512, 512)
    summary = done.stderr.strip().splitlines()
    assert len(summary) == 1
    match = SUMMARY_RE.match(summary[0])
    assert match, summary
    assert match.group(1) == "42"
    assert match.group(2, 3) == ("512", "512")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["seed"] == 42
    assert sidecar["prompt"] == "a lighthouse at dusk"


def test_same_seed_gives_same_pixels_different_seed_does_not(home):
    def pixels(seed: str) -> bytes:
        done = home.imagen("generate", "a red fox", "--seed", seed, "--size", "256x256")
        assert done.returncode == 0, done.stderr
        with Image.open(done.stdout.strip()) as image:
            return image.tobytes()

    first = pixels("7")
    assert pixels("7") == first
    assert pixels("8") != first


def test_count_gives_one_image_per_try_with_consecutive_seeds(home):
    done = home.imagen(
        "generate", "a red fox", "--count", "3", "--seed", "100", "--size", "128x128"
    )
    assert done.returncode == 0, done.stderr
    paths = [Path(line) for line in done.stdout.splitlines()]
    assert len(paths) == 3 == len(set(paths))
    seeds = [json.loads(p.with_suffix(".json").read_text())["seed"] for p in paths]
    assert seeds == [100, 101, 102]
    assert [json.loads(p.with_suffix(".json").read_text())["idx"] for p in paths] == [1, 2, 3]
    # stderr is not a terminal here: summaries, no progress bar escape codes
    assert len(done.stderr.strip().splitlines()) == 3
    assert "\x1b[" not in done.stderr


def test_count_without_seed_gives_distinct_random_seeds(home):
    done = home.imagen("generate", "a red fox", "--count", "3", "--size", "64x64", "--json")
    assert done.returncode == 0, done.stderr
    seeds = {json.loads(line)["seed"] for line in done.stdout.splitlines()}
    assert len(seeds) == 3


def test_json_output(home, tmp_path):
    out = tmp_path / "out"
    done = home.imagen(
        "generate", "a cat in a fishbowl", "--style", "blog-header", "--seed", "1",
        "--out", str(out), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    record = json.loads(line)
    assert Path(record["path"]).parent.parent == out  # {date}/ subfolder
    assert record["size"] == "1536x640"  # the preset's default size
    assert record["style"] == "blog-header"
    assert record["prompt_styled"].startswith("a cat in a fishbowl, wide editorial header")
    assert Path(record["sidecar"]).is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "--style", "nope"], "--style: unknown style 'nope'; known styles: "),
        (["x", "--size", "12x12"], "argument --size: 12x12 is out of range"),
        (["x", "--size", "big"], "argument --size: 'big' is not a size"),
        (["x", "--count", "11"], "argument --count: 11 is out of range; use 1 to 10"),
        (["x", "--steps", "0"], "argument --steps: 0 is out of range"),
        (["x", "--seed", "-1"], "argument --seed: -1 is out of range"),
        (["x", "--backend", "gpu"], "--backend: no backend named 'gpu'; configured: mock"),
        (["   "], "PROMPT: the prompt is empty"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(home, args, message):
    done = home.imagen("generate", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert message in done.stderr
    assert home.files() == []


MAX_SEED = 2**63 - 1


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["x", "--seed", str(MAX_SEED), "--count", "2"],
            f"imagen: --seed: {MAX_SEED} leaves no room for 2 tries (the last would be "
            f"{MAX_SEED + 1}); use a seed of at most {MAX_SEED - 1}",
        ),
        (
            ["x", "--seed", str(MAX_SEED - 1), "--count", "3"],
            f"imagen: --seed: {MAX_SEED - 1} leaves no room for 3 tries (the last would be "
            f"{MAX_SEED + 1}); use a seed of at most {MAX_SEED - 2}",
        ),
        # /proc takes no new files, even from root (access checks would say yes).
        (
            ["x", "--out", "/proc"],
            "imagen: --out: cannot write in /proc (No such file or directory); "
            "choose a directory you can write to",
        ),
        (
            ["x", "--out", ""],
            "imagen: --out: is empty; name a directory, or leave it out for output.directory",
        ),
    ],
    ids=["seed-past-max", "seed-near-max", "out-proc", "out-empty"],
)
def test_generate_refuses_with_one_line_naming_the_flag_and_the_fix(home, args, line):
    done = home.imagen("generate", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [line]
    assert home.files() == []


def test_generate_accepts_the_largest_seed_that_fits(home):
    done = home.imagen(
        "generate", "x", "--seed", str(MAX_SEED - 1), "--count", "2", "--size", "64x64", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["seed"] for line in done.stdout.splitlines()] == [
        MAX_SEED - 1,
        MAX_SEED,
    ]


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--poll-interval", "nan"],
            "argument --poll-interval: nan is out of range; use 0.1 to 3600",
        ),
        (["--poll-interval", "0"], "argument --poll-interval: 0 is out of range; use 0.1 to 3600"),
        (["--lease", "inf"], "argument --lease: inf is out of range; use 1 to 86400"),
        (["--lease", "1e308"], "argument --lease: 1e308 is out of range; use 1 to 86400"),
        (["--lease", "soon"], "argument --lease: 'soon' is not a number of seconds"),
    ],
    ids=["poll-nan", "poll-zero", "lease-inf", "lease-1e308", "lease-word"],
)
def test_worker_refuses_bad_numbers_before_touching_the_database(home, args, line):
    done = home.imagen("worker", *args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"imagen worker: error: {line} (see imagen worker --help)"]
    assert home.files() == []  # no embedded database was created or started


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "x", HOSTILE],  # argparse: unrecognized arguments
        ["generate", "x", "--style", HOSTILE],
        ["generate", "x", "--size", HOSTILE],
        ["generate", "x", "--seed", HOSTILE],
        ["generate", "x", "--config", f"/nonexistent/{HOSTILE}.yaml"],
        ["jobs", "--status", HOSTILE],
        [HOSTILE],
    ],
    ids=["extra-argument", "style", "size", "seed", "config", "status", "command"],
)
def test_error_lines_show_user_text_literally(home, args):
    done = home.imagen(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert raw_controls(line) == []
    assert SHOWN in line


def test_generate_json_escapes_control_characters_and_decodes_to_the_prompt(home):
    done = home.imagen("generate", HOSTILE, "--negative", HOSTILE, "--size", "64x64", "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert raw_controls(line) == []
    record = json.loads(line)
    assert record["prompt"] == HOSTILE
    assert record["negative_prompt"] == HOSTILE
    assert raw_controls(done.stderr) == []
    plain = home.imagen("generate", HOSTILE, "--size", "64x64")
    assert plain.returncode == 0, plain.stderr
    assert raw_controls(plain.stdout + plain.stderr) == []
    assert Path(plain.stdout.strip()).is_file()


def test_out_pointing_at_a_file_is_refused(home):
    target = home.root / "taken"
    target.write_text("not a directory")
    done = home.imagen("generate", "x", "--out", str(target / "sub"))
    assert done.returncode == 2
    assert f"--out: {target} is a file, not a directory" in done.stderr
    assert home.files() == [target]


def test_a_date_folder_taken_by_a_file_is_named_in_the_error(home):
    out = home.root / "out"
    out.mkdir()
    # The date folder's path holds a regular file (for today and, should the run
    # cross midnight, tomorrow).
    today = datetime.date.today()
    blockers = [out / str(day) for day in (today, today + datetime.timedelta(days=1))]
    for blocker in blockers:
        blocker.write_text("a file, not a folder")
    done = home.imagen("generate", "x", "--size", "64x64", "--out", str(out))
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line in {
        f"imagen: --out: cannot write in {b} (Not a directory); make it writable or choose "
        "another directory"
        for b in blockers
    }
    assert home.files() == blockers  # untouched, and nothing else written
    assert all(b.read_text() == "a file, not a folder" for b in blockers)


@contextlib.contextmanager
def unwritable(folders: list[Path]) -> Iterator[None]:
    """`folders` refuse new files: read-only modes, or as root (who ignores modes)
    the immutable attribute."""
    as_root = os.geteuid() == 0
    for folder in folders:
        if as_root:
            subprocess.run(["chattr", "+i", str(folder)], check=True)
        else:
            folder.chmod(0o555)
    try:
        yield
    finally:
        for folder in folders:
            if as_root:
                subprocess.run(["chattr", "-i", str(folder)], check=True)
            else:
                folder.chmod(0o755)


def test_a_date_folder_that_cannot_be_written_is_named_with_exit_2(home):
    out = home.root / "out"
    today = datetime.date.today()
    folders = [out / str(day) for day in (today, today + datetime.timedelta(days=1))]
    for folder in folders:
        folder.mkdir(parents=True)
    with unwritable(folders):
        done = home.imagen("generate", "x", "--size", "64x64", "--out", str(out))
        listed = sorted(out.rglob("*"))
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    reasons = ("Permission denied", "Operation not permitted")
    assert line in {
        f"imagen: --out: cannot write in {folder} ({reason}); make it writable or choose "
        "another directory"
        for folder in folders
        for reason in reasons
    }
    assert ".part" not in line
    assert listed == folders  # nothing written, no hidden temp file left


def imported_modules(home, *args: str) -> set[str]:
    """The top-level packages the real `imagen` process imports for `args`."""
    return {name.split(".")[0] for name in imported(home, *args)}


# `imagen` itself, then the names of the modules it loaded (sys.modules: -X importtime
# misses importlib.import_module, which the CLI uses to build one command's parser).
_LIST_MODULES = (
    "import sys\n"
    "from imagen_tui.cli import main\n"
    "try:\n"
    "    sys.exit(main())\n"
    "finally:  # --help exits from inside main\n"
    "    print('modules:', *sorted(sys.modules), file=sys.stderr)\n"
)


def imported(home, *args: str) -> set[str]:
    """Every module the real `imagen` process imports for `args`."""
    done = subprocess.run(
        [sys.executable, "-c", _LIST_MODULES, *args],
        # XDG_DATA_HOME too: as root, a machine's embedded server in /var/lib/imagen
        # would otherwise be found and the ledger would load the driver to use it.
        env={**home.env, "XDG_DATA_HOME": str(home.root / ".local" / "share")},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    listed = [line for line in done.stderr.splitlines() if line.startswith("modules: ")]
    modules = set(listed[-1].split()[1:]) if listed else set()
    assert "imagen_tui.cli" in modules  # the list is really there
    return modules


@pytest.mark.parametrize("args", [["--help"], ["generate", "--help"]], ids=" ".join)
def test_help_loads_neither_pillow_nor_the_database_driver(home, args):
    modules = imported_modules(home, *args)
    assert "PIL" not in modules
    assert "psycopg" not in modules


def test_generate_does_not_load_the_database_driver(home):
    # With no embedded server of this user's running: as root the default one
    # lives in /var/lib/imagen, which another program here may have started.
    home.env["XDG_DATA_HOME"] = str(home.root / ".local" / "share")
    modules = imported_modules(home, "generate", "x", "--size", "64x64")
    assert "PIL" in modules  # the mock backend draws with Pillow: the check can see imports
    assert "psycopg" not in modules
    # The mock renders in the main thread: no event loop, a third of the start-up.
    assert "asyncio" not in modules
    # Its records are NamedTuples: defining a dataclass compiles code (docs/architecture.md).
    assert "dataclasses" not in modules


def test_generate_with_a_delay_runs_on_the_event_loop(home):
    home.write_config("backends:\n  mock:\n    type: mock\n    delay_ms: 20\n")
    modules = imported_modules(home, "generate", "x", "--size", "64x64")
    assert "asyncio" in modules  # the simulated wait is the loop's, as a remote GPU's is


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str], *, words: list[str]) -> str:
    """What `imagen WORDS` prints, parsed by `cli.build_parser(argv)`."""
    with pytest.raises(SystemExit):
        cli.build_parser(argv).parse_args(words)
    return capsys.readouterr().out


@pytest.mark.parametrize("command", sorted(cli.COMMAND_GROUPS))
def test_a_command_alone_parses_as_in_the_whole_tree(command, capsys):
    # `imagen COMMAND ...` builds only COMMAND's module: same help, same parse.
    words = [command, "--help"]
    assert help_of(words, capsys, words=words) == help_of([], capsys, words=words)
    top = ["--help"]
    assert f"    {command} " in help_of(top, capsys, words=top)  # listed by `imagen --help`


def test_every_command_has_its_module(capsys):
    # The whole tree's commands, as an unknown command's error lists them.
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["no-such-command"])
    choices = capsys.readouterr().err.split("choose from", 1)[1]
    assert set(re.findall(r"'([a-z]+)'", choices)) == set(cli.COMMAND_GROUPS)


def test_generate_on_the_mock_loads_only_what_it_uses(home):
    modules = imported(home, "generate", "x", "--size", "64x64")
    # Only the generate command's parser is built: no other command's module.
    assert "imagen_tui.cli.generate" in modules
    assert "imagen_tui.cli.queue" not in modules
    assert "PIL.PngImagePlugin" in modules  # the check can see imports
    # Pillow's other format plugins (loaded by Image.save(format=...)) are not needed.
    assert "PIL.JpegImagePlugin" not in modules
    # No config file and no style: no YAML is read (the shipped presets load on use).
    assert "yaml" not in modules
    assert "httpx" not in modules  # the mock is local: no HTTP client
    # No database to record in: the ledger's row builder is not loaded either.
    assert "imagen_tui.core.ledger" not in modules


def test_a_style_still_reads_the_shipped_presets(home):
    modules = imported(home, "generate", "x", "--size", "64x64", "--style", "watercolor")
    assert "yaml" in modules


def test_bad_config_exits_2_and_names_the_file(home):
    home.write_config("backends:\n  r:\n    type: mock\n    api_token: abc123\n")
    done = home.imagen("generate", "x")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"imagen: {home.config_path}:4: backends.r.api_token: secrets must not be written in "
        "the config file; remove it: a mock backend takes no secret"
    )
    assert home.files() == []


def test_generation_failure_exits_1_with_one_line_and_writes_nothing(home):
    home.write_config(
        "backends:\n  flaky:\n    type: mock\n    fail_if_prompt_contains: storm\n"
        "default_backend: flaky\n"
    )
    done = home.imagen("generate", "a storm at sea", "--size", "64x64")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "imagen: mock backend: prompt contains 'storm' (fail_if_prompt_contains)"
    ]
    assert home.files() == []


class LineReader:
    """A child's stdout read line by line in a thread, so a test can wait for a
    line to appear (with a deadline) while the child keeps running."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no line on stdout within {timeout:g} s")

    def rest(self) -> list[str]:
        self._thread.join(timeout=30)
        return list(self.lines.queue)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_keeps_finished_images_and_leaves_nothing_partial(home, signum):
    # Each image takes 3 s of simulated GPU time (on the event loop). The signal is
    # sent as soon as the first image's path is printed, so it lands while the
    # second one is being made (never before the first is finished: the test
    # waits for it).
    out = home.root / "out"
    home.write_config(
        f"output:\n  directory: {out}\nbackends:\n  mock:\n    type: mock\n    delay_ms: 3000\n"
    )
    paths, stderr = _interrupted(home, signum, "--count", "2", "--size", "64x64")
    assert len(paths) == 1  # no second path
    summary, last = stderr.splitlines()  # the first image's summary, then why it stopped
    assert SUMMARY_RE.match(summary), summary
    assert last == "imagen: interrupted; nothing partial was written"
    (first,) = paths
    with Image.open(first) as image:
        assert image.size == (64, 64)
    sidecar = first.with_suffix(".json")
    assert json.loads(sidecar.read_text())["idx"] == 1
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted([first, sidecar])
    assert home.files() == sorted([first, sidecar])  # no .part file, no second image


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_without_an_event_loop_keeps_every_printed_image_whole(home, signum):
    # The instant mock renders in the main thread, no event loop: the signal
    # lands somewhere in a run of ten large images, each about 0.1 s of drawing
    # and writing. Every path printed is a whole image with its sidecar, and
    # nothing else is left: no temp file, no image whose path was not printed.
    out = home.root / "out"
    home.write_config(f"output:\n  directory: {out}\n")
    paths, stderr = _interrupted(home, signum, "--count", "10", "--size", "2048x2048")
    assert 1 <= len(paths) < 10
    lines = stderr.splitlines()
    assert lines[-1] == "imagen: interrupted; nothing partial was written"
    assert len(lines) == len(paths) + 1  # one summary per printed image, none cut short
    assert all(SUMMARY_RE.match(line) for line in lines[:-1]), lines
    for path in paths:
        with Image.open(path) as image:
            image.load()  # whole, not truncated
    expected = sorted([*paths, *(path.with_suffix(".json") for path in paths)])
    assert home.files() == expected


def _interrupted(home: Home, signum: int, *args: str) -> tuple[list[Path], str]:
    """Run `imagen generate` until it prints its first path, send `signum`; the
    paths it printed and its stderr, once it exited 130."""
    process = subprocess.Popen(
        [str(IMAGEN), "generate", "slow", *args],
        env=home.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        reader = LineReader(process.stdout)
        first = Path(reader.next_line(timeout=60))
        process.send_signal(signum)
        stderr = process.stderr.read()
        assert process.wait(timeout=30) == 130, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return [first, *(Path(line) for line in reader.rest())], stderr


def test_styles_lists_every_preset_with_its_text(home):
    done = home.imagen("styles")
    assert done.returncode == 0
    assert "blog-header  (1536x640)" in done.stdout
    assert "prompt:   {prompt}, loose watercolor painting" in done.stdout


def test_backends_lists_instances_with_default_and_status(home):
    home.write_config(
        "default_backend: slow\nbackends:\n  slow:\n    type: mock\n    model: tortoise\n"
    )
    done = home.imagen("backends")
    assert done.returncode == 0
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0] == ["NAME", "TYPE", "MODEL", "DEFAULT", "STATUS"]
    assert ["mock", "mock", "mock-v1", "ok"] in rows
    assert ["slow", "mock", "tortoise", "*", "ok"] in rows


def test_config_init_show_check(home):
    done = home.imagen("config", "init")
    assert done.returncode == 0
    assert done.stdout.strip() == str(home.config_path)
    assert home.config_path.is_file()

    again = home.imagen("config", "init")
    assert again.returncode == 2
    assert "already exists; pass --force" in again.stderr

    check = home.imagen("config", "check")
    assert check.returncode == 0
    assert check.stdout.startswith(f"ok: {home.config_path}")

    show = home.imagen("config", "show")
    assert show.returncode == 0
    lines = show.stdout.splitlines()
    naming = next(line for line in lines if line.startswith("output.naming ="))
    naming_line = SAMPLE_CONFIG.splitlines().index('  naming: "{date}/{time}_{slug}_{seed}"') + 1
    assert naming.endswith(f"# {home.config_path}:{naming_line}")
    directory = next(line for line in lines if line.startswith("output.directory ="))
    assert directory.endswith("# built-in default")
    assert any(line.startswith("styles.my-poster.prompt =") for line in lines)


def test_config_flag_after_the_command(home, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("default_backend: nope\n")
    done = home.imagen("generate", "x", "--config", str(other))
    assert done.returncode == 2
    assert f"{other}:1: default_backend: 'nope' names no backend instance" in done.stderr


def test_png_carries_parameters_other_tools_read_and_full_json(home):
    done = home.imagen(
        "generate", "a red fox", "--seed", "42", "--size", "512x512",
        "--style", "watercolor", "--negative", "dogs",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    with Image.open(path) as image:
        parameters = image.info["parameters"]
        embedded = json.loads(image.info["imagen"])
    styled, negative, settings = parameters.split("\n")
    assert styled.startswith("a red fox, loose watercolor painting")
    assert negative.startswith("Negative prompt: photo, hard edges") and negative.endswith("dogs")
    assert settings == (
        "Steps: 20, Seed: 42, Size: 512x512, Model: mock-v1, Backend: mock, Style: watercolor"
    )
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar == embedded  # exactly the PNG's `imagen` JSON (README says so)
    for key in (
        "prompt", "prompt_styled", "negative_prompt", "style", "seed", "size", "steps",
        "backend", "backend_type", "model", "latency_ms", "cost_usd", "created_at",
        "imagen_version",
    ):  # fmt: skip
        assert key in sidecar, key
    assert sidecar["backend_type"] == "mock"


def test_metadata_json_can_be_switched_off(home):
    home.write_config("output:\n  write_metadata_json: false\n")
    done = home.imagen("generate", "x", "--size", "64x64")
    assert done.returncode == 0, done.stderr
    assert home.files() == [Path(done.stdout.strip())]


@pytest.mark.parametrize(
    "backend",
    ["", "    delay_ms: 200\n"],  # instant; steps, each with a preview (as ComfyUI sends)
    ids=["instant", "with-previews"],
)
def test_progress_bar_on_a_terminal_and_paths_still_clean(home, backend):
    import os
    import pty

    home.write_config(f"backends:\n  mock:\n    type: mock\n{backend}")
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(IMAGEN), "generate", "x", "--count", "3", "--size", "64x64"],
            env={**home.env, "TERM": "xterm-256color", "COLUMNS": "100"},
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
        )
        os.close(follower)
        stdout, _ = process.communicate(timeout=60)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed when the process ended
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(leader)
    text = terminal.decode(errors="replace")
    assert process.returncode == 0, text
    assert len(stdout.splitlines()) == 3
    assert all(Path(line).is_file() for line in stdout.splitlines())
    assert "generating" in text  # the progress bar's label
    assert text.count("mock (mock-v1) seed") == 3


def test_config_show_names_the_database_without_its_password(home):
    done = home.imagen("config", "show")
    line = next(x for x in done.stdout.splitlines() if x.startswith("database ="))
    assert "embedded (" in line and line.endswith("# built-in default")
    home.env["IMAGEN_DATABASE_URL"] = "postgresql://app:hunter2@db.example:5432/imagen"
    done = home.imagen("config", "show")
    line = next(x for x in done.stdout.splitlines() if x.startswith("database ="))
    assert "hunter2" not in done.stdout + done.stderr
    assert line.startswith("database = postgresql://app:***@db.example:5432/imagen")
    assert line.endswith("# $IMAGEN_DATABASE_URL")


def test_database_url_with_a_password_in_the_file_is_refused(home):
    home.write_config("database:\n  url: postgresql://app:hunter2@db/imagen\n")
    done = home.imagen("config", "check")
    assert done.returncode == 2
    assert "database.url: the URL holds a password" in done.stderr
    assert "hunter2" not in done.stderr


def test_embedded_server_that_cannot_start_gives_one_clean_line(home):
    blocker = home.root / "not-a-dir"
    blocker.write_text("a file where the data directory should go")
    home.env["XDG_DATA_HOME"] = str(blocker)
    done = home.imagen("jobs")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("imagen: the embedded PostgreSQL in ")
    assert "IMAGEN_DATABASE_URL" in line


@pytest.mark.parametrize(
    "command",
    [
        ["jobs"],
        ["submit", "a fox"],
        ["db", "status"],
        ["db", "migrate"],
        ["config", "check"],
        ["config", "show"],
    ],
    ids=" ".join,
)
def test_malformed_database_url_is_one_line_naming_the_variable(home, command):
    home.env["IMAGEN_DATABASE_URL"] = "not a url password=hunter2"
    done = home.imagen(*command)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip() == (
        "imagen: $IMAGEN_DATABASE_URL: not a PostgreSQL URL; "
        "write postgresql://USER@HOST:PORT/DBNAME"
    )
    assert home.files() == []


def test_output_cut_short_by_the_reader_is_not_an_error(home):
    import os

    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before imagen writes a byte, as with `| head -0`
    try:
        done = subprocess.run(
            [str(IMAGEN), "styles"], env=home.env, stdout=writer, stderr=subprocess.PIPE,
            timeout=30,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert done.stderr == b""
    assert done.returncode == 0


def test_submit_with_a_blank_prompt_exits_2_and_queues_nothing(home, db_url):
    import psycopg

    home.env["IMAGEN_DATABASE_URL"] = db_url
    done = home.imagen("submit", " \t ", "--count", "3")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "PROMPT: the prompt is empty" in done.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM imagen.series").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM imagen.jobs").fetchone() == (0,)


def test_a_stop_during_a_finished_images_line_and_ledger_row_waits_for_them():
    from imagen_tui.cli.generate import _Stops

    stops = _Stops()
    finished = []
    with pytest.raises(KeyboardInterrupt), stops.held():
        stops(signal.SIGTERM, None)  # lands while the image's line is printed
        finished.append("line and ledger row")
    assert finished == ["line and ledger row"]  # then it stops
    with pytest.raises(KeyboardInterrupt):
        stops(signal.SIGINT, None)  # anywhere else: at once
