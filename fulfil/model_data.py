"""Read a delivery history (CSV or JSONL) through a mapping into `Outcomes` columns.

Why errors are data here: real histories are messy (undelivered orders, blank dates, a join that
matches a quarter of the rows). A bad row is skipped and *counted* by reason, with the first
source lines as examples, and every join reports how many rows it matched -- the report goes
into the model artifact, so a model always says what it was (not) trained on. Only problems with
the mapping itself (a column that does not exist, a missing join file) stop the run, as a
FileError naming the mapping line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from fulfil.model_mapping import Field, FileError, Mapping
from operators.delivery_model import UNKNOWN, Outcomes
from operators.rules.yamlsrc import Problem

__all__ = ["DataError", "file_sha256", "read_outcomes"]

DAY_MS = 86_400_000.0
_EXAMPLES = 3


class DataError(ValueError):
    """The data file cannot be read at all (missing, empty, not CSV/JSONL)."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rows(path: Path, fmt: str, encoding: str) -> tuple[list[str], Iterator[tuple[int, Any]]]:
    """(header, iterator of (line, row)); a CSV row is a list, a JSONL row a dict."""
    try:
        f = path.open(encoding=encoding, newline="")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if fmt == "jsonl":
        lines = [(i, ln) for i, ln in enumerate(f, 1) if ln.strip()]
        f.close()
        try:
            objs = [(i, json.loads(ln)) for i, ln in lines]
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not JSON lines ({exc})") from None
        header = sorted({k for _, o in objs[:1000] if isinstance(o, dict) for k in o})
        return header, iter(objs)
    reader = csv.reader(f)
    try:
        header = [h.lstrip("\ufeff").strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{path}: empty file") from None

    def it() -> Iterator[tuple[int, Any]]:
        with f:
            for row in reader:
                yield reader.line_num, row

    return header, it()


class _Table:
    """Rows of one file reduced to the mapped columns: ``get(row, column) -> str | None``."""

    def __init__(self, header: list[str], fmt: str) -> None:
        self.pos = {c: i for i, c in enumerate(header)}
        self.jsonl = fmt == "jsonl"

    def get(self, row: Any, col: str) -> str | None:
        if self.jsonl:
            v = row.get(col) if isinstance(row, dict) else None
        else:
            i = self.pos[col]
            v = row[i] if i < len(row) else None
        if v is None:
            return None
        v = str(v).strip()
        return v or None


def _fmt(path: Path, mapping: Mapping) -> str:
    if mapping.format:
        return mapping.format
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def _load_join(base: Path, mapping: Mapping, j: Any,
               report: dict) -> tuple[dict[str, Any], set[str]]:  # fmt: skip
    """(key -> the row's mapped columns, keys with several rows); ``first_by`` picks the row
    with the smallest value of that column, otherwise the first in the file wins."""
    path = base / j.file
    if not path.is_file():
        problem = Problem(j.line, f"join {j.name}: file {j.file!r} not found beside the data")
        raise FileError(mapping.source_name, [problem])
    fmt = _fmt(path, mapping)
    header, rows = _rows(path, fmt, mapping.encoding)
    mapping.check_columns(j.name, header, j.file)
    t = _Table(header, fmt)
    cols = sorted({c for c, _, _ in mapping.columns(j.name)})
    table: dict[str, Any] = {}
    multiple: set[str] = set()
    for _, row in rows:
        rec = {c: t.get(row, c) for c in cols}
        key = rec[j.key]
        if key is None:
            continue
        old = table.get(key)
        if old is not None:
            multiple.add(key)
            if not j.first_by or _order_key(rec[j.first_by]) >= _order_key(old[j.first_by]):
                continue
        table[key] = rec
    report["joins"][j.name] = {"file": j.file, "keys": len(table), "matched": 0,
                               "several_rows": len(multiple), "matched_several": 0}  # fmt: skip
    return table, multiple


def _order_key(v: str | None) -> tuple:
    try:
        return (0, float(v), "")
    except (TypeError, ValueError):
        return (1, 0.0, v or "")


def _date(v: str, fmt: str) -> datetime:
    if fmt == "iso":
        return datetime.fromisoformat(v)
    if fmt in ("epoch_ms", "epoch_s"):
        x = float(v) / (1000.0 if fmt == "epoch_ms" else 1.0)
        return datetime.fromtimestamp(x, UTC).replace(tzinfo=None)
    return datetime.strptime(v, fmt)


def _ms(dt: datetime) -> float:
    """Naive times are the source's local wall clock; stored as if UTC (only order matters)."""
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000.0


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def read_outcomes(data: str | Path, mapping: Mapping) -> tuple[Outcomes, dict[str, Any]]:
    """Every usable row of ``data`` as `Outcomes` (file order) and a report of what happened."""
    path = Path(data)
    if not path.is_file():
        raise DataError(f"data file {path} not found")
    fmt = _fmt(path, mapping)
    header, rows = _rows(path, fmt, mapping.encoding)
    mapping.check_columns(None, header, path.name)
    main = _Table(header, fmt)
    main_cols = sorted({c for c, _, _ in mapping.columns(None)})
    report: dict[str, Any] = {"file": path.name, "sha256": file_sha256(path), "format": fmt,
                              "joins": {}}  # fmt: skip
    tables = {j.name: _load_join(path.parent, mapping, j, report) for j in mapping.joins}
    skipped: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    examples: dict[str, list[int]] = {}
    cols: dict[str, list] = {k: [] for k in ("time_ms", "origin", "dest", "service", "level",
                             "promise_days", "actual_days", "late", "weight_kg", "distance_km",
                             "dow", "hour", "delay_hours", "load", "line")}  # fmt: skip
    agree = Counter()
    n_read = 0
    for line, raw in rows:
        n_read += 1
        rec = {c: main.get(raw, c) for c in main_cols}
        try:
            values = _row(rec, tables, mapping, report, n_read - 1, notes, agree)
        except _Skip as s:
            skipped[s.reason] += 1
            examples.setdefault(s.reason, [])
            if len(examples[s.reason]) < _EXAMPLES:
                examples[s.reason].append(line)
            continue
        values["line"] = line
        for k, v in values.items():
            cols[k].append(v)
    if n_read == 0:
        raise DataError(f"{path}: no data rows")
    out = Outcomes(**{k: np.array(v, dtype=object if k in ("origin", "dest", "service", "level")
                                  else np.int64 if k in ("late", "line") else np.float64)
                      for k, v in cols.items()})  # fmt: skip
    report.update(_summary(out, mapping, n_read, skipped, examples, notes, agree))
    return out, report


def _get(f: Field | None, joined: dict[str | None, Any]) -> str | None:
    if f is None:
        return None
    if f.column is None:
        return None if f.constant is None else str(f.constant)
    row = joined.get(f.join)
    return None if row is None else row.get(f.column)


def _row(rec: dict, tables: dict, mapping: Mapping, report: dict, pos: int,
         notes: Counter, agree: Counter) -> dict[str, Any]:  # fmt: skip
    """One data row -> column values; raises _Skip(reason) when it cannot be used."""
    for col, allowed in mapping.include.items():
        if rec.get(col) not in allowed:
            raise _Skip(f"excluded: {col} not in {list(allowed)}")
    for col, banned in mapping.exclude.items():
        if rec.get(col) in banned:
            raise _Skip(f"excluded: {col} in {list(banned)}")
    joined: dict[str | None, Any] = {None: rec}
    for j in mapping.joins:
        src = joined.get(j.source)
        key = None if src is None else src.get(j.by)
        table, multiple = tables[j.name]
        hit = table.get(key) if key is not None else None
        joined[j.name] = hit
        if hit is not None:
            report["joins"][j.name]["matched"] += 1
            report["joins"][j.name]["matched_several"] += key in multiple
    fl = mapping.fields
    t_ms = dow = hour = math.nan
    start = math.nan
    if "time" in fl:
        v = _get(fl["time"], joined)
        try:
            dt = _date(v, fl["time"].fmt) if v else None
        except ValueError:
            raise _Skip(f"time: cannot read as {fl['time'].fmt}") from None
        if dt is None:
            raise _Skip("time: empty")
        t_ms = start = _ms(dt)
        dow, hour = float(dt.weekday()), dt.hour + dt.minute / 60.0
    if mapping.order == "row":
        t_ms = float(pos)
    if "shipped" in fl:
        v = _get(fl["shipped"], joined)
        try:
            start = _ms(_date(v, fl["shipped"].fmt)) if v else math.nan
        except ValueError:
            raise _Skip(f"shipped: cannot read as {fl['shipped'].fmt}") from None
        if math.isnan(start):
            raise _Skip("shipped: empty (never handed to the carrier)")
    promise = _days(fl.get("promise"), joined, start)
    actual = _days(fl.get("actual"), joined, start)
    if actual < 0:
        notes["actual: before the start of transit (counted as 0 days)"] += 1
    computed = -1 if math.isnan(promise) or math.isnan(actual) else int(actual > promise)
    late = computed
    if "late" in fl:
        v = _get(fl["late"], joined)
        late = -1 if v is None else int(v in fl["late"].late_values)
        if late >= 0 and computed >= 0:
            agree["agree" if late == computed else "disagree"] += 1
    if late < 0 and math.isnan(actual):
        raise _Skip("no outcome (not delivered / no late flag)")
    service = _get(fl.get("service"), joined) or UNKNOWN
    level = mapping.level_map.get(service, mapping.level_default)
    nums = {}
    for name in ("weight_kg", "distance_km", "delay_hours", "load"):
        v = _get(fl.get(name), joined)
        try:
            nums[name] = math.nan if v is None else float(v) * fl[name].scale
        except ValueError:
            notes[f"{name}: not a number (left unknown)"] += 1
            nums[name] = math.nan
    return {
        "time_ms": t_ms, "origin": _get(fl.get("origin"), joined) or UNKNOWN,
        "dest": _get(fl.get("destination"), joined) or UNKNOWN, "service": service,
        "level": level, "promise_days": promise, "actual_days": actual, "late": late,
        "dow": dow, "hour": hour, **nums,
    }  # fmt: skip


def _days(f: Field | None, joined: dict, start: float) -> float:
    v = _get(f, joined)
    if f is None or v is None:
        return math.nan
    if f.kind == "days":
        try:
            return float(v) * f.scale
        except ValueError:
            raise _Skip(f"{f.name}: not a number of days") from None
    try:
        dt = _date(v, f.fmt)
    except ValueError:
        raise _Skip(f"{f.name}: cannot read as {f.fmt}") from None
    ms = _ms(dt)
    if f.end_of_day:
        ms = math.floor(ms / DAY_MS) * DAY_MS + DAY_MS
    return (ms - start) / DAY_MS


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, UTC).strftime("%Y-%m-%d %H:%M")


