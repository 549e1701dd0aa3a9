"""`fulfil model train/eval/show` on samples of the real data sets (read from ../shared)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from fulfil.cli import main

from .conftest import MAPPINGS

DATACO = "delivery-history/DataCoSupplyChainDataset.sample6000.csv"
ECOM = "delivery-history/E_Commerce_Shipping_Data.csv"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def train(capsys, data: Path, mapping: str, out: Path, *extra: str) -> dict:
    code, stdout, err = run(capsys, "model", "train", "--data", str(data), "--mapping",
                            str(MAPPINGS / mapping), "--out", str(out), *extra)  # fmt: skip
    assert code == 0, err
    assert f"wrote {out}" in stdout
    return orjson.loads(out.read_bytes())


def evaluate(capsys, model: Path, data: Path, mapping: str, *extra: str) -> tuple[int, str]:
    code, stdout, err = run(capsys, "model", "eval", "--model", str(model), "--data", str(data),
                            "--mapping", str(MAPPINGS / mapping), *extra)  # fmt: skip
    assert code == 0, err
    return code, stdout


def test_dataco_train_records_provenance_and_eval_scores_the_hold_out(
    capsys, sample_factory, tmp_path: Path
) -> None:
    data = sample_factory(DATACO, 1500)
    doc = train(capsys, data, "dataco.yaml", tmp_path / "m.json")
    d, split = doc["data"], doc["split"]
    assert d["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert d["rows_read"] == 1500
    assert d["rows_used"] == 1500 - d["skipped"].get(
        "excluded: Delivery Status in ['Shipping canceled']", 0)
    assert split["train_rows"] + split["holdout_rows"] == d["rows_used"]
    assert abs(split["holdout_rows"] - 0.2 * d["rows_used"]) <= 5  # ties at the cut go to eval
    assert split["train_last"] < split["cut_at"]
    assert doc["mapping"]["source"].startswith("DataCo Smart Supply Chain")
    assert doc["hyper"]["probs"][0] == 0.01 and doc["features"][0] == "bias"

    _, text = evaluate(capsys, tmp_path / "m.json", data, "dataco.yaml")
    assert "time-ordered hold-out: the latest 20%" in text
    assert "lane/mode late rate" in text and "calibration" in text
    _, js = evaluate(capsys, tmp_path / "m.json", data, "dataco.yaml", "--json")
    res = orjson.loads(js)
    assert res["rows"] == split["holdout_rows"] == sum(r["n"] for r in res["model"]["calibration"])
    assert 0.5 < res["baseline_lane_rate"]["auc"] <= 1.0
    assert 0.0 < res["model"]["brier"] < 0.25
    assert res["quantiles"]["rows"] == res["rows"]

    again = train(capsys, data, "dataco.yaml", tmp_path / "m2.json")
    assert again["version"] == doc["version"]  # same data, mapping, settings: same version


def test_eval_on_other_data_uses_only_rows_after_training(capsys, sample_factory,
                                                          tmp_path: Path) -> None:  # fmt: skip
    early = sample_factory(DATACO, 1000)
    doc = train(capsys, early, "dataco.yaml", tmp_path / "m.json", "--holdout", "0")
    assert doc["split"]["holdout_rows"] == 0
    later = sample_factory(DATACO, 3000)
    _, js = evaluate(capsys, tmp_path / "m.json", later, "dataco.yaml", "--json")
    res = orjson.loads(js)
    assert res["basis"].startswith("rows after the training period")
    assert 0 < res["rows"] < 3000


def test_ecommerce_has_no_time_so_the_hold_out_is_the_end_of_the_file(
    capsys, sample_factory, tmp_path: Path
) -> None:
    data = sample_factory(ECOM, 2000)
    doc = train(capsys, data, "ecommerce-shipping.yaml", tmp_path / "m.json")
    assert doc["split"]["ordered_by"] == "row" and doc["split"]["cut"] == "row 1600"
    assert doc["data"]["time_range"] is None
    assert doc["nodes"]["global"]["q"] is None  # no transit times in this file
    assert "kg_2" not in doc["unused_features"]  # weight is in the data
    _, js = evaluate(capsys, tmp_path / "m.json", data, "ecommerce-shipping.yaml", "--json")
    res = orjson.loads(js)
    assert res["rows"] == 400 and "quantiles" not in res


def test_olist_orders_train_and_eval(capsys, shared_dir: Path, tmp_path: Path) -> None:
    data = shared_dir / "data/olist/olist_orders_dataset.head.csv"
    doc = train(capsys, data, "olist-orders.yaml", tmp_path / "m.json")
    assert doc["transit_from"] == "order"
    assert doc["data"]["joins"]["customers"]["matched"] < 50  # the partial files join poorly
    _, js = evaluate(capsys, tmp_path / "m.json", data, "olist-orders.yaml", "--json")
    res = orjson.loads(js)
    assert res["quantiles"]["rows"] == res["rows"] == doc["split"]["holdout_rows"]
    handover = train(capsys, data, "olist-orders-handover.yaml", tmp_path / "h.json")
    assert handover["transit_from"] == "handover"
    median = doc["hyper"]["probs"].index(0.5)
    # purchase -> door includes the seller's handling: longer than hand-over -> door
    assert handover["nodes"]["global"]["q"][median] < doc["nodes"]["global"]["q"][median]
    code, text, _ = run(capsys, "model", "show", "--model", str(tmp_path / "h.json"))
    assert code == 0 and "coefficients:" in text


def test_input_problems_exit_1_with_the_line(capsys, sample_factory, tmp_path: Path) -> None:
    data = sample_factory(DATACO, 50)
    bad = tmp_path / "bad.yaml"
    bad.write_text((MAPPINGS / "dataco.yaml").read_text().replace("Order Region", "Order Regoin"))
    code, _, err = run(capsys, "model", "train", "--data", str(data), "--mapping", str(bad),
                       "--out", str(tmp_path / "m.json"))  # fmt: skip
    assert code == 1
    assert "column 'Order Regoin' is not in" in err and "did you mean 'Order Region'" in err
    assert not (tmp_path / "m.json").exists()
    tampered = tmp_path / "t.json"
    doc = train(capsys, data, "dataco.yaml", tmp_path / "ok.json")
    doc["coef"][0] = 9.0
    tampered.write_bytes(orjson.dumps(doc))
    code, _, err = run(capsys, "model", "eval", "--model", str(tampered), "--data", str(data),
                       "--mapping", str(MAPPINGS / "dataco.yaml"))  # fmt: skip
    assert code == 1 and "does not match its version" in err
