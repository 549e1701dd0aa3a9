"""Mapping files: every problem names the mapping line (and the column); bad rows are counted,
not fatal; only mapped columns are ever read."""

from __future__ import annotations

from pathlib import Path

import pytest

from fulfil.model_data import read_outcomes
from fulfil.model_mapping import FileError, compile_mapping

from .conftest import MAPPINGS

DATACO = "delivery-history/DataCoSupplyChainDataset.sample6000.csv"


def _problems(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(p) for p in exc.value.problems]


@pytest.mark.parametrize("name", ["dataco", "ecommerce-shipping", "olist-orders",
                                  "olist-orders-handover"])
def test_shipped_mappings_compile(name: str) -> None:
    path = MAPPINGS / f"{name}.yaml"
    m = compile_mapping(path.read_text(), str(path))
    assert m.citation  # every shipped mapping cites its source


def test_a_misspelt_column_is_named_with_its_line_and_a_suggestion(sample_factory) -> None:
    data = sample_factory(DATACO, 20)
    text = (MAPPINGS / "dataco.yaml").read_text().replace(
        "{column: Shipping Mode}", "{column: Shiping Mode}")
    m = compile_mapping(text, "dataco.yaml")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "Shiping Mode" in ln)
    with pytest.raises(FileError) as exc:
        read_outcomes(data, m)
    assert _problems(exc) == [f"line {line}: service: column 'Shiping Mode' is not in "
                              f"{data.name} (did you mean 'Shipping Mode'?)"]


def test_structural_problems_are_all_reported_with_lines() -> None:
    text = "\n".join([
        "time: {column: t}",                          # 1
        "promise: {column: p}",                        # 2: date or days?
        "actual: {days: a}",                           # 3
        "late: {column: l}",                           # 4: no late_values
        "origen: {column: o}",                         # 5: typo
        "level: {constant: overnight}",                # 6: not a level
        "weight_kg: {column: w, join: products}",      # 7: no such join
        "joins:",                                      # 8
        "  - {name: x, file: f.csv, key: b}",          # 9: no 'by'
    ])  # fmt: skip
    with pytest.raises(FileError) as exc:
        compile_mapping(text, "m.yaml")
    got = _problems(exc)
    assert any(p.startswith("line 2: promise:") and "'date' or a number of 'days'" in p
               for p in got)  # fmt: skip
    assert any(p.startswith("line 4: late:") for p in got)
    assert "line 5: unknown key 'origen' (did you mean 'origin'?)" in got
    assert any(p.startswith("line 6: level: 'overnight'") for p in got)
    assert any(p.startswith("line 7: weight_kg.join: no join named 'products'") for p in got)
    assert "line 9: joins: needs by" in got


def test_a_bare_on_key_gets_a_hint() -> None:
    with pytest.raises(FileError) as exc:
        compile_mapping("joins:\n  - {name: x, file: f.csv, on: a, key: b}\n", "m.yaml")
    (problem,) = _problems(exc)
    assert problem.startswith("line 2: keys must be text; got True") and "'by'" in problem


def test_a_missing_join_file_names_its_line(shared_dir: Path) -> None:
    text = (MAPPINGS / "olist-orders.yaml").read_text().replace(
        "olist_sellers_dataset.csv", "no_such_sellers.csv")
    m = compile_mapping(text, "olist.yaml")
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "no_such_sellers" in ln)
    with pytest.raises(FileError) as exc:
        read_outcomes(shared_dir / "data/olist/olist_orders_dataset.head.csv", m)
    assert _problems(exc) == [f"line {line}: join sellers: file 'no_such_sellers.csv' not "
                              "found beside the data"]


def test_bad_rows_are_skipped_and_counted_with_their_lines(sample_factory) -> None:
    data = sample_factory(DATACO, 40)
    lines = data.read_text().splitlines(keepends=True)
    lines[5] = lines[5].replace(lines[5].split(",")[1] + ",", "soon,", 1)  # real days: "soon"
    data.write_text("".join(lines))
    m = compile_mapping((MAPPINGS / "dataco.yaml").read_text(), "dataco.yaml")
    out, report = read_outcomes(data, m)
    assert report["skipped"]["actual: not a number of days"] == 1
    assert report["skipped_examples"]["actual: not a number of days"] == [6]
    assert report["rows_read"] == 40
    assert len(out) == 40 - sum(report["skipped"].values())


def test_personal_columns_never_reach_the_model(sample_factory, tmp_path: Path) -> None:
    """DataCo has names, e-mails, streets: none of their values may appear in an artifact."""
    import csv

    from operators.delivery_model import fit

    data = sample_factory(DATACO, 400)
    m = compile_mapping((MAPPINGS / "dataco.yaml").read_text(), "dataco.yaml")
    out, report = read_outcomes(data, m)
    text = fit(out, meta={"data": report}).to_json().decode()
    with data.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for col in ("Customer Fname", "Customer Lname", "Customer Street", "Customer Email"):
        values = {r[col] for r in rows if len(r[col]) > 3}
        assert values and not any(f'"{v}"' in text for v in values), col


def test_olist_join_coverage_is_reported(shared_dir: Path) -> None:
    m = compile_mapping((MAPPINGS / "olist-orders.yaml").read_text(), "olist.yaml")
    out, report = read_outcomes(shared_dir / "data/olist/olist_orders_dataset.head.csv", m)
    joins = report["joins"]
    assert joins["customers"]["matched"] == report["coverage"]["destination_known"]
    assert joins["items"]["matched"] == joins["sellers"]["matched"] \
        == report["coverage"]["origin_known"]  # fmt: skip
    assert report["coverage"]["origin_known"] < report["rows_used"] / 10  # the files join poorly
    assert report["skipped"]["excluded: order_status not in ['delivered']"] > 0
    assert set(out.origin[out.origin != "*"]) <= {"SP", "RJ", "MG", "PR", "SC", "RS", "BA", "GO",
                                                    "DF", "ES", "PE", "CE", "MA", "PB", "RN", "MS",
                                                    "MT", "PI", "RO", "SE", "AM", "PA", "AC", "AP",
                                                    "RR", "TO", "AL"}  # fmt: skip
