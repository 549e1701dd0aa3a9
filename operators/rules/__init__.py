"""Business rules as data: compiled once, evaluated per order (see `ruleset` for semantics)."""

from operators.rules.facts import order_facts
from operators.rules.ruleset import EMPTY, Hold, Outcome, RuleSet, compile_rules, empty_ruleset
from operators.rules.yamlsrc import FileError, Problem

__all__ = [
    "EMPTY",
    "FileError",
    "Hold",
    "Outcome",
    "Problem",
    "RuleSet",
    "compile_rules",
    "empty_ruleset",
    "order_facts",
]
