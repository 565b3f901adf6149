"""The Hypothesis example database a campaign uses: a local directory, a shared Redis, or both.

* a directory (the default, ``.hypothesis/rmapfuzz``): Hypothesis'
  :class:`~hypothesis.database.DirectoryBasedExampleDatabase`, shared by the workers of one machine;
* ``redis://host[:port][/db]``: Hypothesis' own :class:`~hypothesis.extra.redis.RedisExampleDatabase`
  (needs the ``redis`` package, ``pip install 'rmapfuzz[redis]'``), shared by every machine that
  points at the same server, in a :class:`ResilientRedisDatabase` with an in-memory local one;
* both: the same with the directory as the local one.  Every save and delete goes to both, a fetch
  reads both, so the directory keeps a local copy of what this machine found (Redis entries expire
  after 8 days without a run, and a server started with ``--save ''`` keeps nothing across a
  restart).

:class:`ResilientRedisDatabase` is what keeps a campaign running through a Redis outage: it goes on
with the local database, retries the server with exponential backoff and, once the server is back,
writes to it the changes made meanwhile.  The rest is Hypothesis' classes, built from a URL or a path.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase, InMemoryExampleDatabase

if TYPE_CHECKING:
    from hypothesis.extra.redis import RedisExampleDatabase
    from redis import Redis

DEFAULT_PORT = 6379
CONNECT_TIMEOUT = 5.0  # seconds, to connect and to ping
SOCKET_TIMEOUT = 30.0  # seconds, for any later command
KEY_PREFIX = b"hypothesis-example:"  # RedisExampleDatabase's default


_NO_REDIS = "{where}: a redis database needs the redis package (pip install 'rmapfuzz[redis]')"


class DatabaseError(Exception):
    """A bad database URL, a missing ``redis`` package or an unreachable server (one line)."""


class RedisURL(NamedTuple):
    host: str
    port: int
    db: int
    username: str | None = None
    password: str | None = None

    def __str__(self) -> str:  # never shows the password
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"redis://{host}:{self.port}/{self.db}"


def is_url(value: str) -> bool:
    """Whether ``--database`` got a URL rather than a directory."""
    return "://" in value


def parse_url(url: str) -> RedisURL:
    """``redis://[[user]:password@]host[:port][/db]``; anything else raises :class:`DatabaseError`."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port that is not a number, or out of range
        raise DatabaseError(f"bad database URL {url!r}: {exc}") from None
    if parts.scheme != "redis":
        raise DatabaseError(f"bad database URL {url!r}: only redis://host[:port][/db] is supported")
    if not parts.hostname:
        raise DatabaseError(f"bad database URL {url!r}: no host")
    if parts.query or parts.fragment:
        raise DatabaseError(f"bad database URL {url!r}: no query or fragment allowed")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise DatabaseError(f"bad database URL {url!r}: the path must be a database number, got {path!r}")
    return RedisURL(
        host=parts.hostname,
        port=DEFAULT_PORT if port is None else port,
        db=int(path) if path else 0,
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
    )


def redis_client(url: str | RedisURL, *, retry: bool = True) -> Redis:
    """A client for ``url``, checked with a ping (so a wrong address fails here, in one line).
    ``retry=False`` fails at the first error instead of redis-py's few retries with backoff."""
    where = parse_url(url) if isinstance(url, str) else url
    try:
        from redis.exceptions import RedisError
    except ImportError:
        raise DatabaseError(_NO_REDIS.format(where=where)) from None
    client = _client(where, retry=retry)
    try:
        client.ping()
    except RedisError as exc:
        client.close()
        raise DatabaseError(f"cannot reach the redis database at {where}: {_one_line(exc)}") from None
    return client


def _client(where: RedisURL, *, retry: bool) -> Redis:
    """A client for ``where``, not yet connected."""
    try:
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise DatabaseError(_NO_REDIS.format(where=where)) from None
    options: dict[str, Any] = {} if retry else {"retry": Retry(NoBackoff(), 0)}
    return Redis(
        host=where.host,
        port=where.port,
        db=where.db,
        username=where.username,
        password=where.password,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        **options,
    )


