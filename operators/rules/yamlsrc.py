"""YAML with line numbers: rule and mapping files report problems at the line that has them.

`yaml.safe_load` forgets where a value came from. Operations staff edit these files by hand, so a
message like "line 14: unknown operator 'gte '" is the difference between a fix and a guess. We
compose the document with PyYAML's safe composer and keep every node's mark next to its value.
Only plain data is built (mappings, sequences, scalars resolved by the safe resolver): no tags
that construct objects, no anchors across documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a file: where, and what."""

    line: int  # 1-based; 0 = the file as a whole
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


class FileError(ValueError):
    """A rules or mapping file was rejected; `problems` lists every problem found."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:50])
        super().__init__(f"{source}: {len(problems)} problem(s)\n{shown}")


@dataclass(frozen=True, slots=True)
class Node:
    """A YAML value and the line it starts on. Mappings hold `{key: Node}`, lists `[Node]`."""

    value: Any
    line: int

    def plain(self) -> Any:
        """The value with every Node unwrapped (for fields stored verbatim)."""
        v = self.value
        if isinstance(v, dict):
            return {k: n.plain() for k, n in v.items()}
        if isinstance(v, list):
            return [n.plain() for n in v]
        return v


class _Loader(yaml.SafeLoader):
    """Safe composition only; we build the values ourselves to keep line numbers."""


def _build(node: yaml.Node, loader: _Loader, problems: list[Problem]) -> Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, loader, problems).value
            if not isinstance(key, str):
                problems.append(Problem(key_node.start_mark.line + 1,
                                        f"keys must be text; got {key!r}"))
                continue
            if key in out:
                problems.append(Problem(key_node.start_mark.line + 1,
                                        f"{key!r} appears twice in the same mapping"))
            out[key] = _build(value_node, loader, problems)
        return Node(out, line)
    if isinstance(node, yaml.SequenceNode):
        return Node([_build(n, loader, problems) for n in node.value], line)
    try:
        return Node(loader.construct_object(node, deep=True), line)
    except yaml.constructor.ConstructorError as exc:
        problems.append(Problem(line, f"cannot read this value: {exc.problem}"))
        return Node(None, line)


def load(text: str, source: str = "<text>") -> Node:
    """Parse one YAML document into Nodes; raises FileError with the line of a syntax error."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        # The context (where the unclosed list or mapping began) is the line to fix; the
        # problem mark is often the end of the file.
        mark = exc.context_mark or exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        what = f"{exc.context}: {exc.problem}" if exc.context else exc.problem
        raise FileError(source, [Problem(line, f"not valid YAML ({what})")]) from None
    except yaml.YAMLError as exc:
        raise FileError(source, [Problem(0, f"not valid YAML: {exc}")]) from None
    if root is None:
        raise FileError(source, [Problem(0, "the file is empty")])
    problems: list[Problem] = []
    try:
        tree = _build(root, loader, problems)
    finally:
        loader.dispose()
    if problems:
        raise FileError(source, problems)
    return tree
