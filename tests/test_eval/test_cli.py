"""`fulfil evaluate` and `fulfil evaluate tune` end to end (in-process, real components)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fulfil.cli import main
from fulfil.eval_source import load_stream, shipped_scenarios
from fulfil.sim.scenario import LaneDelay, Scenario
from operators.eval.tuning import Objective, replay_metrics, search
from operators.network import load_default
from operators.scoring import Weights


def _scenario(tmp: Path, name: str, seed: int) -> str:
    sc = Scenario.steady(6.0, 25.0, seed=seed, sku_count=150,
                         disruptions=(LaneDelay("jadlog", "SP", 30.0, start_s=0.0),))
    path = tmp / f"{name}.json"
    path.write_bytes(orjson.dumps(sc.to_dict()))
    return str(path)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as ex:
        main(argv)
    out, err = capsys.readouterr()
    return int(ex.value.code or 0), out, err


def test_evaluate_prints_one_table_and_a_recording_replays_to_the_same_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _scenario(tmp_path, "a", 1)
    rec = tmp_path / "a.jsonl"
    code, out, _ = _run(["evaluate", a, "--sample", "40", "--save-stream", str(rec),
                         "--json", str(tmp_path / "a.out.json")], capsys)
    assert code == 0
    for label in ("fulfil (as configured)", "nearest node with stock",
                  "fewest splits, then nearest", "hindsight optimum, same service",
                  "hindsight fewest late, nearest's cost",
                  "clairvoyant fewest real late, nearest's cost", "targets:"):
        assert label in out
    report = orjson.loads((tmp_path / "a.out.json").read_bytes())
    assert report["sample"]["solver"]["status"] == "optimal"
    code, again, _ = _run(["evaluate", str(rec), "--sample", "40", "--truth-seed", "1"], capsys)
    assert code == 0
    assert out.split("\n", 1)[1] == again.split("\n", 1)[1]  # all but the header line


def test_tuning_never_reads_the_test_scenario(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = (_scenario(tmp_path, n, s) for n, s in (("a", 1), ("b", 2), ("c", 3)))
    base = ["evaluate", "tune", "--train", a, "--budget", "4", "--seed", "3"]
    code, out_b, err_b = _run([*base, "--test", b, "--write-config", str(tmp_path / "b.json")],
                              capsys)
    assert code == 0 and "on b (never seen while tuning)" in out_b
    code, _, err_c = _run([*base, "--test", c, "--write-config", str(tmp_path / "c.json")],
                          capsys)
    assert code == 0
    # the same search whatever the test scenario: same steps, same tuned weights
    search_b = err_b.splitlines()[:5]  # "tuning on a ...", then one line per replay of a
    assert len([ln for ln in search_b if "objective" in ln]) == 4
    assert search_b == err_c.splitlines()[:5]
    assert (tmp_path / "b.json").read_bytes() == (tmp_path / "c.json").read_bytes()
    # a test scenario that cannot even be read fails only after the whole search has run
    code, _, err = _run([*base, "--test", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "no scenario" in err
    assert err.splitlines()[:5] == search_b


def test_search_objectives_are_the_training_replays(tmp_path: Path) -> None:
    net = load_default()
    train = load_stream(_scenario(tmp_path, "a", 1), net).events
    from fulfil.config import Config

    obj = Objective(late_penalty=25.0, unrouted_penalty=100.0)

    def on_train(w: Weights):
        return replay_metrics(train, net, Config(), w, truth_seed=1)

    result = search(on_train, Weights(), obj, budget=3, seed=0)
    assert len(result.history) == 3 and result.history[0].weights == Weights()
    for step in result.history:  # every objective is reproducible on the training stream
        assert obj(on_train(step.weights)) == step.objective
    assert result.best.objective == min(s.objective for s in result.history)


def test_the_shipped_scenarios_include_the_olist_ones() -> None:
    names = shipped_scenarios()
    assert {"olist-day-a", "olist-day-b", "olist-flash"} <= set(names)


def test_tune_refuses_the_same_scenario_for_training_and_test(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _scenario(tmp_path, "a", 1)
    code, _, err = _run(["evaluate", "tune", "--train", a, "--test", a], capsys)
    assert code == 2 and "must be different" in err


def test_bad_arguments_fail_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    a = _scenario(tmp_path, "a", 1)
    code, _, err = _run(["evaluate", a, "--policies", "fulfil,cheapest"], capsys)
    assert code == 2 and "unknown policy 'cheapest'" in err
    code, _, err = _run(["evaluate", str(tmp_path / "nope.json")], capsys)
    assert code == 2 and "no scenario" in err and "olist-day-a" in err


def test_a_carbon_price_sweep_prints_one_row_per_price_and_the_price_of_green(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _scenario(tmp_path, "a", 1)
    code, out, _ = _run(["evaluate", a, "--policies", "fulfil,fulfil+co2e", "--co2e-weight",
                         "0,5", "--sample", "0"], capsys)
    assert code == 0
    assert "fulfil + CO2e at 0 BRL/kg" in out and "fulfil + CO2e at 5 BRL/kg" in out
    assert "price of green" in out
    rows = {line.split("|")[1].strip(): line.split("|")[2:5] for line in out.splitlines()
            if line.startswith("| fulfil")}
    assert rows["fulfil (as configured)"] == rows["fulfil + CO2e at 0 BRL/kg"]  # default: 0
    code, _, err = _run(["evaluate", a, "--co2e-weight", "0,cheap"], capsys)
    assert code == 2 and "--co2e-weight" in err
