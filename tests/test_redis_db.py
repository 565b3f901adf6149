"""A shared Hypothesis database in Redis (``--database redis://...``), against a real redis-server.

The server: ``RMAPFUZZ_REDIS_URL`` if set (``.ci/run`` starts one on loopback and sets it; the
tests flush its database, so point it at a scratch server only), else a redis-server this module
starts on a free loopback port and stops at the end, else the server tests are skipped.  The URL
parsing and the command line's error paths need no server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis.database import DirectoryBasedExampleDatabase, InMemoryExampleDatabase

from rmapfuzz import campaign, database, strategy
from rmapfuzz.cli import build_parser, fuzz_config, main
from rmapfuzz.database import DatabaseError, RedisURL, ResilientRedisDatabase, parse_url

KERNEL = "2.6.34-rc3"  # bug A: found in well under a second from an empty database


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("redis", reason="the redis package is not installed (pip install -e '.[test]')")
    url = os.environ.get("RMAPFUZZ_REDIS_URL")
    if url:
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("RMAPFUZZ_REDIS_URL is unset and there is no redis-server binary (apt-get install redis-server)")
    port = _free_port()
    proc, url = _start_redis(binary, port, tmp_path_factory.mktemp("redis"))
    try:
        yield url
    finally:
        _stop_redis(proc)


def _start_redis(binary: str, port: int, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server on loopback ``port`` keeping nothing on disk, once it answers; and its URL."""
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            database.check(url)
            return proc, url
        except DatabaseError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop_redis(proc)
                raise
            time.sleep(0.05)


