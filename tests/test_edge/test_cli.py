"""`fulfil edge ...` from the command line: the site file, the site network, and the status an
operator reads while the link is down."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from fulfil.cli import main
from fulfil.config import ConfigError
from fulfil.edge.config import settings_from_dict
from operators.network import Network
from tests.test_dataflows.helpers import order, publish
from tests.test_edge.helpers import SITE_NODES, Site, World, wait_for


def _site_file(site: Site, tmp_path: Path) -> Path:
    def side(cfg: Any) -> dict[str, Any]:
        return {"kafka_bootstrap": cfg.kafka_bootstrap, "redis_url": cfg.redis_url,
                "topic_prefix": cfg.topic_prefix, "redis_prefix": cfg.redis_prefix}

    s = site.settings
    path = tmp_path / "site.json"
    path.write_text(json.dumps({"site": s.site, "nodes": list(s.nodes), "edge": side(s.edge),
                                "centre": side(s.centre), "state_dir": str(tmp_path),
                                "link": {"link_timeout_s": 1.0}}))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    return int(exit_.value.code or 0), capsys.readouterr().out


def test_a_site_file_is_checked_and_its_errors_name_the_setting():
    good = {"site": "sul", "nodes": ["N20"], "edge": {}, "centre": {"topic_prefix": "c."}}
    assert settings_from_dict(good).view().centre_prefix == "c."
    for bad, match in (({**good, "site": "Sul"}, "site id"), ({**good, "nodes": []}, "nodes"),
                       ({**good, "nodes": ["N99"]}, "N99"), ({**good, "extra": 1}, "extra"),
                       ({**good, "edge": {"redis": "x"}}, "redis"),
                       ({**good, "link": {"batch": 1}}, "link")):
        with pytest.raises(ConfigError, match=match):
            settings_from_dict(bad)


def test_status_shows_the_link_down_the_backlog_and_its_age_then_up_and_empty(
        world: World, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = _site_file(site, tmp_path)
    code, out = _run(capsys, "edge", "network", "--site", str(path))
    net = Network.load(tmp_path / "network-sul.json")
    assert code == 0 and [n.id for n in net.nodes] == list(SITE_NODES)

    site.start_links("uplink")
    wait_for(lambda: site.links["uplink"].state == "up", what="the uplink")
    world.cut()
    publish(site.edge, "orders", [order(f"o-{i}", [("a", 1)]) for i in range(5)])
    time.sleep(1.5)
    wait_for(lambda: site.links["uplink"].state == "down", what="the uplink to notice")
    code, out = _run(capsys, "edge", "status", "--site", str(path))
    assert code == 0 and "uplink    down" in out and "backlog to send: 5 events" in out
    code, out = _run(capsys, "edge", "status", "--site", str(path), "--json")
    status = orjson.loads(out)
    assert status["uplink_backlog"] == 5 and status["oldest_unsent_age_s"] >= 1.0

    world.restore()
    wait_for(lambda: orjson.loads(_run(capsys, "edge", "status", "--site", str(path),
                                       "--json")[1])["uplink_backlog"] == 0, 30,
             "the backlog to drain")
    code, out = _run(capsys, "edge", "status", "--site", str(path))
    assert "uplink    up" in out and "oldest unsent: -" in out
