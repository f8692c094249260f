"""Tests for time_series.py: windows, spans, scaling, baselines, generation,
bad CSV input, --resume, --generate-only and a --quick run as a user would."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import time_series as ts  # noqa: E402

# Pure functions ------------------------------------------------------------------


def test_windows_and_targets_shifted_by_one_step():
    windows = ts.make_windows(np.arange(6.0), seq_length=3)
    assert windows.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]
    x, y = ts.inputs_targets(windows)
    assert x.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    assert y.tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 5]]


def test_waveform_windows_lie_in_their_span_and_shift_by_resolution():
    rng = np.random.default_rng(0)
    t, w = ts.waveform_windows(rng, 10.0, 13.0, count=50, seq_length=20)
    assert t.shape == w.shape == (50, 21)
    assert t.min() >= 10.0 and t.max() < 13.0
    np.testing.assert_allclose(np.diff(t, axis=1), 0.1)
    x, y = ts.inputs_targets(w)
    np.testing.assert_allclose(y, ts.waveform(t[:, :-1] + 0.1), atol=1e-12)
    np.testing.assert_allclose(x, ts.waveform(t[:, :-1]))
    assert ts.waveform(np.array([0.0]))[0] == 0.0
    expected = 2 * math.sin(2) / 3 + 2 * math.sin(10)
    assert ts.waveform(np.array([2.0]))[0] == pytest.approx(expected)


def default_args(*argv):
    return ts.parse_args(["--train-windows", "100", *map(str, argv)])


def test_waveform_spans_do_not_overlap_and_test_comes_last():
    series = ts.load_series(default_args())
    assert series["bounds"] == pytest.approx((8.0, 14.0))
    assert series["train_time"].min() >= -20.0
    assert series["train_time"].max() < 8.0 <= series["val_time"].min()
    assert series["val_time"].max() < 14.0 <= series["test_time"].min()
    assert series["test_time"].max() < 20.0
    assert series["train"].shape == (100, 21) and series["test"].shape == (64, 21)
    # The generation seed opens the test span.
    seed_t = 14.0 + 0.1 * np.arange(20)
    np.testing.assert_allclose(series["seed_window"], ts.waveform(seed_t))
    truth = ts.true_continuation(series, 5)
    np.testing.assert_allclose(truth, ts.waveform(16.0 + 0.1 * np.arange(5)))


def test_csv_split_in_time_order_and_scaling_from_training_part_only(tmp_path):
    values = np.arange(100.0)
    first = tmp_path / "a.csv"
    first.write_text("value\n" + "\n".join(map(str, values)) + "\n")
    args = default_args("--data", first, "--seq-length", 5, "--train-windows", 1000)
    series = ts.load_series(args)
    assert series["bounds"] == (70, 85)
    assert series["mean"] == pytest.approx(34.5)
    assert series["std"] == pytest.approx(np.arange(70.0).std())
    assert series["train"].shape == (65, 6) and series["test"].shape == (10, 6)
    assert series["train"].max() == 69 and series["val"].min() == 70
    assert series["seed_window"].tolist() == [85, 86, 87, 88, 89]
    assert series["truth"].tolist() == list(range(90, 100))
    assert series["limit"] == 3 * 69
    # Change the validation and test parts wildly: the scaling stays.
    changed = values.copy()
    changed[70:] *= 1000
    second = tmp_path / "b.csv"
    second.write_text("value\n" + "\n".join(map(str, changed)) + "\n")
    args.data = str(second)
    other = ts.load_series(args)
    assert (other["mean"], other["std"]) == (series["mean"], series["std"])
    np.testing.assert_array_equal(other["train"], series["train"])


def test_baselines_on_a_ramp_where_the_answer_is_known():
    x, y = ts.inputs_targets(ts.make_windows(np.arange(30.0), seq_length=4))
    assert np.mean((ts.predict_naive(x) - y) ** 2) == 1.0  # every step is +1
    linear = ts.fit_linear(x, y)
    np.testing.assert_allclose(ts.predict_linear(linear, x), y, atol=1e-9)
    np.testing.assert_allclose(ts.generate_linear(linear, [3, 4, 5, 6], 3), [7, 8, 9])


def test_linear_model_is_exact_on_the_waveform_from_the_seventh_step():
    rng = np.random.default_rng(1)
    _, train = ts.waveform_windows(rng, 0.0, 28.0, count=500, seq_length=10)
    _, test = ts.waveform_windows(rng, 34.0, 40.0, count=100, seq_length=10)
    linear = ts.fit_linear(*ts.inputs_targets(train))
    x, y = ts.inputs_targets(test)
    mse = ((ts.predict_linear(linear, x) - y) ** 2).mean(axis=0)
    assert mse[6:].max() < 1e-20  # seven values read: exact up to rounding
    assert mse[0] > 0.1  # one value is not enough


def test_divergence_step_and_horizon_rmse():
    assert ts.find_divergence([0.0, 1.0, 40.0, np.nan], limit=30) == 2
    assert ts.find_divergence([0.0, -31.0], limit=30) == 1
    assert ts.find_divergence([np.inf], limit=30) == 0
    assert ts.find_divergence([np.nan, 1.0], limit=30) == 0
    assert ts.find_divergence([1.0, -2.0, 30.0], limit=30) is None
    assert ts.horizon_rmse(np.array([1.0, 3.0]), np.array([0.0, 0.0])) == math.sqrt(5)
    assert ts.horizon_rmse(np.ones(60), np.zeros(60), horizon=50) == 1.0
    assert ts.horizon_rmse(np.ones(10), np.zeros(60)) is None  # cut short


# The model and its step-by-step twin ---------------------------------------------


@pytest.mark.parametrize(
    ("cell", "num_layers", "residual"),
    [("simple", 1, False), ("lstm", 2, False), ("gru", 1, True)],
)
def test_shapes_and_step_model_carry_the_state_exactly(cell, num_layers, residual):
    args = default_args("--cell", cell, "--layers", num_layers, "--units", 8)
    args.residual = residual
    model = ts.build_model(args)
    x = np.random.default_rng(2).normal(size=(3, 7, 1)).astype("float32")
    full = np.asarray(model(x))
    assert full.shape == (3, 7, 1)  # (batch, time, 1): a prediction per step
    hidden = model.get_layer("rnn_1").output[0]
    assert tuple(hidden.shape) == (None, None, 8)  # (batch, time, units)
    step_model = ts.build_step_model(model)
    states = [np.zeros((3, s.shape[-1]), "float32") for s in step_model.inputs[1:]]
    assert len(states) == num_layers * (2 if cell == "lstm" else 1)
    first, *states = step_model([x[:, :4], *states])
    pieces = [np.asarray(first)]
    for t in range(4, 7):
        states = [np.asarray(s) for s in states]
        out, *states = step_model([x[:, t : t + 1], *states])
        pieces.append(np.asarray(out))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-5)
    # Generation = the full model rerun on the seed plus what it generated.
    seeds = x[:, :, 0]
    generated = ts.generate(step_model, seeds, steps=3)
    assert generated.shape == (3, 3)
    extended = np.concatenate([seeds, generated[:, :2]], axis=1)[..., None]
    rerun = np.asarray(model(extended))[:, -3:, 0]
    np.testing.assert_allclose(generated, rerun, atol=1e-5)


def test_generation_is_cut_and_marked_where_it_diverges(tmp_path, assert_png):
    # A residual model whose readout always adds 1: from a seed of zeros it
    # generates 1, 2, 3, ... and passes the limit of 10 at its 11th step.
    args = default_args("--units", 4)
    args.residual = True
    model = ts.build_model(args)
    readout = model.get_layer("readout")
    readout.set_weights([np.zeros((4, 1), "float32"), np.ones(1, "float32")])
    series = {"seed_window": np.zeros(5), "mean": 0.0, "std": 1.0, "limit": 10.0}
    generated = ts.run_generation(model, series, steps=30)
    for name in ("test_seed", "zeros"):
        values, diverged = generated[name]
        assert diverged == 10
        np.testing.assert_allclose(values, np.arange(1, 11), rtol=1e-6)
    assert ts.horizon_rmse(generated["test_seed"][0], np.zeros(30)) is None
    series.update(seed_start=0.0, step=1.0, time_label="step")
    truth = np.arange(1.0, 31.0)
    ts.plot_generation(series, generated, truth, truth, tmp_path / "g.png", args)
    ts.plot_error(generated, truth, truth, tmp_path / "e.png", args)
    assert_png(tmp_path / "g.png")
    assert_png(tmp_path / "e.png")
    path = tmp_path / "generation.csv"
    ts.write_generation(path, 30, truth, generated, truth)
    rows = path.read_text().splitlines()
    assert rows[10] == "10,10.0,10.0,10.0,10.0"
    assert rows[11] == "11,11.0,,,11.0"  # nothing saved after the divergence


# Bad input: one line, exit 2, nothing written ------------------------------------


def run_main(tmp_path, capsys, *argv):
    out, logs = tmp_path / "output", tmp_path / "logs"
    argv = ["--output-dir", out, "--log-dir", logs, "--quick", *argv]
    code = ts.main([str(a) for a in argv])
    return code, capsys.readouterr(), out, logs


def write_csv(tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        (
            '"Month","Sunspots"\n"1749-01",58.0\n',
            ("--column", "Temp"),
            "no column 'Temp'; it has Month, Sunspots",
        ),
        (
            "value\n" + "1.5\n" * 40 + "abc\n" + "2.0\n" * 60,
            (),
            "column 'value' holds 'abc' in row 41 (line 42), not a number",
        ),
        (
            "a,b\n" + "1,2\n" * 60,
            (),
            "bad.csv has columns a, b; choose with --column",
        ),
        (
            "value\n" + "1.5\n" * 60,
            (),
            "60 values leave the val part 9 long, fewer than --seq-length + 1 = 21",
        ),
        ("", (), "not a readable CSV file"),
    ],
    ids=["missing-column", "text-value", "two-columns", "too-short", "empty"],
)
def test_bad_csv_is_one_line_and_exit_2(tmp_path, capsys, text, extra, message):
    path = write_csv(tmp_path, text)
    code, captured, out, logs = run_main(tmp_path, capsys, "--data", path, *extra)
    assert code == 2
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err
    assert not out.exists() and not logs.exists()


def test_empty_cell_names_its_line(tmp_path, capsys):
    path = write_csv(tmp_path, "date,value\n" + "d,1.0\n" * 30 + "d,\n" + "d,2\n" * 9)
    code, captured, out, _ = run_main(
        tmp_path, capsys, "--data", path, "--column", "value"
    )
    assert code == 2
    assert "column 'value' is empty in row 31 (line 32), not a number" in captured.err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--data", "nowhere.csv"), "--data nowhere.csv: no such file"),
        (("--column", "Temp"), "--column needs --data"),
        (("--generate-only",), "no completed run in"),
        (("--resume",), "no unfinished run in"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    code, captured, out, logs = run_main(tmp_path, capsys, *argv)
    assert code == 2
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], captured.err
    assert not out.exists() and not logs.exists()


def test_quick_does_not_hide_a_bad_setting(capsys):
    with pytest.raises(SystemExit) as stop:
        ts.parse_args(["--quick", "--epochs", "0"])
    assert stop.value.code == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err


# Whole runs ----------------------------------------------------------------------


def test_csv_run_and_resume_in_process(tmp_path, capsys, series_csv):
    argv = ("--data", series_csv, "--seq-length", 10)
    code, captured, out, logs = run_main(tmp_path, capsys, *argv)
    assert code == 0, captured.err
    (run_dir,) = (out / "time_series").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["settings"]["data"] == str(series_csv)
    # Pretend it was interrupted: --resume finishes it in the same folders,
    # with the saved settings rather than the new flags.
    (run_dir / "metrics.json").unlink()
    code, captured, _, _ = run_main(tmp_path, capsys, "--resume", "--seq-length", 99)
    assert code == 0, captured.err
    assert "resuming " + run_dir.name in captured.err
    assert [p.name for p in (out / "time_series").iterdir()] == [run_dir.name]
    resumed = json.loads((run_dir / "metrics.json").read_text())
    assert resumed["settings"]["seq_length"] == 10
    # A real series generates only as far as its test part reaches: 60 test
    # values, the first 10 of them the seed.
    assert resumed["results"]["generation_compared_steps"] == 50
    table = (run_dir / "generation.csv").read_text().splitlines()
    assert table[50].split(",")[1] != "" and table[51].split(",")[1] == ""


def test_quick_run_as_a_user_would(run_script, event_tags, assert_png, capsys):
    import keras

    result = run_script("time_series", "--quick", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "test MSE" in result.stdout and "TensorBoard:" in result.stdout
    run_dir = result.run_dir
    pictures = ["series", "window", "generation", "error_horizon"]
    for name in pictures:
        assert_png(run_dir / f"{name}.png")
    model = keras.models.load_model(run_dir / "model.keras")
    assert model(np.zeros((2, 20, 1), "float32")).shape == (2, 20, 1)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    results = metrics["results"]
    for key in ("test_mse", "naive_mse", "linear_mse", "generation_rmse_50"):
        assert math.isfinite(results[key]), key
    assert results["linear_mse"] < results["naive_mse"]
    assert metrics["settings"]["quick"] is True and metrics["script"] == "time_series"
    assert math.isfinite(metrics["throughput"]["value"])
    table = (run_dir / "generation.csv").read_text().splitlines()
    assert table[0] == "step,true,rnn_from_test_seed,rnn_from_zeros,linear"
    assert len(table) == 101  # --quick generates 100 steps
    tags = event_tags(result.log_dir)
    assert "epoch_loss" in tags["scalars"]
    assert set(pictures) <= tags["images"]
    assert "results" in tags["text"]
    # --generate-only on that saved run: values on stdout, one per line.
    code = ts.main(
        ["--output-dir", str(result.output_root), "--log-dir", str(result.log_root),
         "--generate-only", "--model", str(run_dir), "--generate-steps", "60"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    values = [float(line) for line in captured.out.splitlines()]
    assert len(values) == 60
    expected = [float(row.split(",")[2]) for row in table[1:61]]
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-4)
