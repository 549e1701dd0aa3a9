"""docs/channels.md stays true: its worked example maps its payload to its printed event, and
its configuration and rule snippets compile."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from fulfil.channels_config import load_channels
from operators.channels import compile_mapping

DOC = Path(__file__).resolve().parents[2] / "docs" / "channels.md"
_EXAMPLE = re.compile(r"<!-- example: (\S+) -->\n```\w+\n(.*?)```", re.S)


def examples() -> list[tuple[str, str]]:
    return _EXAMPLE.findall(DOC.read_text(encoding="utf-8"))


def named(name: str) -> str:
    (text,) = [body for n, body in examples() if n == name]
    return text


def test_the_worked_example_maps_its_payload_to_the_documented_event():
    mapping = compile_mapping(named("tiktok.yaml"), "tiktok.yaml")
    event = mapping.map_bytes(named("tiktok_order.json").encode())
    assert event == orjson.loads(named("tiktok_event.json"))


def test_the_channels_file_example_loads(tmp_path):
    path = tmp_path / "channels.yaml"
    path.write_text(named("channels.yaml"))
    cfg = load_channels(path)
    tiktok = cfg.channels["tiktok"]
    assert tiktok.scheme.header == "X-Tts-Signature" and tiktok.scheme.prefix == "sha256="
    assert cfg.gateway.durability == "acked"


@pytest.mark.parametrize("snippet", [body for name, body in examples() if name == "rule"])
def test_rule_snippets_compile(snippet):
    head = "fulfil_mapping: 1\nchannel: doc\nfields:\n"
    compile_mapping(head + "".join(f"  {line}\n" for line in snippet.splitlines()), "doc.yaml")


def test_every_function_and_option_is_documented():
    from operators.channels.compiler import PIPELINE, SOURCES
    from operators.channels.functions import FUNCTIONS

    text = DOC.read_text(encoding="utf-8")
    for word in (*FUNCTIONS, *PIPELINE, *SOURCES):
        assert f"`{word}" in text, word
