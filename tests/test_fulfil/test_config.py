"""Configuration: one immutable object from file < env < flags, secrets never printed."""

from __future__ import annotations

import orjson
import pytest

from fulfil.cli import build_parser
from fulfil.config import Config, ConfigError, load_config, redact_url


def test_should_layer_file_then_environment_then_flags(tmp_path):
    path = tmp_path / "fulfil.json"
    path.write_bytes(orjson.dumps({"kafka_bootstrap": "file:9092", "batch_size": 10,
                                   "weights": {"cost": -2.0}}))
    env = {"FULFIL_KAFKA": "env:9092", "FULFIL_BATCH_SIZE": "20",
           "FULFIL_KAFKA__SASL_USERNAME": "alice", "FULFIL_KAFKA__SECURITY_PROTOCOL": "SASL_SSL"}
    cfg = load_config(path, env=env, batch_size=30)
    assert cfg.kafka_bootstrap == "env:9092"  # env beats file
    assert cfg.batch_size == 30  # flag beats env
    assert cfg.weights == {"cost": -2.0}  # file only
    assert cfg.kafka_common() == {"bootstrap.servers": "env:9092", "sasl.username": "alice",
                                  "security.protocol": "SASL_SSL"}


def test_should_never_show_secrets_when_printed():
    cfg = Config(redis_url="redis://user:hunter2@redis:6379/0",
                 kafka={"sasl.password": "hunter2", "ssl.key.password": "hunter2",
                        "sasl.username": "alice"})
    shown = orjson.dumps(cfg.redacted()).decode()
    assert "hunter2" not in shown
    assert "alice" in shown and "redis:6379" in shown
    assert redact_url("rediss://:pw@h:1/0") == "rediss://:***@h:1/0"


@pytest.mark.parametrize(
    ("flags", "message"),
    [({"batch_size": 0}, "batch_size"), ({"start_from": "middle"}, "start_from"),
     ({"batch_size": "many"}, "batch_size"), ({"no_such": 1}, "no_such"),
     ({"fetch_min_bytes": 0}, "fetch_min_bytes")],
)
def test_should_reject_bad_settings_naming_them(flags, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env={}, **flags)


def test_fetch_min_bytes_reaches_every_source_consumer_from_the_environment():
    from dataflows.connectors import KafkaSource

    cfg = load_config(env={"FULFIL_FETCH_MIN_BYTES": "262144"})
    source = KafkaSource(cfg.kafka_common(), ["t"], fetch_min_bytes=cfg.fetch_min_bytes)
    assert cfg.fetch_min_bytes == 262144
    assert source._consumer_config["fetch.min.bytes"] == "262144"
    assert load_config(env={}).fetch_min_bytes == 1  # latency first on a real Kafka


def test_should_reject_unknown_keys_in_the_config_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps({"kafka_bootstrapp": "x"}))
    with pytest.raises(ConfigError, match="kafka_bootstrapp"):
        load_config(path, env={})


def test_cli_run_accepts_the_documented_flags():
    args = build_parser().parse_args([
        "run", "--kafka", "k:9092", "--redis", "redis://r:6379/0", "--workers", "1",
        "-i", "0", "-a", "h0:2101;h1:2101", "--source-slots", "2",
        "--kafka-prop", "security.protocol=SASL_SSL", "--recovery-dir", "/tmp/r",
        "--snapshot-interval", "5", "--metrics-port", "9400",
    ])
    assert args.kafka_bootstrap == "k:9092" and args.source_slots == 2
    assert args.kafka_prop == ["security.protocol=SASL_SSL"]


def test_run_fails_fast_with_one_redacted_line_when_redis_is_unreachable(capsys):
    from fulfil.cli import main
    from fulfil.infra import free_port

    with pytest.raises(SystemExit) as stop:
        main(["run", "--kafka", f"127.0.0.1:{free_port()}",
              "--redis", f"redis://user:hunter2@127.0.0.1:{free_port()}/0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "cannot use Redis" in err.splitlines()[-1]
    assert "hunter2" not in err
