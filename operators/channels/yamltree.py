"""YAML with line numbers: mapping files are written by people, so every complaint names a line.

`yaml.safe_load` returns plain values and forgets where they were written. Here the document is
*composed* (PyYAML's node graph keeps `start_mark` for every node) and turned into a tree of
`Node`s: the plain value plus the 1-based line of the key that introduced it (or of the item /
scalar itself for list items and the root). Scalars are resolved by PyYAML's safe constructor, so
`1` is an int, `true` a bool and `"1"` a string, exactly as `safe_load` would give them.

Duplicate keys, which PyYAML silently resolves to the last one, are reported as problems: in a
mapping file a duplicated rule is almost always a mistake whose first copy would be ignored.

    >>> root = load_tree("a: 1\\nb:\\n  c: x\\n", "m.yaml")
    >>> root.value["b"].value["c"].line, root.value["b"].value["c"].value
    (3, 'x')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a mapping or channels file: where, which rule, what."""

    line: int
    where: str
    message: str

    def render(self, source: str) -> str:
        rule = f" {self.where}:" if self.where else ""
        return f"{source}:{self.line}:{rule} {self.message}"


class MappingFileError(ValueError):
    """A mapping (or channels) file that cannot be used; carries every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line)
        lines = "\n".join(p.render(source) for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in {source}:\n{lines}")


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value and the 1-based line people should look at for it.

    `value` is a dict of str -> Node (mappings), a list of Nodes (sequences) or a plain scalar
    (str, int, float, bool, None). Non-string mapping keys are kept as their YAML text (`0`,
    `true`): tables compare values by their text anyway (see operators.channels.values.text_key).
    """

    value: Any
    line: int
    kind: str = "scalar"  # scalar | map | seq
    key_lines: dict[str, int] = field(default_factory=dict)

    def plain(self) -> Any:
        """The value with every Node unwrapped (for constants and defaults)."""
        if self.kind == "map":
            return {k: v.plain() for k, v in self.value.items()}
        if self.kind == "seq":
            return [v.plain() for v in self.value]
        return self.value


class _Builder:
    def __init__(self, problems: list[Problem]) -> None:
        self._problems = problems
        self._scalars = SafeConstructor()

    def build(self, node: yaml.Node, line: int | None = None) -> Node:
        here = node.start_mark.line + 1 if line is None else line
        if isinstance(node, MappingNode):
            self._scalars.flatten_mapping(node)  # resolves `<<: *anchor` merges
            items: dict[str, Node] = {}
            key_lines: dict[str, int] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                key = self._key(key_node, key_line)
                if key is None:
                    continue
                if key in items:
                    self._problems.append(Problem(
                        key_line, key, f"duplicate key {key!r} (first at line {key_lines[key]}); "
                        "remove one"))
                    continue
                items[key] = self.build(value_node, key_line)
                key_lines[key] = key_line
            return Node(items, here, "map", key_lines)
        if isinstance(node, SequenceNode):
            return Node([self.build(item) for item in node.value], here, "seq")
        try:
            value = self._scalars.construct_object(node, deep=True)
        except ConstructorError as exc:
            self._problems.append(Problem(here, "", f"cannot read this value: {exc.problem}"))
            value = None
        return Node(value, here)

    def _key(self, key_node: yaml.Node, line: int) -> str | None:
        if not isinstance(key_node, ScalarNode):
            self._problems.append(Problem(line, "", "mapping keys must be plain text"))
            return None
        if key_node.tag.endswith(":str"):
            return str(key_node.value)
        value = self._scalars.construct_object(key_node)
        if isinstance(value, bool):
            return "true" if value else "false"
        return "null" if value is None else str(key_node.value)


def load_tree(text: str, source: str, problems: list[Problem] | None = None) -> Node:
    """Parse YAML `text` into a Node tree; raises MappingFileError naming the line when it is
    not YAML. Problems of a readable file (duplicate keys) are appended to `problems` when
    given, so the caller can report them with its own; otherwise they are raised too."""
    found: list[Problem] = [] if problems is None else problems
    try:
        composed = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(x for x in (exc.context, exc.problem) if x)
        if exc.context_mark is not None and exc.context_mark.line + 1 != line:
            what += f" (the construct started at line {exc.context_mark.line + 1})"
        raise MappingFileError(source, [Problem(line, "", f"not valid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise MappingFileError(source, [Problem(1, "", f"not valid YAML: {exc}")]) from None
    if composed is None:
        raise MappingFileError(source, [Problem(1, "", "the file is empty")])
    root = _Builder(found).build(composed)
    if found and problems is None:
        raise MappingFileError(source, found)
    return root
