"""Cloud storage: Supabase Storage uploads (a scripted fake behind
httpx.MockTransport, and a real local HTTP server for the worker), retries,
and the object URI on the images row."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import ClassVar

import httpx
import psycopg
import pytest

from imagen_tui.backends.http import HttpError
from imagen_tui.core.workbench import Workbench, open_workbench
from imagen_tui.db.queue import PgQueue
from imagen_tui.db.repositories import fetch, jobs_page
from imagen_tui.errors import ConfigError
from imagen_tui.jobs.worker import Worker, WorkerOptions, new_worker_id
from imagen_tui.storage import LocalStorage, Upload, check_storage_block
from imagen_tui.storage.supabase import SupabaseStorage
from tests.cloudfakes import Clock, JsonHandler, Server, png, reply, serving
from tests.conftest import Home
from tests.helpers import sql

KEY = "sb_secret_N3wStyleS3cretKeyValue"
JWT_KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl"
KEY_ENV = "IMAGEN_TEST_SUPABASE_KEY"
URL = "https://proj.supabase.test"
IMAGE = png(32, 32)
OBJECT = "POST /storage/v1/object/images/2026-12-02/0941_fox_42.png"
SIDECAR = "POST /storage/v1/object/images/2026-12-02/0941_fox_42.png.json"


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.fixture
def files(tmp_path: Path) -> Upload:
    image = tmp_path / "0941_fox_42.png"
    image.write_bytes(IMAGE)
    sidecar = image.with_suffix(".json")
    sidecar.write_text('{"seed": 42}')
    return Upload(image, sidecar, PurePosixPath("2026-12-02/0941_fox_42.png"), "image/png")


def storage(server: Server, clock: Clock | None = None) -> SupabaseStorage:
    return SupabaseStorage(
        URL, "images", KEY_ENV, transport=server.transport, sleep=(clock or Clock()).sleep
    )


def store(s: SupabaseStorage, upload: Upload) -> str:
    async def go() -> str:
        try:
            return await s.store(upload)
        finally:
            await s.aclose()

    return asyncio.run(go())


def ok(path: str) -> httpx.Response:
    return reply(200, {"Id": "0b5c", "Key": f"images/{path}"})


def supabase_error(code: str, error: str, message: str) -> httpx.Response:
    # Supabase's quirk: HTTP 400, the real status as a string in the body.
    return reply(400, {"statusCode": code, "error": error, "message": message})


def test_upload_of_image_and_sidecar_with_the_key_in_apikey(files: Upload):
    server = Server().on(OBJECT, ok("x")).on(SIDECAR, ok("y"))
    uri = store(storage(server), files)
    assert uri == f"{URL}/storage/v1/object/images/2026-12-02/0941_fox_42.png"
    [image] = server.calls(OBJECT)
    assert image.body == IMAGE
    assert image.headers["apikey"] == KEY
    assert "authorization" not in image.headers  # a new secret key is never a Bearer token
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-upsert"] == "false"  # never overwrites another image
    [sidecar] = server.calls(SIDECAR)
    assert json.loads(sidecar.body) == {"seed": 42}
    assert sidecar.headers["content-type"] == "application/json"
    assert files.image.read_bytes() == IMAGE  # the local file untouched


def test_a_legacy_jwt_key_is_also_sent_as_bearer(files: Upload, monkeypatch):
    monkeypatch.setenv(KEY_ENV, JWT_KEY)
    server = Server().on(OBJECT, ok("x")).on(SIDECAR, ok("y"))
    store(storage(server), files)
    [image] = server.calls(OBJECT)
    assert image.headers["apikey"] == JWT_KEY
    assert image.headers["authorization"] == f"Bearer {JWT_KEY}"


def test_a_failing_upload_is_retried(files: Upload):
    clock = Clock()
    server = Server().on(OBJECT, reply(503), reply(503), ok("x")).on(SIDECAR, ok("y"))
    store(storage(server, clock), files)
    assert len(server.calls(OBJECT)) == 3  # the client's retry, then the storage's
    assert len(clock.waits) == 2


def test_an_upload_failing_every_time_gives_up_transient(files: Upload):
    clock = Clock()
    server = Server().on(OBJECT, reply(500, {"statusCode": "500", "message": "boom"}))
    with pytest.raises(HttpError) as caught:
        store(storage(server, clock), files)
    assert caught.value.transient is True
    assert len(server.calls(OBJECT)) == 6  # 3 tries of 2 calls
    assert server.calls(SIDECAR) == []


def test_a_taken_name_gets_the_images_own_name_and_never_overwrites(files: Upload):
    taken = supabase_error("409", "Duplicate", "The resource already exists")
    renamed = "POST /storage/v1/object/images/2026-12-02/0941_fox_42-*"
    server = Server().on(OBJECT, taken).on(renamed, ok("x"))
    uri = store(storage(server), files)
    [first] = server.calls(OBJECT)
    assert first.headers["x-upsert"] == "false"
    image, sidecar = server.calls(renamed)
    assert image.path.endswith(".png") and image.headers["x-upsert"] == "true"
    assert sidecar.path == image.path + ".json"
    assert uri.endswith(image.path.removeprefix("/storage/v1/object/images/"))


def test_access_denied_is_permanent_and_never_shows_the_key(files: Upload, caplog):
    caplog.set_level(logging.DEBUG)
    denied = supabase_error("403", "Unauthorized", f"new row violates row-level security {KEY}")
    server = Server().on(OBJECT, denied)
    with pytest.raises(HttpError) as caught:
        store(storage(server), files)
    assert caught.value.transient is False
    assert "access denied" in str(caught.value) and "policies" in str(caught.value)
    assert KEY not in str(caught.value) + caplog.text
    assert len(server.calls(OBJECT)) == 1


def test_missing_key_names_the_variable(files: Upload, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(HttpError, match=f"set {KEY_ENV}"):
        store(storage(Server()), files)


@pytest.mark.parametrize("status", [301, 302, 202, 204])
def test_only_200_or_201_counts_as_stored(files: Upload, status: int):
    server = Server().on(OBJECT, reply(status, b"", location="https://elsewhere.test/"))
    with pytest.raises(HttpError, match=f"answered {status} .*nothing was stored") as caught:
        store(storage(server), files)
    assert caught.value.transient is False
    assert server.calls(SIDECAR) == []  # and no object URI was returned


def test_a_201_is_stored(files: Upload):
    server = Server().on(OBJECT, reply(201, {"Key": "images/x"})).on(SIDECAR, ok("y"))
    assert store(storage(server), files).endswith("/0941_fox_42.png")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0941_café_42.png", r"0941_cafe_42-[0-9a-f]{8}\.png"),
        ("0941_東京_42.png", r"0941__42-[0-9a-f]{8}\.png"),
        ("東京.png", r"[0-9a-f]{8}\.png"),
    ],
)
def test_object_keys_are_ascii_and_the_local_name_is_kept(tmp_path: Path, name: str, expected):
    image = tmp_path / name
    image.write_bytes(IMAGE)
    sidecar = image.with_suffix(".json")
    sidecar.write_text("{}")
    upload = Upload(image, sidecar, PurePosixPath("2026-12-02") / name, "image/png")
    server = Server().on("POST /storage/v1/object/images/2026-12-02/*", ok("x"))
    uri = store(storage(server), upload)
    first, side = server.seen
    key = str(first.url.raw_path.decode()).removeprefix("/storage/v1/object/images/2026-12-02/")
    assert key.isascii() and re.fullmatch(expected, key), key
    assert side.url.raw_path.decode().endswith(f"/{key}.json")
    assert uri.endswith(f"/2026-12-02/{key}")
    assert image.is_file() and image.name == name  # the local file keeps its name


def test_similar_names_get_different_keys():
    from imagen_tui.storage.supabase import object_key

    assert object_key(PurePosixPath("a/café.png")) != object_key(PurePosixPath("a/cafe.png"))
    assert object_key(PurePosixPath("a/cafe.png")) == "a/cafe.png"  # ASCII stays as it is


def test_a_sidecar_never_replaces_another_images(files: Upload):
    # x.jpg's sidecar x.json belongs to another image: ours goes beside our own image name.
    server = Server().on(OBJECT, ok("x")).on(SIDECAR, ok("y"))
    store(storage(server), files)
    assert [s.path for s in server.seen] == [
        "/storage/v1/object/images/2026-12-02/0941_fox_42.png",
        "/storage/v1/object/images/2026-12-02/0941_fox_42.png.json",
    ]


def test_a_taken_name_is_shared_only_by_identical_image_and_metadata(files: Upload):
    taken = supabase_error("409", "Duplicate", "The resource already exists")
    renamed = "POST /storage/v1/object/images/2026-12-02/0941_fox_42-*"
    names = []
    for metadata in ('{"owner": "a"}', '{"owner": "b"}'):
        files.sidecar.write_text(metadata)  # type: ignore[union-attr]
        server = Server().on(OBJECT, taken).on(renamed, ok("x"))
        store(storage(server), files)
        names.append(server.calls(renamed)[0].path)
    assert names[0] != names[1]  # same image bytes, other metadata: never the same object


# --------------------------------------------------------------------------- config


def test_storage_block_checks():
    assert check_storage_block({}).type == "local"
    block = {"type": "supabase", "url": URL + "/", "bucket": "images", "key_env": KEY_ENV}
    settings = check_storage_block(block)
    assert (settings.url, settings.bucket, settings.key_env) == (URL, "images", KEY_ENV)
    with pytest.raises(ConfigError, match=r"storage\.bucket: required"):
        check_storage_block({"type": "supabase", "url": URL, "key_env": KEY_ENV})
    with pytest.raises(ConfigError, match=r"storage\.region: unknown key"):
        check_storage_block({**block, "region": "eu"})
    with pytest.raises(ConfigError) as caught:
        check_storage_block({**block, "key_env": KEY})
    assert KEY not in str(caught.value)
    with pytest.raises(ConfigError, match=r"storage\.type"):
        check_storage_block({"type": "s3"})


def test_config_file_storage_block_and_status(home: Home, monkeypatch):
    path = home.write_config(
        f"storage:\n  type: supabase\n  url: {URL}\n  bucket: images\n  key_env: UNSET_KEY_VAR\n"
    )
    monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
    workbench = open_workbench(path)
    assert workbench.storage_settings.status == "not configured (set UNSET_KEY_VAR)"
    assert isinstance(open_workbench(home.write_config("{}\n")).storage(), LocalStorage)


# --------------------------------------------------------------------------- the worker


class FakeSupabase(JsonHandler):
    objects: ClassVar[dict[str, bytes]] = {}
    keys: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        FakeSupabase.keys.append(self.headers.get("apikey"))
        FakeSupabase.objects[self.path] = body
        self.send_json(200, {"Key": self.path})


@pytest.fixture
def fake_supabase() -> Iterator[str]:
    FakeSupabase.objects, FakeSupabase.keys = {}, []
    with serving(FakeSupabase) as base:
        yield base


def supabase_workbench(home: Home, url: str) -> Workbench:
    return open_workbench(
        home.write_config(
            f"output:\n  directory: {home.root / 'out'}\n"
            f"storage:\n  type: supabase\n  url: {url}\n  bucket: images\n"
            f"  key_env: {KEY_ENV}\n  prefix: renders\n"
        )
    )


def run_one_job(db_url: str, workbench: Workbench) -> Worker:
    sql(db_url, "INSERT INTO imagen.jobs (prompt, width, height, seed) VALUES ('a fox', 64, 64, 7)")
    worker = Worker(workbench, PgQueue(db_url, new_worker_id()), WorkerOptions(once=True))
    asyncio.run(worker.run())
    return worker


def test_worker_uploads_and_records_the_object_uri(home: Home, db_url: str, fake_supabase: str):
    worker = run_one_job(db_url, supabase_workbench(home, fake_supabase))
    assert worker.stats["done"] == 1
    [(storage_uri, object_uri)] = sql(db_url, "SELECT storage_uri, object_uri FROM imagen.images")
    local = Path(storage_uri.removeprefix("file://"))
    key = local.relative_to(home.root / "out").as_posix()  # the naming template's path
    assert object_uri == f"{fake_supabase}/storage/v1/object/images/renders/{key}"
    uploaded = FakeSupabase.objects[f"/storage/v1/object/images/renders/{key}"]
    assert uploaded == local.read_bytes()  # the full image, and the local file kept
    sidecar = FakeSupabase.objects[f"/storage/v1/object/images/renders/{key}.json"]
    assert json.loads(sidecar)["seed"] == 7
    assert FakeSupabase.keys == [KEY, KEY]
    # Front ends read it with the rest of the job.
    with psycopg.connect(db_url, autocommit=True) as conn:
        [job] = fetch(conn, jobs_page())
    assert job.object_uri == object_uri


def test_worker_upload_failure_keeps_the_local_image(home: Home, db_url: str, caplog):
    caplog.set_level(logging.WARNING)
    server = Server().on("POST /storage/v1/object/*", reply(503))
    clock = Clock()
    workbench = supabase_workbench(home, URL)
    workbench._storage = SupabaseStorage(
        URL, "images", KEY_ENV, transport=server.transport, sleep=clock.sleep
    )
    worker = run_one_job(db_url, workbench)
    assert worker.stats["done"] == 1
    [(storage_uri, object_uri)] = sql(db_url, "SELECT storage_uri, object_uri FROM imagen.images")
    assert object_uri is None
    assert Path(storage_uri.removeprefix("file://")).is_file()
    assert len(server.seen) == 6  # retried before giving up
    assert "upload to supabase storage failed, the image stays local" in caplog.text


def test_an_upload_that_never_finishes_ends_at_its_deadline(files: Upload):
    async def hang(_request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        raise AssertionError

    server = Server().on(OBJECT, hang)
    s = SupabaseStorage(URL, "images", KEY_ENV, deadline_s=0.3, transport=server.transport)
    with pytest.raises(HttpError, match=r"took longer than 0\.3 s") as caught:
        store(s, files)
    assert caught.value.transient is True


def supabase_block(**keys: str) -> dict[str, str]:
    return {"type": "supabase", "url": URL, "bucket": "images", "key_env": KEY_ENV, **keys}


@pytest.mark.parametrize(
    "url", ["http://proj.supabase.co", "http://127.evil.test", "http://10.0.0.5:8000"]
)
def test_an_http_storage_url_is_refused_off_loopback(url: str):
    with pytest.raises(ConfigError, match=r"^storage\.url: http:// is allowed only on this"):
        check_storage_block(supabase_block(url=url))


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:54321", "http://localhost:54321", "http://[::1]:8"]
)
def test_an_http_storage_url_on_loopback_is_allowed(url: str):
    assert check_storage_block(supabase_block(url=url)).url == url


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("bucket", ".."),
        ("bucket", "."),
        ("bucket", "images/../admin"),
        ("bucket", "im ages"),
        ("bucket", "imáges"),
        ("prefix", ".."),
        ("prefix", "renders/../../bucket"),
        ("prefix", "renders/./x"),
        ("prefix", "a//b"),
        ("prefix", "renders?x=1"),
        ("prefix", "r\x1b[31m"),
    ],
)
def test_bucket_and_prefix_take_only_safe_names(key: str, value: str):
    with pytest.raises(ConfigError) as caught:
        check_storage_block(supabase_block(**{key: value}))
    message = str(caught.value)
    assert message.startswith(f"storage.{key}: ") and "\n" not in message
    assert "\x1b" not in message


def test_safe_bucket_and_prefix_are_kept():
    settings = check_storage_block(supabase_block(bucket="my-images_2", prefix="/renders/v1.2/"))
    assert (settings.bucket, settings.prefix) == ("my-images_2", "renders/v1.2")
