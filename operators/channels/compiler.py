"""Compile a mapping file into closures, once; applying it is then plain function calls.

Why compile: the mapping runs for every raw payload of a channel, and re-reading YAML options per
payload would cost far more than the mapping itself. `compile_fields` walks the file once, checks
every rule (unknown keys, bad paths, unknown functions, tables, units, time zones, references to
fields not mapped yet) and collects *all* problems with their lines before giving up, so one run
of `fulfil channels check` shows everything that is wrong.

A rule (a "spec") is a mapping with exactly one *source* key, then options applied in a fixed
order, whatever order they are written in (docs/channels.md is the reference):

    when -> source (path | const | ref | compute | each) -> missing_if -> text -> split -> map
         -> time -> unit -> round -> as -> keep_if_matches -> default -> required

Any other mapping is an *object*: its keys are output fields, its values rules or objects.
Evaluation failures raise `MapFailure` naming the rule, its line and the payload field.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from operators.channels import values as V
from operators.channels.conditions import compile_condition
from operators.channels.functions import function_factory, make_map, resolve_table
from operators.channels.model import Getter, MapFailure, Rule, Scope
from operators.channels.paths import PathError, compile_path
from operators.channels.yamltree import Node, Problem

SOURCES = ("path", "const", "ref", "compute", "each")
PIPELINE = ("when", "missing_if", "text", "split", "map", "unmapped", "ignore_case", "time",
            "tz", "unit", "round", "as", "keep_if_matches", "default", "required")
COMPUTE_OPTIONS = ("args", "sep", "template", "table", "unmapped", "ignore_case")
EACH_OPTIONS = ("each", "fields", "item", "where", "when", "default", "required")


def _copy(value: Any) -> Callable[[], Any]:
    """Constants and defaults: a fresh copy per use when mutable (consumers may fill defaults)."""
    if isinstance(value, dict | list):
        return lambda: copy.deepcopy(value)
    return lambda: value


def _elementwise(conv: V.Converter) -> V.Converter:
    def apply(v: Any) -> Any:
        return [conv(x) for x in v] if v.__class__ is list else conv(v)

    return apply


class _Compiler:
    def __init__(self, tables: dict[str, dict[str, Any]]) -> None:
        self.problems: list[Problem] = []
        self.tables = tables
        self.rules: dict[str, Rule] = {}
        self.top_done: set[str] = set()

    def problem(self, line: int, where: str, message: str) -> None:
        self.problems.append(Problem(line, where, message))

    # -- dispatch ------------------------------------------------------------------------------

    def value(self, node: Node, out: str, each: str) -> Getter:
        """A rule or an object at output path `out` (`lines[].sku`) inside `each` ('' = top)."""
        name = out.replace("[]", "")
        if node.kind == "map" and any(k in node.value for k in SOURCES):
            return self.spec(node, out, each)
        if node.kind == "map":
            return self.obj(node, out, each, keep_empty=False)
        self.problem(node.line, name, f"a rule must be a mapping such as {{path: ...}} or "
                     f"{{const: ...}}; got {V.shown(node.value)}")
        return lambda s: V.MISSING

    def obj(self, node: Node, out: str, each: str, keep_empty: bool, top: bool = False
            ) -> Getter:
        if not node.value:
            self.problem(node.line, out.replace("[]", ""), "an object needs at least one field")
        if out:
            self.rules[out] = Rule(out.replace("[]", ""), node.line, "", each)
        fields = []
        for key, child in node.value.items():
            child_out = f"{out}.{key}" if out else key
            fields.append((key, self.value(child, child_out, each)))
            if top:
                self.top_done.add(key)
        frozen = tuple(fields)
        if top:
            def build_top(s: Scope) -> Any:
                target = s.out
                for key, get in frozen:
                    v = get(s)
                    if v is not V.MISSING:
                        target[key] = v
                return target

            return build_top

        def build(s: Scope) -> Any:
            result = {}
            for key, get in frozen:
                v = get(s)
                if v is not V.MISSING:
                    result[key] = v
            return result if result or keep_empty else V.MISSING

        return build

    # -- one rule ------------------------------------------------------------------------------

    def spec(self, node: Node, out: str, each: str) -> Getter:
        name, opts = out.replace("[]", ""), node.value
        sources = [k for k in SOURCES if k in opts]
        if not sources:  # a condition's operand without one: {equals: BR}
            self.problem(node.line, name, f"needs a source: one of {', '.join(SOURCES)}")
            return lambda s: V.MISSING
        if len(sources) > 1:
            self.problem(node.line, name,
                         f"a rule has exactly one source; got {', '.join(sources)}")
        kind = sources[0]
        allowed = {"each": EACH_OPTIONS, "compute": (*PIPELINE, *COMPUTE_OPTIONS, "compute")}
        known = allowed.get(kind, (*PIPELINE, kind))
        for key in opts:
            if key not in known:
                self.problem(node.key_lines[key], name, f"unknown option {key!r} for a {kind} "
                             f"rule; options: {', '.join(k for k in known if k != kind)}")
        rule = Rule(name, node.line, self.first_path(node), each)
        self.rules[out] = rule
        if kind == "each":
            source = self.each(node, out, rule)
        else:
            source = self.source(kind, node, out, each, rule)
        if kind == "compute":
            source = _guarded(source, rule)
        return self.pipeline(node, source, rule, each)

    def first_path(self, node: Node) -> str:
        """The first payload path a rule reads (for naming the field in messages)."""
        if node.kind == "map":
            for key in ("path", "each"):
                if key in node.value and isinstance(node.value[key].value, str):
                    return node.value[key].value
            for child in node.value.get("args", Node([], 0, "seq")).value:
                found = self.first_path(child)
                if found:
                    return found
        return ""

    def source(self, kind: str, node: Node, out: str, each: str, rule: Rule) -> Getter:
        opts, name = node.value, rule.name
        arg = opts[kind]
        if kind == "const":
            if arg.value is None:  # null is 'no value' everywhere in the language
                return lambda s: V.MISSING
            make = _copy(arg.plain())
            return lambda s: make()
        if kind in ("path", "ref"):
            try:
                p = compile_path(arg.value)
            except PathError as exc:
                self.problem(arg.line, name, str(exc))
                return lambda s: V.MISSING
            if kind == "ref":
                first = re.split(r"[.\[]", p.text, maxsplit=1)[0]
                if first not in self.top_done:
                    self.problem(arg.line, name, f"ref {p.text!r}: refers to a field that is not "
                                 "mapped above this rule (refs read the order being built)")
                pget = p.get
                return lambda s: pget(s.out)
            if p.is_index:
                return lambda s: s.index
            pget = p.get
            if p.from_root or not each:
                return lambda s: pget(s.root)
            return lambda s: pget(s.item)
        fn = arg.value  # compute
        if not isinstance(fn, str):
            self.problem(arg.line, name, "compute names a function, e.g. compute: concat")
            return lambda s: V.MISSING
        args_node = opts.get("args")
        if args_node is not None and args_node.kind != "seq":
            self.problem(args_node.line, name, "args must be a list")
            args_node = None
        args = [self.arg(a, f"{out}.args[{i}]", each)
                for i, a in enumerate(args_node.value if args_node else [])]
        fn_opts = {k: opts[k].plain() for k in ("sep", "template", "table") if k in opts}
        if fn == "lookup":
            fn_opts.update({k: opts[k].plain() for k in ("unmapped", "ignore_case") if k in opts})
        try:
            get = function_factory(fn, self.tables)(args, fn_opts)
        except V.OptionError as exc:
            self.problem(arg.line, name, f"compute {fn}: {exc}")
            return lambda s: V.MISSING
        for left in fn_opts:
            self.problem(opts[left].line, name, f"compute {fn} takes no {left!r} option")
        return get

    def arg(self, node: Node, out: str, each: str) -> Getter:
        """A function argument: a rule (mapping) or a literal (scalar or list)."""
        if node.kind == "map":
            return self.spec(node, out, each) if any(k in node.value for k in SOURCES) \
                else self.obj(node, out, each, keep_empty=False)
        make = _copy(node.plain())
        return lambda s: make()

    def each(self, node: Node, out: str, rule: Rule) -> Getter:
        opts, name = node.value, rule.name
        try:
            p = compile_path(opts["each"].value)
        except PathError as exc:
            self.problem(opts["each"].line, name, str(exc))
            return lambda s: V.MISSING
        inner = f"{rule.each}[].{p.text}" if rule.each and not p.from_root else p.text
        if ("fields" in opts) == ("item" in opts):
            self.problem(node.line, name, "each needs fields: (an object per element) or item: "
                         "(one rule per element), not both")
            return lambda s: V.MISSING
        if "fields" in opts:
            fields = opts["fields"]
            if fields.kind != "map":
                self.problem(fields.line, name, "fields must be a mapping of output fields")
                return lambda s: V.MISSING
            element = self.obj(fields, f"{out}[]", inner, keep_empty=True)
        else:
            element = self.value(opts["item"], f"{out}[]", inner)
        where = self.condition(opts["where"], name, inner) if "where" in opts else None
        pget, from_root, text = p.get, p.from_root, p.text.removeprefix("$.")

        def get(s: Scope) -> Any:
            arr = pget(s.root if from_root or not s.prefix else s.item)
            if arr is V.MISSING:
                return V.MISSING
            base = text if from_root or not s.prefix else f"{s.prefix}.{text}"
            if arr.__class__ is not list:
                raise MapFailure(rule, base, "array", f"{base} must be an array; got "
                                 f"{V.type_name(arr)} {V.shown(arr)}")
            result: list[Any] = []
            kept: list[int] | None = None
            for i, el in enumerate(arr):
                es = Scope(s.root, el, i, s.out, f"{base}[{i}]", s.kept)
                v = V.MISSING if where is not None and not where(es) else element(es)
                if v is V.MISSING:
                    if kept is None:
                        kept = list(range(len(result)))
                    continue
                result.append(v)
                if kept is not None:
                    kept.append(i)
            if kept is not None:
                s.kept[out] = kept
            return result

        return get

    # -- options, in pipeline order ------------------------------------------------------------

    def pipeline(self, node: Node, source: Getter, rule: Rule, each: str) -> Getter:
        opts, name = node.value, rule.name
        convs: list[V.Converter] = []

        def opt(key: str, build: Callable[[Any], V.Converter], elementwise: bool = True) -> None:
            if key not in opts:
                return
            try:
                conv = build(opts[key].plain())
            except (V.OptionError, TypeError, ValueError) as exc:
                self.problem(opts[key].line, name, f"{key}: {exc}")
                return
            convs.append(_elementwise(conv) if elementwise else conv)

        def missing_if(values: Any) -> V.Converter:
            if not isinstance(values, list):
                raise V.OptionError("missing_if takes a list of values, e.g. [0, '']")
            keys = {V.text_key(v) for v in values}

            def conv(v: Any) -> Any:
                if v.__class__ is list:
                    return [x for x in v if V.text_key(x) not in keys]
                return V.MISSING if V.text_key(v) in keys else v

            return conv

        def table(spec: Any) -> V.Converter:
            tbl, tname = resolve_table(spec, self.tables)
            unmapped = opts["unmapped"].plain() if "unmapped" in opts else "error"
            return make_map(tbl, unmapped, bool(opts.get("ignore_case", Node(False, 0)).value),
                            tname)

        def keep(pattern: Any) -> V.Converter:
            ok = V.make_matches(pattern)
            return lambda v: ([x for x in v if ok(x)] if v.__class__ is list
                              else (v if ok(v) else V.MISSING))

        def as_type(kind: Any) -> V.Converter:
            if kind not in V.AS_TYPES:
                raise V.OptionError(f"unknown type {kind!r}; use {', '.join(V.AS_TYPES)}")
            return V.AS_TYPES[kind]

        def unit(spec: Any) -> V.Converter:
            if not isinstance(spec, dict) or set(spec) != {"from", "to"}:
                raise V.OptionError("unit takes {from: kg, to: g}")
            return V.make_unit(spec["from"], spec["to"])

        tz = opts["tz"].plain() if "tz" in opts else None
        for dependent, needs in (("tz", "time"), ("unmapped", "map"), ("ignore_case", "map")):
            lookup = "compute" in opts and opts["compute"].value == "lookup"
            if dependent in opts and needs not in opts and not lookup:
                self.problem(opts[dependent].line, name, f"{dependent} only applies with {needs}")
        opt("missing_if", missing_if, elementwise=False)
        opt("text", lambda ops: V.make_text(ops if isinstance(ops, list) else [ops]))
        opt("split", V.make_split, elementwise=False)
        opt("map", table, elementwise=False)
        opt("time", lambda fmt: V.make_time(fmt, tz))
        opt("unit", unit)
        opt("round", V.make_round)
        opt("as", as_type)
        opt("keep_if_matches", keep, elementwise=False)
        when = self.condition(opts["when"], name, each) if "when" in opts else None
        default = _copy(opts["default"].plain()) if "default" in opts else None
        required = bool(opts["required"].value) if "required" in opts else False
        frozen = tuple(convs)
        field_of = _field_namer(rule)
        if when is None and default is None and not required:
            if not frozen:
                return source  # a bare path or constant: nothing to wrap
            if len(frozen) == 1:
                (only,) = frozen

                def get_one(s: Scope) -> Any:  # the common `{path: x, as: y}` rule
                    v = source(s)
                    if v is V.MISSING:
                        return v
                    try:
                        return only(v)
                    except V.Mismatch as exc:
                        raise MapFailure(rule, field_of(s), exc.check, exc.message) from None
                    except ArithmeticError:
                        raise MapFailure(rule, field_of(s), "number", "number out of range") \
                            from None

                return get_one

        def get(s: Scope) -> Any:
            if when is not None and not when(s):
                return V.MISSING
            v = source(s)
            if v is not V.MISSING and frozen:
                try:
                    for conv in frozen:
                        v = conv(v)
                        if v is V.MISSING:
                            break
                except V.Mismatch as exc:
                    raise MapFailure(rule, field_of(s), exc.check, exc.message) from None
                except ArithmeticError:
                    raise MapFailure(rule, field_of(s), "number", "number out of range") \
                        from None
            if v is V.MISSING:
                if default is not None:
                    return default()
                if required:
                    field = field_of(s)
                    raise MapFailure(rule, field, "required",
                                     f"{field or rule.name} is missing (or null) in the payload")
            return v

        return get

    def condition(self, node: Node, name: str, each: str) -> Callable[[Scope], bool]:
        return compile_condition(self, node, name, each)


def _guarded(fn: Getter, rule: Rule) -> Getter:
    """A computed function's failures (text where a number was due...) as MapFailures."""
    field_of = _field_namer(rule)

    def get(s: Scope) -> Any:
        try:
            return fn(s)
        except V.Mismatch as exc:
            raise MapFailure(rule, field_of(s), exc.check, exc.message) from None
        except ArithmeticError:
            raise MapFailure(rule, field_of(s), "number", "number out of range") from None

    return get


def _field_namer(rule: Rule) -> Callable[[Scope], str]:
    """The payload field a failing rule was reading, with the element index filled in."""
    path = rule.path
    if not path or path == "@index":
        return lambda s: s.prefix
    if path.startswith("$."):
        return lambda s: path[2:]
    return lambda s: f"{s.prefix}.{path}" if s.prefix and rule.each else path


@dataclass(frozen=True, slots=True)
class Compiled:
    """The output of compiling `fields`: a builder and the rule index (output path -> Rule)."""

    build: Getter
    rules: dict[str, Rule]


def compile_fields(fields: Node, tables: dict[str, dict[str, Any]],
                   preset: tuple[str, ...] = ()) -> tuple[Compiled, list[Problem]]:
    """Compile the `fields` object of a mapping file; `preset` names fields set beforehand."""
    c = _Compiler(tables)
    c.top_done.update(preset)
    if fields.kind != "map":
        c.problem(fields.line, "fields", "fields must be a mapping of output fields to rules")
        return Compiled(lambda s: s.out, {}), c.problems
    build = c.obj(fields, "", "", keep_empty=True, top=True)
    return Compiled(build, c.rules), c.problems