@attrs.frozen
class Outage:
    """What a Redis-backed database tells its campaign: the server went down (``back`` False), or
    it is back, with what was written to it of the changes made meanwhile."""

    where: str
    back: bool
    reason: str = ""  # why it is down
    seconds: float = 0.0  # how long it was down
    written: int = 0  # changes made meanwhile, written once it was back
    dropped: int = 0  # changes dropped past the queue's limit

    def line(self) -> str:
        if not self.back:
            return (f"rmapfuzz: warning: the redis database at {self.where} is unreachable ({self.reason}); "
                    "going on with the local database, retrying")  # fmt: skip
        dropped = f", dropped the {self.dropped} oldest past the queue's limit" if self.dropped else ""
        changes = f"{self.written} change{'' if self.written == 1 else 's'}"
        return (f"rmapfuzz: the redis database at {self.where} is back after {self.seconds:.0f} s; "
                f"wrote it the {changes} made meanwhile{dropped}")  # fmt: skip

    def __add__(self, other: Outage) -> Outage:
        """Two workers' returns of the same server, said as one."""
        return attrs.evolve(self, seconds=max(self.seconds, other.seconds), written=self.written + other.written,
                            dropped=self.dropped + other.dropped)  # fmt: skip


Report = Callable[[Outage], None]


def make_database(url: str | None, path: Path | str | None, *, report: Report | None = None) -> ExampleDatabase | None:
    """The example database for a campaign: ``path`` a directory (or None), ``url`` a
    ``redis://`` URL (or None); a URL gives a :class:`ResilientRedisDatabase` (whose local
    database is the directory, or an in-memory one), neither None.  ``report`` is told of an
    outage and of the server's return (by default, one line on stderr each).

    The server is not contacted here (:func:`check` does that before a campaign): one that is down
    now is an outage like any other.  Each call makes its own client: call it in the process that
    uses the database (every worker of a campaign does), not before a fork.
    """
    local = None if path is None else DirectoryBasedExampleDatabase(str(path))
    if url is None:
        return local
    where = parse_url(url)
    try:
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise DatabaseError(_NO_REDIS.format(where=where)) from None
    # No retries inside redis-py: a failing command falls back to the local database at once, and
    # the wrapper's own backoff decides when to try the server again.
    shared = RedisExampleDatabase(_client(where, retry=False), key_prefix=KEY_PREFIX)
    return ResilientRedisDatabase(shared, local, where=str(where), report=report)


def _print_line(outage: Outage) -> None:
    print(outage.line(), file=sys.stderr, flush=True)