def _summary(out: Outcomes, mapping: Mapping, n_read: int, skipped: Counter,
             examples: dict, notes: Counter, agree: Counter) -> dict[str, Any]:  # fmt: skip
    o_known = out.origin != UNKNOWN
    d_known = out.dest != UNKNOWN
    n = len(out)
    times = out.time_ms
    return {
        "rows_read": n_read, "rows_used": n,
        "skipped": dict(skipped.most_common()), "skipped_examples": examples,
        "notes": dict(notes),
        "coverage": {
            "origin_known": int(o_known.sum()), "destination_known": int(d_known.sum()),
            "lane_known": int((o_known & d_known).sum()),
            "promise_known": int(np.isfinite(out.promise_days).sum()),
            "transit_known": int(np.isfinite(out.actual_days).sum()),
            "weight_known": int(np.isfinite(out.weight_kg).sum()),
            "labelled": int((out.late >= 0).sum()),
        },
        "label": {"from": "column" if "late" in mapping.fields else "actual > promise",
                  **({"agrees_with_actual_vs_promise": agree["agree"],
                      "disagrees": agree["disagree"]} if agree else {})},
        "ordered_by": mapping.order,
        "time_range": None if mapping.order == "row" or n == 0
        else [_iso(float(times.min())), _iso(float(times.max()))],
    }  # fmt: skip
