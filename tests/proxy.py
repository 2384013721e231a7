"""A TCP proxy in front of the test PostgreSQL, for injecting network faults.

The embedded server listens on a unix socket only; the proxy listens on
127.0.0.1 (an ephemeral port) and forwards each client connection to that
socket, in a thread with its own event loop, so both in-process workers and
worker processes can be pointed at it (`proxy.url`).

- `cut_after_reply(pattern)`: the next client message containing `pattern`
  reaches the server; when the server's reply comes back it is thrown away
  and the connection is cut. The statement ran (and, in autocommit, its
  commit landed), but the client never hears so: a lost reply to a commit.
- `down()` cuts every open connection and refuses new ones (accepted, then
  closed at once, as a restarting server does); `up()` ends the outage.
- `connections` counts the client connections accepted so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo


class PgProxy:
    def __init__(self, db_url: str) -> None:
        params = conninfo_to_dict(db_url)
        self._socket = Path(str(params["host"])) / f".s.PGSQL.{params.get('port') or 5432}"
        self._params = params
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._pattern: bytes | None = None
        self.cut_done = threading.Event()
        self._down = False
        self.connections = 0
        self.port = 0

    # ----------------------------------------------------------- control (any thread)

    @property
    def url(self) -> str:
        return make_conninfo(
            "",
            **{**self._params, "host": "127.0.0.1", "port": str(self.port), "sslmode": "disable"},
        )

    def start(self) -> PgProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut_after_reply(self, pattern: bytes) -> None:
        self.cut_done.clear()
        self._pattern = pattern

    def down(self) -> None:
        def cut() -> None:
            self._down = True
            for writer in list(self._open):
                writer.close()

        self._loop.call_soon_threadsafe(cut)

    def up(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "_down", False)

    # ----------------------------------------------------------- the proxy (its loop)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.close()
        # Let every connection's task end here, not be destroyed with the loop.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        if self._down:
            client.close()
            return
        server_reader, server = await asyncio.open_unix_connection(str(self._socket))
        self._open.update((client, server))
        swallow = asyncio.Event()  # set: the next reply is thrown away and the line cut

        async def to_server() -> None:
            while data := await client_reader.read(65536):
                if self._pattern is not None and self._pattern in data:
                    self._pattern = None
                    swallow.set()
                server.write(data)
                await server.drain()

        async def to_client() -> None:
            while data := await server_reader.read(65536):
                if swallow.is_set():
                    self.cut_done.set()
                    return
                client.write(data)
                await client.drain()

        pumps = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
        with contextlib.suppress(ConnectionError, OSError):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)  # a cut line's error is expected
        for writer in (client, server):
            self._open.discard(writer)
            writer.close()


@contextlib.contextmanager
def pg_proxy(db_url: str) -> Iterator[PgProxy]:
    proxy = PgProxy(db_url).start()
    try:
        with psycopg.connect(proxy.url, connect_timeout=5):  # it works before a test relies on it
            pass
        yield proxy
    finally:
        proxy.close()