def _stop_redis(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def redis_binary() -> str:
    """redis-server, for the tests that stop and restart a server of their own."""
    pytest.importorskip("redis", reason="the redis package is not installed (pip install -e '.[test]')")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("no redis-server binary to stop and restart (apt-get install redis-server)")
    return binary


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The server's database, emptied for this test."""
    client = database.redis_client(redis_server)
    client.flushdb()
    client.close()
    return redis_server


def _config(tmp_path: Path, **kw: object) -> campaign.Config:
    base: dict[str, object] = {
        "kernel": KERNEL,
        "strategy": strategy.load("default"),
        "seed": 1,
        "budget": 30.0,
        "corpus_dir": tmp_path / "corpus",
        "database": None,
    }
    base.update(kw)
    return campaign.Config(**base)  # type: ignore[arg-type]


# ---- URLs, and bad input on the command line (no server needed) ----


def test_parse_url() -> None:
    assert parse_url("redis://localhost") == RedisURL("localhost", 6379, 0)
    assert parse_url("redis://127.0.0.1:6390/3") == RedisURL("127.0.0.1", 6390, 3)
    assert parse_url("redis://127.0.0.1:6390/") == RedisURL("127.0.0.1", 6390, 0)
    assert parse_url("redis://:s%40cret@db.example:7000/1") == RedisURL("db.example", 7000, 1, None, "s@cret")
    assert parse_url("redis://fuzz:pw@[::1]:6390") == RedisURL("::1", 6390, 0, "fuzz", "pw")
    assert str(parse_url("redis://fuzz:pw@[::1]:6390")) == "redis://[::1]:6390/0"  # no password shown
    assert database.is_url("redis://h") and not database.is_url(".hypothesis/rmapfuzz")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:6379", "only redis://"),
        ("rediss://localhost", "only redis://"),
        ("redis://", "no host"),
        ("redis://localhost:port", "bad database URL"),
        ("redis://localhost:99999", "bad database URL"),
        ("redis://localhost/zero", "database number"),
        ("redis://localhost/0?ssl=1", "no query"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(DatabaseError, match=message):
        parse_url(url)
    with pytest.raises(DatabaseError, match=message):
        database.make_database(url, None)


def _fuzz_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> str:
    code = main(["fuzz", "--examples", "1", "--corpus", str(tmp_path / "corpus"), *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("rmapfuzz: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "corpus").exists()
    return err


def test_cli_bad_database_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "only redis://" in _fuzz_error(capsys, tmp_path, "--database", "http://localhost")
    assert "bad database URL" in _fuzz_error(capsys, tmp_path, "--database", "redis://localhost:port")
    err = _fuzz_error(capsys, tmp_path, "--database", "redis://127.0.0.1:1", "--database", "redis://127.0.0.1:2")
    assert "at most one directory and one redis:// URL" in err
    err = _fuzz_error(capsys, tmp_path, "--database", str(tmp_path / "a"), "--database", str(tmp_path / "b"))
    assert "at most one directory" in err


def test_cli_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("redis")
    port = _free_port()  # nothing listens there: connection refused, at once (no retries)
    started = time.monotonic()
    err = _fuzz_error(capsys, tmp_path, "--database", f"redis://127.0.0.1:{port}/0")
    assert f"cannot reach the redis database at redis://127.0.0.1:{port}/0" in err
    assert time.monotonic() - started < 5


def test_missing_redis_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis -> ImportError
    with pytest.raises(DatabaseError, match=r"pip install 'rmapfuzz\[redis\]'"):
        database.check("redis://127.0.0.1:6390")


def test_directory_database_is_still_the_default(tmp_path: Path) -> None:
    config = fuzz_config(build_parser().parse_args(["fuzz"]))
    assert config.database == campaign.default_database() and config.database_url is None
    config = fuzz_config(build_parser().parse_args(["fuzz", "--database", str(tmp_path)]))
    assert config.database == tmp_path and config.database_url is None
    config = fuzz_config(build_parser().parse_args(["fuzz", "--database", str(tmp_path), "--no-database"]))
    assert config.database is None and config.database_url is None
    assert isinstance(database.make_database(None, tmp_path), DirectoryBasedExampleDatabase)
    assert database.make_database(None, None) is None


# ---- against the server ----


def test_make_database_kinds(redis_url: str, tmp_path: Path) -> None:
    from hypothesis.extra.redis import RedisExampleDatabase

    shared = database.make_database(redis_url, None)
    assert isinstance(shared, ResilientRedisDatabase) and isinstance(shared.shared, RedisExampleDatabase)
    assert isinstance(shared.local, InMemoryExampleDatabase)  # the fallback of a URL alone
    both = database.make_database(redis_url, tmp_path / "db")
    assert isinstance(both, ResilientRedisDatabase) and isinstance(both.local, DirectoryBasedExampleDatabase)
    both.save(b"k", b"v")  # a save goes to both
    assert list(shared.fetch(b"k")) == [b"v"]
    assert list(shared.shared.fetch(b"k")) == [b"v"]
    assert list(DirectoryBasedExampleDatabase(str(tmp_path / "db")).fetch(b"k")) == [b"v"]
    config = fuzz_config(build_parser().parse_args(["fuzz", "--database", redis_url, "--database", str(tmp_path)]))
    assert config.database == tmp_path and config.database_url == redis_url
    config = fuzz_config(build_parser().parse_args(["fuzz", "--database", redis_url]))
    assert config.database is None and config.database_url == redis_url


def _seed_whose_first_test_case_passes(tmp_path: Path) -> int:
    """A campaign seed whose first generated test case does not find the bug on its own (the
    generation is fixed by the seed), so a find in one test case can only come from the database."""
    for seed in range(100, 120):
        config = _config(tmp_path, seed=seed, budget=None, examples=1, corpus_dir=None)
        if not campaign.run(config).finds:
            return seed
    raise AssertionError("every seed found the bug in its first test case")


def test_two_machines_share_failing_examples(redis_url: str, tmp_path: Path) -> None:
    # Machine 1: two workers (each forked worker opens its own connection), a local directory
    # database as well as the shared one.
    first = campaign.run(_config(tmp_path, workers=2, database=tmp_path / "local-1", database_url=redis_url))
    assert first.exit_code == 1 and first.finds
    signatures = {f.signature for f in first.finds}

    # What it left in Redis: Hypothesis' sets of failing examples, expiring after 8 days unused.
    client = database.redis_client(redis_url)
    keys = [k for k in client.keys(database.KEY_PREFIX + b"*") if isinstance(k, bytes)]
    primary = [k for k in keys if not k.endswith((b".secondary", b".pareto"))]
    assert primary and all(client.scard(k) > 0 for k in primary)
    assert all(0 < client.ttl(k) <= timedelta(days=8).total_seconds() for k in keys)
    client.close()
    assert any(p.is_file() for p in (tmp_path / "local-1").rglob("*"))  # and a local copy

    # Machine 2: another process, another corpus, Redis alone, one test case, a seed that does not
    # find the bug in its first test case: Hypothesis replays machine 1's example and fails at once.
    seed = _seed_whose_first_test_case_passes(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "rmapfuzz", "fuzz", "--kernel", KERNEL, "--seed", str(seed), "--examples", "1",
         "--database", redis_url, "--corpus", str(tmp_path / "corpus-2"), "--json"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    second = json.loads(proc.stdout)["finds"]
    assert second and second[0]["signature"] in signatures
    assert second[0]["examples_before"] == 1
    assert list((tmp_path / "corpus-2").glob("*.json"))


# ---- a Redis outage ----


def test_outage_falls_back_and_catches_up(
    redis_binary: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _free_port()
    proc, url = _start_redis(redis_binary, port, tmp_path)
    db = database.make_database(url, tmp_path / "db")
    assert isinstance(db, ResilientRedisDatabase)
    db.first_backoff, db.max_backoff = 0.1, 0.2  # the real ones: 1 s doubling to 60 s
    try:
        db.save(b"k", b"before")
        assert db.up
        proc.send_signal(signal.SIGKILL)
        proc.wait()

        db.save(b"k", b"during-1")  # the broken connection: down, to the local database
        assert not db.up
        db.save(b"k", b"during-2")
        db.move(b"k", b"k.secondary", b"during-2")
        assert set(db.fetch(b"k")) == {b"before", b"during-1"}  # read from the local database
        time.sleep(0.3)  # past the backoff: tried again (refused), still down, nothing more said
        db.save(b"k", b"during-3")
        assert not db.up and set(db.fetch(b"k")) == {b"before", b"during-1", b"during-3"}
        out, err = capsys.readouterr()
        warning = f"rmapfuzz: warning: the redis database at {url} is unreachable ("
        assert out == "" and err.count("\n") == 1 and err.startswith(warning), err
        assert err.rstrip().endswith("going on with the local database, retrying")
        assert list(DirectoryBasedExampleDatabase(str(tmp_path / "db")).fetch(b"k.secondary")) == [b"during-2"]

        proc, _ = _start_redis(redis_binary, port, tmp_path)  # the same port, an empty server
        time.sleep(0.3)
        assert set(db.fetch(b"k")) == {b"before", b"during-1", b"during-3"}  # tried again, up
        assert db.up
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and f"the redis database at {url} is back" in err, err
        assert "wrote it the 4 changes made meanwhile" in err  # during-1..3, and k.secondary's

        client = database.redis_client(url)
        members = client.smembers(database.KEY_PREFIX + b"k")
        assert members == {b"during-1", b"during-3"}  # "before" went with the old server
        assert client.smembers(database.KEY_PREFIX + b"k.secondary") == {b"during-2"}
        client.close()
        db.save(b"k", b"after")  # and on, as before
        assert set(db.shared.fetch(b"k")) == {b"during-1", b"during-3", b"after"}
        assert capsys.readouterr().err == ""
    finally:
        _stop_redis(proc)


def test_outage_queue_and_backoff(redis_binary: str) -> None:
    """Against a port nothing listens on, on a clock of the test's: the backoff doubles to its
    limit, the queue keeps the latest change of the newest entries, and it is said once."""
    from hypothesis.extra.redis import RedisExampleDatabase

    now = [0.0]
    said: list[database.Outage] = []
    client = database._client(parse_url(f"redis://127.0.0.1:{_free_port()}/0"), retry=False)
    db = ResilientRedisDatabase(
        RedisExampleDatabase(client, key_prefix=database.KEY_PREFIX),
        where="redis://there",
        report=said.append,
        queue_limit=3,
        clock=lambda: now[0],
    )
    db.save(b"k", b"1")
    assert not db.up and db.retry_at == 1.0
    retries = []
    for t in [0.5, 1.0, 2.0, 3.0, 7.0, 15.0, 31.0, 63.0, 100.0, 123.0, 183.0]:
        now[0] = t
        db.save(b"k", str(t).encode())
        retries.append(db.retry_at)
    assert retries == [1.0, 3.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 123.0, 183.0, 243.0]  # 1 2 4 ... 60 s
    db.delete(b"k", b"100.0")
    assert list(db.queue.items()) == [((b"k", b"123.0"), True), ((b"k", b"183.0"), True), ((b"k", b"100.0"), False)]
    assert db.dropped == 9
    kept = {b"1"} | {str(t).encode() for t in [0.5, 1.0, 2.0, 3.0, 7.0, 15.0, 31.0, 63.0, 123.0, 183.0]}
    assert set(db.fetch(b"k")) == kept  # the local database has everything
    assert [o.back for o in said] == [False]
    assert said[0].line().startswith("rmapfuzz: warning: the redis database at redis://there is unreachable (")
    client.close()


def test_campaign_survives_a_redis_outage(redis_binary: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Redis dies right after the campaign's first find (not at a fixed time: on a busy machine a
    timer can fire after the last find, and an outage nobody touches is rightly not reported); the
    finds after it still reach the corpus and the outage is said once."""
    proc, url = _start_redis(redis_binary, _free_port(), tmp_path)

    def kill_at_first_find(stats: dict[str, object], finds: list[campaign.Find]) -> None:
        if finds and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)

    try:
        config = _config(tmp_path, workers=2, budget=8.0, keep_going=True, database_url=url)
        result = campaign.run(config, on_progress=kill_at_first_find)
        assert proc.wait(timeout=5) == -signal.SIGKILL
    finally:
        _stop_redis(proc)
    _, err = capfd.readouterr()
    assert result.exit_code == 1 and result.finds and not result.interrupted
    saved = sorted((tmp_path / "corpus").glob("*.json"))
    assert saved and all(Path(f.path) in saved for f in result.finds if f.path)
    assert "Traceback" not in err, err
    warnings = [line for line in err.splitlines() if "is unreachable" in line]
    assert warnings == [line for line in err.splitlines() if line], err  # nothing else said
    assert len(warnings) == 1 and warnings[0].startswith(f"rmapfuzz: warning: the redis database at {url}")


def test_a_parallel_campaign_says_an_outage_once_with_every_worker_s_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Every worker sees the outage: it is said once going down, and once back when the last worker
    that saw it has written what it saved meanwhile, with all their counts."""
    from rmapfuzz.campaign import _Outages

    outages = _Outages()
    down = database.Outage("redis://there", back=False, reason="Connection refused")
    outages.heard(0, down)
    outages.heard(1, down)
    outages.heard(0, database.Outage("redis://there", back=True, seconds=5.0, written=3))
    assert capsys.readouterr().err.count("\n") == 1  # down, said once; worker 1 is not back yet
    outages.heard(1, database.Outage("redis://there", back=True, seconds=6.0, written=4, dropped=1))
    err = capsys.readouterr().err
    assert err == (
        "rmapfuzz: the redis database at redis://there is back after 6 s; wrote it the 7 changes made "
        "meanwhile, dropped the 1 oldest past the queue's limit\n"
    )