class ResilientRedisDatabase(ExampleDatabase):
    """A :class:`~hypothesis.extra.redis.RedisExampleDatabase` that an outage does not stop.

    Every change goes to ``local`` (a directory database, or by default an in-memory one) and to
    Redis, a fetch reads both: Hypothesis' :class:`~hypothesis.database.MultiplexedDatabase` of the
    two, while the server answers.  When a Redis command fails with a connection error, a timeout
    or an ``OSError`` (nothing else is caught), the server is *down*: ``report(Outage(back=False))`` is
    called once, the database goes on with ``local`` alone, and every change that Redis misses is
    kept in a queue of at most ``queue_limit`` (key, value) entries (the latest change of an entry
    replaces the earlier; past the limit the oldest entry is dropped, and counted).  The server is
    tried again on the first call after a backoff that starts at ``first_backoff`` seconds and
    doubles up to ``max_backoff`` (measured with ``clock``, no thread); once it answers, the queue
    is written to it, in order, and ``report(Outage(back=True))`` is called once, with the counts.

    Change listeners hear the local database, and Redis if it was reachable when listening started.
    """

    QUEUE_LIMIT = 10_000
    FIRST_BACKOFF = 1.0  # seconds
    MAX_BACKOFF = 60.0

    def __init__(
        self,
        shared: RedisExampleDatabase,
        local: ExampleDatabase | None = None,
        *,
        where: str = "redis",
        report: Report | None = None,
        queue_limit: int = QUEUE_LIMIT,
        first_backoff: float = FIRST_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.errors: tuple[type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OSError)
        self.shared = shared
        self.local: ExampleDatabase = InMemoryExampleDatabase() if local is None else local
        self.where = where
        self.report: Report = _print_line if report is None else report
        self.queue_limit = queue_limit
        self.first_backoff, self.max_backoff = first_backoff, max_backoff
        self.clock = clock
        # (key, value) -> whether Redis should have it (saved) or not (deleted), oldest first
        self.queue: OrderedDict[tuple[bytes, bytes], bool] = OrderedDict()
        self.written = 0  # entries of the queue written to Redis since the outage
        self.dropped = 0  # entries dropped from the queue during this outage
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.backoff = first_backoff
        self._shared_listening = False

    def __repr__(self) -> str:
        return f"ResilientRedisDatabase({self.shared!r}, {self.local!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResilientRedisDatabase) and self.shared == other.shared and self.local == other.local

    @property
    def up(self) -> bool:
        """Whether the server answered the last command sent to it."""
        return self.down_since is None

    # ---- the database ----

    def fetch(self, key: bytes) -> Iterable[bytes]:
        seen: set[bytes] = set()
        for value in self.local.fetch(key):
            seen.add(value)
            yield value
        if not self._try_server():
            return
        try:
            values = list(self.shared.fetch(key))
        except self.errors as exc:
            self._down(exc)
            return
        for value in values:
            if value not in seen:
                seen.add(value)
                yield value

    def save(self, key: bytes, value: bytes) -> None:
        self.local.save(key, value)
        if not self._on_server(self.shared.save, key, value):
            self._enqueue(key, value, saved=True)

    def delete(self, key: bytes, value: bytes) -> None:
        self.local.delete(key, value)
        if not self._on_server(self.shared.delete, key, value):
            self._enqueue(key, value, saved=False)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.local.move(src, dest, value)
        if not self._on_server(self.shared.move, src, dest, value):
            if src != dest:
                self._enqueue(src, value, saved=False)
            self._enqueue(dest, value, saved=True)

    def _start_listening(self) -> None:
        self.local.add_listener(self._broadcast_change)
        if self._try_server():
            try:
                self.shared.add_listener(self._broadcast_change)
                self._shared_listening = True
            except self.errors as exc:
                self._down(exc)

    def _stop_listening(self) -> None:
        self.local.remove_listener(self._broadcast_change)
        if self._shared_listening:
            self._shared_listening = False
            try:
                self.shared.remove_listener(self._broadcast_change)
            except self.errors as exc:
                self._down(exc)

    # ---- outages ----

    def _on_server(self, command: Callable[..., None], *args: bytes) -> bool:
        """Run ``command`` on Redis if it is up (or worth trying again); whether it went through."""
        if not self._try_server():
            return False
        try:
            command(*args)
        except self.errors as exc:
            self._down(exc)
            return False
        return True

    def _enqueue(self, key: bytes, value: bytes, *, saved: bool) -> None:
        self.queue.pop((key, value), None)
        self.queue[key, value] = saved
        while len(self.queue) > self.queue_limit:
            self.queue.popitem(last=False)
            self.dropped += 1

    def _down(self, exc: BaseException) -> None:
        now = self.clock()
        if self.down_since is None:
            self.down_since = now
            self.backoff = self.first_backoff
            self.report(Outage(self.where, back=False, reason=_one_line(exc)))
        else:
            self.backoff = min(self.backoff * 2, self.max_backoff)
        self.retry_at = now + self.backoff

    def _try_server(self) -> bool:
        """Whether Redis is up; while it is down, once the backoff has passed, tries it again and
        writes the queue to it (which makes it up if that goes through)."""
        if self.down_since is None:
            return True
        if self.clock() < self.retry_at:
            return False
        try:
            self.shared.redis.ping()
            while self.queue:
                (key, value), saved = next(iter(self.queue.items()))
                if saved:
                    self.shared.save(key, value)
                else:
                    self.shared.delete(key, value)
                del self.queue[key, value]
                self.written += 1
        except self.errors as exc:
            self._down(exc)  # still down: the entries not written stay queued
            return False
        back = Outage(self.where, True, seconds=self.clock() - self.down_since, written=self.written,
                      dropped=self.dropped)  # fmt: skip
        self.down_since, self.written, self.dropped = None, 0, 0
        self.report(back)
        return True


def check(url: str | None) -> None:
    """Raise :class:`DatabaseError` now if ``url`` is malformed or its server unreachable."""
    if url is not None:
        redis_client(url, retry=False).close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
