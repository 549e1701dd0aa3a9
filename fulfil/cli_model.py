"""`fulfil model ...`: train and evaluate the delivery-time model on a delivery history.

    fulfil model train --data FILE.csv|jsonl --mapping MAPPING.yaml --out model.json [--holdout 0.2]
    fulfil model eval  --model model.json --data FILE --mapping MAPPING.yaml [--json] [--all]
    fulfil model show  --model model.json

`train` fits on the earliest (1 - holdout) of the rows in time order (file order for data
without time) and records the data file's hash, row counts, skipped rows by reason, join
coverage, time range, split, hyper-parameters and features in the artifact; its version is a
hash of that content. `eval` scores the model on the rows it did not learn from: the same
hold-out when the data and mapping are the ones it was trained on, otherwise the rows after the
training period (or every row, with --all), next to the lane/mode late-rate baseline.

Exit codes: 0 ok, 1 the mapping, data or model file is unusable (every problem is printed).
Mapping files for the shared data sets are in fulfil/data/delivery/.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

__all__ = ["format_eval", "register"]

MAPPINGS_DIR = Path(__file__).resolve().parent / "data" / "delivery"


def _load_inputs(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    from fulfil.model_data import read_outcomes
    from fulfil.model_mapping import compile_mapping

    path = Path(args.mapping)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _Fail(f"cannot read mapping {path}: {exc.strerror}") from None
    mapping = compile_mapping(text, str(path))
    out, report = read_outcomes(args.data, mapping)
    return mapping, out, report


class _Fail(Exception):
    """A problem already phrased for the user."""


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000.0, UTC).strftime("%Y-%m-%d %H:%M")


def _split_meta(out: Any, mapping: Any, holdout: float, train: Any, test: Any,
                cut: float) -> dict[str, Any]:  # fmt: skip
    """The split as recorded in the artifact: times in ms (or row positions for `order: row`)."""
    by_time = mapping.order == "time"
    has_cut = math.isfinite(cut)
    last = float(out.time_ms[train].max()) if train.size else None
    return {
        "holdout": holdout, "ordered_by": mapping.order,
        "train_rows": int(train.size), "holdout_rows": int(test.size),
        "cut": (_iso(cut) if by_time else f"row {int(cut)}") if has_cut else None,
        "cut_at": (cut if by_time else int(cut)) if has_cut else None,
        "train_last": None if last is None else (last if by_time else int(last)),
    }  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from operators.delivery_metrics import time_split
    from operators.delivery_model import Hyper, fit

    mapping, out, report = _load_inputs(args)
    try:
        train, test, cut = time_split(out.time_ms, args.holdout)
    except ValueError as exc:
        raise _Fail(str(exc)) from None
    given = {k: getattr(args, k) for k in ("prior_strength", "rate_strength", "l2", "folds")}
    hyper = Hyper(**{k: v for k, v in given.items() if v is not None})
    meta = {
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "transit_from": mapping.transit_from,
        "data": report,
        "mapping": {"file": Path(args.mapping).name, "sha256": mapping.sha256,
                    "source": mapping.citation},
        "split": _split_meta(out, mapping, args.holdout, train, test, cut),
    }  # fmt: skip
    model = fit(out.take(train), hyper, meta)
    Path(args.out).write_bytes(model.to_json())
    print(_train_summary(model))
    print(f"wrote {args.out}")
    return 0


def _train_summary(model: Any) -> str:
    d = model.doc
    data, split, nodes = d["data"], d["split"], d["nodes"]
    skipped = ", ".join(f"{r}: {n}" for r, n in data["skipped"].items()) or "none"
    lines = [
        f"model {model.version} from {data['file']} (sha256 {data['sha256'][:12]})",
        f"  rows: {data['rows_read']} read, {data['rows_used']} used; skipped: {skipped}",
        f"  coverage: {data['coverage']}",
    ]
    for name, j in data["joins"].items():
        lines.append(f"  join {name}: {j['matched']}/{data['rows_read']} rows matched "
                     f"({j['file']}, {j['keys']} keys)")  # fmt: skip
    when = f"time {data['time_range'][0]} .. {data['time_range'][1]}" \
        if data["time_range"] else "file order (no time column)"  # fmt: skip
    lines += [
        f"  ordered by {when}; hold-out: latest {split['holdout']:.0%} = "
        f"{split['holdout_rows']} rows from {split['cut']}; trained on {split['train_rows']}",
        f"  transit counted from: {d['transit_from']}",
        f"  nodes: {len(nodes['services'])} services, {len(nodes['lane_levels'])} lane x level,"
        f" {len(nodes['cells'])} lane x service cells",
        f"  miss model: {len(d['features'])} features ({len(d['unused_features'])} absent from "
        f"the data), {d['fit']['iterations']} Newton steps, converged={d['fit']['converged']}",
    ]  # fmt: skip
    return "\n".join(lines)


def cmd_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from operators.delivery_eval import evaluate
    from operators.delivery_metrics import time_split

    model = _load_model(args.model)
    mapping, out, report = _load_inputs(args)
    d = model.doc
    split = d["split"]
    same = report["sha256"] == d["data"]["sha256"] and mapping.sha256 == d["mapping"]["sha256"]
    if args.all:
        rows, basis = np.arange(len(out)), "every row of the file (--all)"
    elif same:
        _, rows, _ = time_split(out.time_ms, split["holdout"])
        order = "time" if split["ordered_by"] == "time" else "file"
        basis = (f"{order}-ordered hold-out: the latest {split['holdout']:.0%} "
                 f"(from {split['cut']}), never seen in training")  # fmt: skip
    else:
        last = split["train_last"]
        rows = np.flatnonzero(out.time_ms > last) if mapping.order == "time" and last is not None \
            else np.arange(len(out))  # fmt: skip
        basis = "rows after the training period (other data than the model was trained on)"
    if rows.size == 0:
        raise _Fail("no rows to evaluate (the hold-out is empty: train with --holdout > 0)")
    res = evaluate(model, out.take(rows))
    res = {"model_version": model.version, "data": report["file"], "basis": basis, **res}
    if args.json:
        print(orjson.dumps(res, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())
    else:
        print(format_eval(res))
    return 0


def format_eval(res: dict[str, Any]) -> str:
    """The evaluation as a readable table (what docs/model.md quotes)."""
    lines = [
        f"model {res['model_version']} on {res['data']}: {res['basis']}",
        f"  rows {res['rows']}, labelled {res['labelled']}, late rate {res['late_rate']:.3f} "
        f"(training: {res['train_late_rate']:.3f})",
        f"  {'':24s}{'AUC':>7s}{'Brier':>8s}{'logloss':>9s}{'ECE':>7s}",
    ]
    for key, label in (("model", "model"), ("baseline_lane_rate", "lane/mode late rate"),
                       ("baseline_constant", "constant (train rate)"),
                       ("distribution_only", "distribution only")):  # fmt: skip
        if key not in res:
            continue
        s = res[key]
        lines.append(f"  {label:24s}{s['auc']:7.3f}{s['brier']:8.4f}{s['log_loss']:9.4f}"
                     f"{s['ece']:7.3f}")  # fmt: skip
    lines.append("  calibration (model; deciles of predicted probability):")
    lines.append(f"    {'n':>5s} {'predicted':>9s} {'observed':>9s}   range")
    for r in res["model"]["calibration"]:
        lines.append(f"    {r['n']:5d} {r['predicted']:9.3f} {r['observed']:9.3f}   "
                     f"{r['p_min']:.3f}..{r['p_max']:.3f}")  # fmt: skip
    q = res.get("quantiles")
    if q:
        cov_m = "/".join(f"{c:.2f}" for c in q["coverage_model"])
        cov_g = "/".join(f"{c:.2f}" for c in q["coverage_global"])
        lvls = "/".join(f"p{round(x * 100)}" for x in q["levels"])
        lines.append(f"  transit quantiles ({q['rows']} rows): coverage {lvls} model {cov_m}, "
                     f"global {cov_g}; pinball loss model {q['pinball_model']:.3f} d, "
                     f"global {q['pinball_global']:.3f} d")  # fmt: skip
    answered = ", ".join(f"{k} {v}" for k, v in res["answered_by"].items())
    lines.append(f"  lanes answered by: {answered}")
    return "\n".join(lines)


def _load_model(path: str) -> Any:
    from operators.delivery_model import DeliveryModel

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise _Fail(f"cannot read model {path}: {exc.strerror}") from None
    return DeliveryModel.from_json(data)


def cmd_show(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    print(_train_summary(model))
    coef = model.doc["coef"]
    pairs = zip(model.doc["features"], coef, strict=True)
    print("  coefficients: " + ", ".join(f"{f} {c:+.3f}" for f, c in pairs if c))
    return 0


def _guard(func: Any) -> Any:
    """Errors about inputs become a message and exit code 1 (never a traceback)."""

    def run(args: argparse.Namespace) -> int:
        from fulfil.model_data import DataError
        from fulfil.model_mapping import FileError
        from operators.delivery_model import ModelError

        try:
            return func(args)
        except (FileError, DataError, ModelError, _Fail) as exc:
            print(f"fulfil model {args.model_cmd}: {exc}", file=sys.stderr)
            return 1

    return run


def register(sub: Any) -> None:
    """Add `fulfil model train|eval|show` to the top-level parser.

    Imports nothing heavy: numba loads only when a model command runs (defaults of the
    hyper-parameters are ``operators.delivery_model.Hyper``'s, filled in by `cmd_train`).
    """
    model = sub.add_parser("model", help="train and evaluate the delivery-time model")
    msub = model.add_subparsers(dest="model_cmd", required=True)
    t = msub.add_parser("train", help="fit a model on a delivery history, write the artifact")
    t.add_argument("--data", required=True, help="CSV or JSONL delivery history")
    t.add_argument("--mapping", required=True, help=f"column mapping YAML (see {MAPPINGS_DIR})")
    t.add_argument("--out", required=True, help="model artifact to write (JSON)")
    t.add_argument("--holdout", type=float, default=0.2,
                   help="share of the latest rows kept out of training for eval (default 0.2)")
    t.add_argument("--prior-strength", type=float,
                   help="pseudo-observations a lane borrows from its parent distribution (20)")
    t.add_argument("--rate-strength", type=float, help="the same for late rates (20)")
    t.add_argument("--l2", type=float, help="ridge penalty of the miss model (1)")
    t.add_argument("--folds", type=int,
                   help="time blocks for forward-encoded lane features (5; 1 = in-sample)")
    t.set_defaults(func=_guard(cmd_train))
    e = msub.add_parser("eval", help="AUC, Brier, calibration on the time-ordered hold-out")
    e.add_argument("--model", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--mapping", required=True)
    e.add_argument("--all", action="store_true", help="score every row, not just the hold-out")
    e.add_argument("--json", action="store_true", help="the full report as JSON")
    e.set_defaults(func=_guard(cmd_eval))
    s = msub.add_parser("show", help="what a model was trained on, and its coefficients")
    s.add_argument("--model", required=True)
    s.set_defaults(func=_guard(cmd_show))
