"""The Hypothesis example database a campaign uses: a local directory, a shared Redis, or both.

* a directory (the default, ``.hypothesis/rmapfuzz``): Hypothesis'
  :class:`~hypothesis.database.DirectoryBasedExampleDatabase`, shared by the workers of one machine;
* ``redis://host[:port][/db]``: Hypothesis' own :class:`~hypothesis.extra.redis.RedisExampleDatabase`
  (needs the ``redis`` package, ``pip install 'rmapfuzz[redis]'``), shared by every machine that
  points at the same server;
* both: a :class:`~hypothesis.database.MultiplexedDatabase` of the two.  Every save and delete goes
  to both, a fetch reads both, so the directory keeps a local copy of what this machine found
  (Redis entries expire after 8 days without a run, and a server started with ``--save ''`` keeps
  nothing across a restart).

Nothing here is hand-rolled: these are Hypothesis' classes, built from a URL or a path.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase, MultiplexedDatabase

if TYPE_CHECKING:
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
        from redis import Redis
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError
        from redis.retry import Retry
    except ImportError:
        raise DatabaseError(_NO_REDIS.format(where=where)) from None
    options: dict[str, Any] = {} if retry else {"retry": Retry(NoBackoff(), 0)}
    client = Redis(
        host=where.host,
        port=where.port,
        db=where.db,
        username=where.username,
        password=where.password,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        **options,
    )
    try:
        client.ping()
    except RedisError as exc:
        client.close()
        raise DatabaseError(f"cannot reach the redis database at {where}: {_one_line(exc)}") from None
    return client


def make_database(url: str | None, path: Path | str | None) -> ExampleDatabase | None:
    """The example database for a campaign: ``path`` a directory (or None), ``url`` a
    ``redis://`` URL (or None); both give a :class:`MultiplexedDatabase` of the two, neither None.

    Each call makes its own client: call it in the process that uses the database (every worker
    of a campaign does), not before a fork.
    """
    local = None if path is None else DirectoryBasedExampleDatabase(str(path))
    if url is None:
        return local
    try:
        from hypothesis.extra.redis import RedisExampleDatabase
    except ImportError:
        raise DatabaseError(_NO_REDIS.format(where=parse_url(url))) from None
    shared = RedisExampleDatabase(redis_client(url), key_prefix=KEY_PREFIX)
    return shared if local is None else MultiplexedDatabase(local, shared)


def check(url: str | None) -> None:
    """Raise :class:`DatabaseError` now if ``url`` is malformed or its server unreachable."""
    if url is not None:
        redis_client(url, retry=False).close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
