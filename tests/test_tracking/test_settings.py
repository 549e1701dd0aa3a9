"""Tracking and log settings come from flags > environment > file like every other setting, with
safe defaults (loopback endpoint, 14-day retention) and bad values named."""

from __future__ import annotations

import pytest

from fulfil.cli import build_parser
from fulfil.config import Config, ConfigError, load_config


def test_should_default_to_loopback_text_logs_and_two_weeks_of_history():
    cfg = Config()
    assert (cfg.http_addr, cfg.log_format, cfg.log_level) == ("127.0.0.1", "text", "INFO")
    assert (cfg.tracking_ttl_days, cfg.tracking_max_entries) == (14, 256)


def test_should_read_settings_from_environment_and_let_flags_win():
    env = {"FULFIL_LOG_FORMAT": "json", "FULFIL_LOG_LEVEL": "debug",
           "FULFIL_TRACKING_TTL_DAYS": "3", "FULFIL_TRACKING_MAX_ENTRIES": "40",
           "FULFIL_HTTP_ADDR": "0.0.0.0", "FULFIL_HTTP_PORT": "8081"}
    cfg = load_config(env=env, http_port=9000)
    assert (cfg.log_format, cfg.log_level, cfg.tracking_ttl_days, cfg.tracking_max_entries,
            cfg.http_addr, cfg.http_port) == ("json", "debug", 3, 40, "0.0.0.0", 9000)


@pytest.mark.parametrize(("flags", "name"), [
    ({"log_format": "xml"}, "log_format"), ({"log_level": "LOUD"}, "log_level"),
    ({"tracking_ttl_days": 0}, "tracking_ttl_days"), ({"http_port": 70000}, "http_port"),
    ({"tracking_max_entries": "lots"}, "tracking_max_entries")])
def test_should_reject_bad_settings_naming_them(flags, name):
    with pytest.raises(ConfigError, match=name):
        load_config(env={}, **flags)


def test_should_offer_track_and_order_commands_with_log_options():
    parser = build_parser()
    args = parser.parse_args(["track", "--http-port", "0", "--log-format", "json",
                              "--retention-days", "7", "--max-entries", "10"])
    assert (args.http_port, args.log_format, args.retention_days, args.max_entries) == (
        0, "json", 7, 10)
    assert parser.parse_args(["run", "--log-level", "DEBUG"]).log_level == "DEBUG"
    assert parser.parse_args(["order", "o-1", "--json"]).json is True
