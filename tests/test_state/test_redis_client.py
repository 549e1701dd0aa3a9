"""state.redis_client: connecting (TCP with a password, a unix socket) without ever showing a
secret, against real redis-server processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from fulfil.infra import free_port
from state.ledger import Ledger
from state.redis_client import RedisConfigError, RedisUnavailable, connect, redact
from tests.test_state.ledger_helpers import DAY, _spawn_redis, req, stock_up

# -- connecting -----------------------------------------------------------------------------

def test_redact_hides_passwords_and_secret_query_values() -> None:
    assert redact("redis://u:p%40ss@h:1/0") == "redis://u:***@h:1/0"
    assert redact("rediss://:pa/ss#x@h:1") == "rediss://:***@h:1"
    assert redact("redis+cluster://h:1,h:2?password=x&db=0") == (
        "redis+cluster://h:1,h:2?password=***&db=0"
    )


def test_connect_errors_never_show_the_password(redis_client: redis.Redis, redis_url: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    redis_client.acl_setuser("ledger", enabled=True, passwords=["+s3cr@t/pw"], keys="*",
                             commands=["+@all"])
    try:
        ok = connect(f"redis://ledger:s3cr%40t%2Fpw@127.0.0.1:{port}/0")
        assert ok.ping()
        ok.close()
        for url in (f"redis://ledger:wr0ngpass@127.0.0.1:{port}/0",
                    f"redis://ledger:s3cr@t/pw@127.0.0.1:{port}/0",
                    f"redis://ledger:wr0ngpass@127.0.0.1:{free_port()}/0"):
            with pytest.raises((RedisUnavailable, RedisConfigError)) as caught:
                connect(url)
            for secret in ("wr0ng", "s3cr", "t/pw"):
                assert secret not in str(caught.value)
            assert caught.value.__cause__ is None and "***" in str(caught.value)
        with pytest.raises(RedisConfigError, match="scheme"):
            connect("http://u:pw@h")
    finally:
        redis_client.acl_deluser("ledger")




def test_connect_over_a_unix_socket(tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    proc, _ = _spawn_redis(tmp_path, "--unixsocket", str(sock))
    try:
        client = connect(f"unix://{sock}?db=0")
        ledger = Ledger(client)
        stock_up(ledger, "N1", a=1)
        assert ledger.reserve([req("o1", "N1", ("a", 1))], DAY)[0].status == "reserved"
        client.close()
    finally:
        proc.terminate()
        proc.wait(10)
