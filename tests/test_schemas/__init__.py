"""Tests of `schemas/`: contracts, validation, the topic registry.

The examples the docs show are read from the docs themselves (`doc_examples`), so a doc example
that stops validating fails a test instead of misleading a producer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from schemas.validation import KINDS

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "DESIGN.md"
CONTRACTS = ROOT / "docs" / "contracts.md"

_KIND_IN_HEADING = re.compile(r"\b(" + "|".join(KINDS) + r")\b")
_FENCE = re.compile(r"^```(\w*)\s*$")


def doc_examples(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(kind, event) for every JSON object in the ```json blocks of a markdown file.

    The kind is the schema kind named in the nearest heading above the block (e.g.
    '### order_event', '## `fulfil.decisions` — `decision`'); blocks under a heading that names
    none are skipped. A block may hold several objects one after another.
    """
    examples: list[tuple[str, dict[str, Any]]] = []
    kind: str | None = None
    block: list[str] | None = None
    lang = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        fence = _FENCE.match(line)
        if block is None and line.startswith("#"):
            found = _KIND_IN_HEADING.search(line)
            kind = found.group(1) if found else None
        elif block is None and fence:
            block, lang = [], fence.group(1)
        elif block is not None and line.startswith("```"):
            if lang == "json" and kind is not None:
                examples.extend((kind, obj) for obj in _objects("\n".join(block)))
            block = None
        elif block is not None:
            block.append(line)
    return examples


def _objects(text: str) -> list[dict[str, Any]]:
    decoder, objects, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return objects
        obj, i = decoder.raw_decode(text, i)
        objects.append(obj)
