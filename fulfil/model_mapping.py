"""Column mapping files for `fulfil model train/eval`: which column of a delivery history means
what. Every problem names the mapping file's line and, for columns, the data file's header.

    source: "Olist, Kaggle olistbr/brazilian-ecommerce, CC BY-NC-SA 4.0"   # cited in the model
    format: csv                      # csv | jsonl (default: from the file name)
    encoding: utf-8
    order: time                      # time | row (file order, for data without a time column)
    time:     {column: order_purchase_timestamp}              # format: iso (default) | strptime
    shipped:  {column: order_delivered_carrier_date}          # optional: transit starts here
    promise:  {date: order_estimated_delivery_date, end_of_day: true}  # or {days: COLUMN}
    actual:   {date: order_delivered_customer_date}           # or {days: COLUMN}
    late:     {column: Late_delivery_risk, late_values: [1]}  # optional: else actual > promise
    origin:   {join: sellers, column: seller_state}           # or COLUMN, or {constant: SP}
    destination: {join: customers, column: customer_state}
    service:  {column: Shipping Mode}                         # or {constant: olist}
    level:    {map: {Same Day: express}, default: standard}   # level of each service value
    weight_kg: {join: products, column: product_weight_g, scale: 0.001}
    include:  {order_status: [delivered]}                     # keep only these values
    exclude:  {Delivery Status: [Shipping canceled]}
    joins:
      - {name: items, file: olist_order_items_dataset.head.csv, by: order_id, key: order_id,
         first_by: order_item_id}
      - {name: sellers, file: olist_sellers_dataset.csv, from: items, by: seller_id,
         key: seller_id}

A field is a column name, or ``{column, join?, format?, scale?}``, or ``{constant}``. Dates are
read as naive local times (``iso`` = ``datetime.fromisoformat``; ``epoch_ms``/``epoch_s`` for
numbers). Join files are looked up beside the data file. Only mapped columns are ever read
into the model or shown in a message, so a file's other (e.g. personal) columns never surface.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from typing import Any

from operators.delivery_model import LEVELS
from operators.rules.yamlsrc import FileError, Node, Problem, load

__all__ = ["Field", "FileError", "Join", "Mapping", "compile_mapping"]

_FIELD_KEYS = {"column", "join", "format", "scale", "constant", "date", "days", "late_values",
               "end_of_day"}
_TOP = {"source", "format", "encoding", "order", "time", "shipped", "promise", "actual", "late",
        "origin", "destination", "service", "level", "weight_kg", "distance_km", "delay_hours",
        "load", "include", "exclude", "joins"}  # fmt: skip
_NUMERIC = ("weight_kg", "distance_km", "delay_hours", "load")
_DATES = ("time", "shipped")
_JOIN_KEYS = {"name", "file", "by", "key", "from", "first_by"}


@dataclass(frozen=True, slots=True)
class Field:
    """Where one value comes from: a column (of the main file or a join), or a constant."""

    name: str  # the mapping key ("promise", "origin", ...)
    line: int
    column: str | None = None
    join: str | None = None  # None = the main file
    constant: Any = None
    fmt: str = "iso"  # dates: iso | epoch_ms | epoch_s | a strptime format
    scale: float = 1.0
    kind: str = "value"  # value | date | days
    late_values: tuple[str, ...] = ()
    end_of_day: bool = False  # a date-only promise holds until the end of that day


@dataclass(frozen=True, slots=True)
class Join:
    """A lookup table: rows of ``file`` whose ``key`` column equals our row's ``by`` column.

    (Not ``on``: YAML 1.1 reads a bare ``on`` as the boolean true.)
    """

    name: str
    file: str
    by: str
    key: str
    line: int
    source: str | None = None  # another join's name: take ``by`` from its row
    first_by: str | None = None  # several matches: the smallest value of this column wins


@dataclass(frozen=True)
class Mapping:
    """A compiled mapping file (see the module doc)."""

    source_name: str
    sha256: str
    citation: str
    format: str | None
    encoding: str
    order: str  # time | row
    fields: dict[str, Field]
    level_map: dict[str, str]
    level_default: str
    level_line: int
    include: dict[str, tuple[str, ...]]
    exclude: dict[str, tuple[str, ...]]
    filter_lines: dict[str, int]
    joins: tuple[Join, ...] = field(default=())

    @property
    def transit_from(self) -> str:
        """``handover`` when a shipped column says when the carrier got the parcel."""
        return "handover" if "shipped" in self.fields else "order"

    def columns(self, join: str | None) -> list[tuple[str, int, str]]:
        """(column, mapping line, what for) of every column read from one file."""
        out = [(f.column, f.line, f.name) for f in self.fields.values()
               if f.column is not None and f.join == join]  # fmt: skip
        if join is None:
            out += [(c, self.filter_lines[c], "include/exclude") for c in self.filter_lines]
        for j in self.joins:
            if j.name == join:
                out.append((j.key, j.line, f"join {j.name} key"))
                if j.first_by:
                    out.append((j.first_by, j.line, f"join {j.name} first_by"))
            if j.source == join:
                out.append((j.by, j.line, f"join {j.name} by"))
        return out

    def check_columns(self, join: str | None, header: list[str], file_name: str) -> None:
        """Raise FileError naming each mapped column that ``header`` does not have."""
        problems = []
        for col, line, what in self.columns(join):
            if col not in header:
                close = difflib.get_close_matches(col, header, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(Problem(line, f"{what}: column {col!r} is not in {file_name}"
                                              f"{hint}"))  # fmt: skip
        if problems:
            raise FileError(self.source_name, problems)


def _str(node: Node | None, where: str, problems: list[Problem]) -> str | None:
    if node is None:
        return None
    if isinstance(node.value, (str, int, float)) and not isinstance(node.value, bool):
        return str(node.value)
    problems.append(Problem(node.line, f"{where}: must be text; got {node.value!r}"))
    return None


def _field(name: str, node: Node, joins: set[str], problems: list[Problem]) -> Field | None:
    if not isinstance(node.value, dict):
        if name in ("promise", "actual", "late"):
            what = "late_values" if name == "late" else "'date' or 'days'"
            problems.append(Problem(node.line, f"{name}: write {{column: ...}} with {what}"))
            return None
        col = _str(node, name, problems)
        kind = "date" if name in _DATES else "value"
        return None if col is None else Field(name, node.line, column=col, kind=kind)
    spec: dict[str, Node] = node.value
    for key, sub in spec.items():
        if key not in _FIELD_KEYS:
            close = difflib.get_close_matches(key, sorted(_FIELD_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(Problem(sub.line, f"{name}: unknown key {key!r}{hint}"))
    if "constant" in spec:
        return Field(name, node.line, constant=spec["constant"].value)
    kind = "date" if "date" in spec else "days" if "days" in spec else "value"
    if name in _DATES:
        kind = "date"
    col_node = spec.get("date") or spec.get("days") or spec.get("column")
    if col_node is None:
        problems.append(Problem(node.line, f"{name}: needs 'column' (or 'date'/'days', or "
                                           "'constant')"))  # fmt: skip
        return None
    if name in ("promise", "actual") and kind == "value":
        problems.append(Problem(node.line, f"{name}: say whether the column is a 'date' or "
                                           "a number of 'days'"))  # fmt: skip
    join = _str(spec.get("join"), f"{name}.join", problems)
    if join is not None and join not in joins:
        known = sorted(joins) or "none"
        problems.append(Problem(spec["join"].line,
                                f"{name}.join: no join named {join!r} (joins: {known})"))
    scale = spec.get("scale")
    if scale is not None and (isinstance(scale.value, bool)
                              or not isinstance(scale.value, (int, float))):  # fmt: skip
        problems.append(Problem(scale.line, f"{name}.scale: must be a number"))
        scale = None
    lv = spec.get("late_values")
    late_values = tuple(str(v.value) for v in lv.value) if lv and isinstance(lv.value, list) \
        else ()  # fmt: skip
    if name == "late" and not late_values:
        problems.append(Problem(node.line, "late: list the values meaning late, e.g. "
                                           "late_values: [1]"))  # fmt: skip
    return Field(
        name, node.line, column=_str(col_node, name, problems), join=join,
        fmt=_str(spec.get("format"), f"{name}.format", problems) or "iso",
        scale=float(scale.value) if scale is not None else 1.0, kind=kind,
        late_values=late_values,
        end_of_day=bool(spec["end_of_day"].value) if "end_of_day" in spec else False,
    )  # fmt: skip


def _joins(node: Node | None, problems: list[Problem]) -> tuple[Join, ...]:
    if node is None:
        return ()
    if not isinstance(node.value, list):
        problems.append(Problem(node.line, "joins: must be a list"))
        return ()
    out: list[Join] = []
    for item in node.value:
        spec = item.value if isinstance(item.value, dict) else {}
        for key, sub in spec.items():
            if key not in _JOIN_KEYS:
                problems.append(Problem(sub.line, f"joins: unknown key {key!r} (expected "
                                                  f"{', '.join(sorted(_JOIN_KEYS))})"))  # fmt: skip
        vals = {k: _str(spec.get(k), f"joins.{k}", problems) for k in _JOIN_KEYS}
        missing = [k for k in ("name", "file", "by", "key") if not vals[k]]
        if missing:
            problems.append(Problem(item.line, f"joins: needs {', '.join(missing)}"))
            continue
        if vals["from"] and vals["from"] not in {j.name for j in out}:
            problems.append(Problem(item.line, f"joins.from: {vals['from']!r} must name a join "
                                               "listed above it"))  # fmt: skip
        out.append(Join(vals["name"], vals["file"], vals["by"], vals["key"], item.line,
                        vals["from"], vals["first_by"]))  # fmt: skip
    return tuple(out)


def _values(node: Node | None, where: str, problems: list[Problem]) -> dict[str, tuple]:
    if node is None:
        return {}
    if not isinstance(node.value, dict):
        problems.append(Problem(node.line, f"{where}: must map columns to lists of values"))
        return {}
    out = {}
    for col, sub in node.value.items():
        vals = sub.value if isinstance(sub.value, list) else [sub]
        out[col] = tuple(str(v.value) for v in vals)
    return out


def compile_mapping(text: str, source: str = "<mapping>") -> Mapping:
    """Parse and check a mapping file; every problem found is in one FileError."""
    try:
        root = load(text, source)
    except FileError as exc:  # YAML 1.1 reads a bare on/yes/no key as a boolean
        raise FileError(source, [
            Problem(p.line, f"{p.message} (YAML reads a bare on/off/yes/no as true/false; "
                            "a join names its column with 'by')")
            if "got True" in p.message or "got False" in p.message else p
            for p in exc.problems
        ]) from None  # fmt: skip
    problems: list[Problem] = []
    if not isinstance(root.value, dict):
        raise FileError(source, [Problem(root.line, "the mapping must be a YAML mapping")])
    top: dict[str, Node] = root.value
    for key, node in top.items():
        if key not in _TOP:
            close = difflib.get_close_matches(key, sorted(_TOP), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(Problem(node.line, f"unknown key {key!r}{hint}"))
    joins = _joins(top.get("joins"), problems)
    names = {j.name for j in joins}
    fields = {}
    for name in ("time", "shipped", "promise", "actual", "late", "origin", "destination",
                 "service", *_NUMERIC):  # fmt: skip
        if name in top and top[name].value is not None:
            f = _field(name, top[name], names, problems)
            if f is not None:
                fields[name] = f
    order = _str(top.get("order"), "order", problems) or "time"
    if order not in ("time", "row"):
        problems.append(Problem(top["order"].line, f"order: 'time' or 'row'; got {order!r}"))
    if order == "time" and "time" not in fields:
        problems.append(Problem(root.line, "time: missing (or set 'order: row' when the data "
                                           "has no time column)"))  # fmt: skip
    dated = [f for f in ("promise", "actual") if f in fields and fields[f].kind == "date"]
    if dated and not {"time", "shipped"} & fields.keys():
        problems.append(Problem(fields[dated[0]].line, f"{dated[0]}: a date needs 'time' or "
                                                       "'shipped' to count days from"))  # fmt: skip
    if "late" not in fields and not {"promise", "actual"} <= fields.keys():
        problems.append(Problem(root.line, "needs 'late', or both 'promise' and 'actual', to "
                                           "know which deliveries were late"))  # fmt: skip
    level_map, level_default, level_line = {}, "standard", root.line
    if (lv := top.get("level")) is not None:
        level_line = lv.line
        spec = lv.value if isinstance(lv.value, dict) else {"constant": lv}
        level_default = _str(spec.get("default") or spec.get("constant"), "level",
                             problems) or "standard"  # fmt: skip
        if isinstance(spec.get("map"), Node) and isinstance(spec["map"].value, dict):
            level_map = {k: str(v.value) for k, v in spec["map"].value.items()}
        for value in (level_default, *level_map.values()):
            if value not in LEVELS:
                problems.append(Problem(lv.line, f"level: {value!r} is not a service level "
                                                 f"({', '.join(LEVELS)})"))  # fmt: skip
    fmt = _str(top.get("format"), "format", problems)
    if fmt not in (None, "csv", "jsonl"):
        problems.append(Problem(top["format"].line, f"format: csv or jsonl; got {fmt!r}"))
    include = _values(top.get("include"), "include", problems)
    exclude = _values(top.get("exclude"), "exclude", problems)
    filter_lines = {c: top[k].value[c].line for k in ("include", "exclude")
                    for c in (include if k == "include" else exclude) if k in top}  # fmt: skip
    if problems:
        raise FileError(source, problems)
    return Mapping(
        source_name=source, sha256=hashlib.sha256(text.encode()).hexdigest(),
        citation=_str(top.get("source"), "source", problems) or "",
        format=fmt, encoding=_str(top.get("encoding"), "encoding", problems) or "utf-8",
        order=order, fields=fields, level_map=level_map, level_default=level_default,
        level_line=level_line, include=include, exclude=exclude, filter_lines=filter_lines,
        joins=joins,
    )  # fmt: skip
