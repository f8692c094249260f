"""Tests of fashion_mnist_rnn.py: the IDX reader, the split, the model's
shapes, every bad input, the metric-name check, the NaN stop, a second run and
--resume, --evaluate-only, and one --quick smoke run as a user would."""

import gzip
import hashlib
import importlib.util
import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "fashion_mnist_rnn"
spec = importlib.util.spec_from_file_location(SCRIPT, ROOT / f"{SCRIPT}.py")
lesson = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lesson)

FILE_NAMES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]


def folders(tmp_path):
    out, logs = tmp_path / "output", tmp_path / "logs"
    return ["--output-dir", str(out), "--log-dir", str(logs)], out, logs


def written(*roots):
    """Every file under the given folders (none when they do not exist)."""
    return sorted(p for root in roots if root.exists() for p in root.rglob("*"))


def snapshot(*roots):
    """Each file's path and SHA-256, to prove a later run left them alone."""
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in written(*roots)
        if p.is_file()
    }


def error_line(capsys):
    """The one error line on stderr; no traceback anywhere."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


# Pure functions ----------------------------------------------------------------


def test_read_idx_gives_back_what_was_written(write_idx, tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    got_images = lesson.read_idx(write_idx(tmp_path / "i.gz", images), 3)
    got_labels = lesson.read_idx(write_idx(tmp_path / "l.gz", labels), 1)
    assert got_images.shape == (2, 3, 4) and got_images.dtype == np.uint8
    assert np.array_equal(got_images, images)
    assert got_labels.tolist() == [7, 0, 9]


def test_load_data_scales_pixels_and_keeps_labels(fashion_dir):
    (x_train, y_train), (x_test, y_test) = lesson.load_data(fashion_dir)
    assert x_train.shape == (200, 28, 28) and x_test.shape == (50, 28, 28)
    assert x_train.dtype == np.float32 and y_train.shape == (200,)
    assert 0.0 <= x_train.min() and x_train.max() == pytest.approx(220 / 255)
    assert sorted(set(y_train.tolist())) == list(range(10))
    # The fixture draws a bright band at rows 2 + 2 * label to 4 + 2 * label.
    label = int(y_test[0])
    assert x_test[0, 2 + 2 * label, 10] == pytest.approx(220 / 255)


def test_split_validation_exact():
    x, y = np.arange(10) * 10, np.arange(10)
    (x_tr, y_tr), (x_val, y_val) = lesson.split_validation(x, y, 0.3, seed=0)
    # np.random.default_rng(0).permutation(10) is [4 6 2 7 3 5 9 0 8 1].
    assert y_val.tolist() == [4, 6, 2]
    assert y_tr.tolist() == [7, 3, 5, 9, 0, 8, 1]
    assert x_val.tolist() == [40, 60, 20]


def test_split_validation_too_small():
    x = y = np.arange(3)
    with pytest.raises(lesson.UsageError, match="--val-fraction"):
        lesson.split_validation(x, y, 0.1, seed=0)


def test_model_shapes_match_the_comments():
    model = lesson.build_model((28, 28), "gru", 8, 2, True, 0.1, 1e-3, 10)
    # (batch, rows, features) -> (batch, rows, directions * units) ...
    assert tuple(model.get_layer("bidirectional_1").output.shape) == (None, 28, 16)
    # ... and (batch, directions * units) for the last layer.
    assert tuple(model.get_layer("bidirectional_2").output.shape) == (None, 16)
    assert tuple(model.output.shape) == (None, 10)
    one_way = lesson.build_model((28, 28), "lstm", 8, 1, False, 0.0, 1e-3, 10)
    assert tuple(one_way.get_layer("lstm_1").output.shape) == (None, 8)
    probabilities = np.asarray(one_way(np.zeros((3, 28, 28), "float32")))
    assert probabilities.shape == (3, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_nan_loss_stops_without_saving(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    checkpoint_cb = lesson.RunCheckpoint(tmp_path, "loss")
    x, y = np.full((8, 2), np.nan, "float32"), np.zeros((8, 1), "float32")
    model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[checkpoint_cb])
    assert checkpoint_cb.nan_batch == 0
    assert not (tmp_path / "model.keras").exists()
    assert not (tmp_path / "state.json").exists()


# Bad input: exit 2, one line, nothing written ----------------------------------


def copy_fixture(fashion_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in FILE_NAMES:
        (bad / name).write_bytes((fashion_dir / name).read_bytes())
    return bad


def break_magic(folder, write_idx):
    # A label file where the training images should be.
    write_idx(folder / FILE_NAMES[0], np.zeros(200, np.uint8))
    return FILE_NAMES[0], "not an IDX file of 3 dimension(s)"


def break_counts(folder, write_idx):
    write_idx(folder / FILE_NAMES[1], np.zeros(199, np.uint8))
    return FILE_NAMES[1], "holds 200 images but"


def break_truncated_gz(folder, write_idx):
    path = folder / FILE_NAMES[2]
    path.write_bytes(path.read_bytes()[:-500])
    return FILE_NAMES[2], "damaged or truncated gz"


def break_not_gz(folder, write_idx):
    (folder / FILE_NAMES[3]).write_bytes(b"this is not a gz file at all")
    return FILE_NAMES[3], "damaged or truncated gz"


def break_short_payload(folder, write_idx):
    # A valid gz whose IDX header promises more images than it holds.
    header = bytes.fromhex("00000803") + (50).to_bytes(4, "big")
    header += (28).to_bytes(4, "big") * 2
    with gzip.open(folder / FILE_NAMES[2], "wb") as f:
        f.write(header + bytes(28 * 28 * 49))
    return FILE_NAMES[2], "the header promises (50, 28, 28)"


def break_missing_file(folder, write_idx):
    (folder / FILE_NAMES[3]).unlink()
    return FILE_NAMES[3], "missing"


@pytest.mark.parametrize(
    "breaker",
    [
        break_magic,
        break_counts,
        break_truncated_gz,
        break_not_gz,
        break_short_payload,
        break_missing_file,
    ],
)
def test_bad_files_name_the_file(breaker, fashion_dir, write_idx, tmp_path, capsys):
    bad = copy_fixture(fashion_dir, tmp_path)
    name, words = breaker(bad, write_idx)
    flags, out, logs = folders(tmp_path)
    assert lesson.main(["--quick", "--data", str(bad), *flags]) == 2
    line = error_line(capsys)
    assert name in line and words in line
    assert written(out, logs) == []


def test_missing_data_path_is_an_error_not_a_download(tmp_path, capsys):
    flags, out, logs = folders(tmp_path)
    assert lesson.main(["--data", str(tmp_path / "nowhere"), *flags]) == 2
    assert "no such folder" in error_line(capsys)
    assert written(out, logs) == []


def test_offline_without_files_names_address_folder_and_files(
    tmp_path, monkeypatch, capsys
):
    def offline(*args, cache_dir, cache_subdir, **kwargs):
        (Path(cache_dir) / cache_subdir).mkdir(parents=True)  # as get_file does
        raise Exception("URL fetch failure: no network")  # what get_file raises

    monkeypatch.setattr(lesson, "ROOT", tmp_path)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    flags, out, logs = folders(tmp_path)
    assert lesson.main(["--quick", *flags]) == 2
    line = error_line(capsys)
    assert lesson.ORIGIN in line and "--data" in line
    assert str(tmp_path / "data" / "fashion_mnist") in line
    assert all(name in line for name in FILE_NAMES)
    assert "(Exception: URL fetch failure: no network)" in line
    assert written(out, logs) == []
    assert not (tmp_path / "data" / "fashion_mnist").exists()  # no empty folder


@pytest.mark.parametrize(
    "flag, value",
    [("--val-fraction", "0"), ("--units", "0"), ("--dropout", "1"), ("--cell", "x")],
)
def test_bad_flags_exit_2(flag, value, tmp_path, capsys):
    flags, out, logs = folders(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        lesson.main([flag, value, *flags])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err
    assert written(out, logs) == []


def test_no_saved_run_for_evaluate_only_or_resume(tmp_path, capsys):
    flags, out, logs = folders(tmp_path)
    assert lesson.main(["--evaluate-only", *flags]) == 2
    assert "no completed run" in error_line(capsys)
    assert lesson.main(["--resume", *flags]) == 2
    assert "no unfinished run" in error_line(capsys)
    assert written(out, logs) == []


def test_wrong_metric_name_lists_the_names(fashion_dir, tmp_path, capsys):
    flags, out, logs = folders(tmp_path)
    argv = ["--quick", "--data", str(fashion_dir), "--monitor", "val_acc", *flags]
    argv += ["--cell", "simple", "--no-bidirectional"]  # quicker to build
    assert lesson.main(argv) == 2
    assert error_line(capsys) == (
        "error: cannot monitor 'val_acc': the model reports "
        "accuracy, loss, val_accuracy, val_loss"
    )
    assert [p for p in written(out, logs) if p.is_file()] == []


# Runs --------------------------------------------------------------------------


def test_quick_run_as_a_user_would(
    run_script, fashion_dir, event_tags, assert_png, capsys
):
    result = run_script(SCRIPT, "--quick", "--data", fashion_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, log_dir = result.run_dir, result.log_dir
    assert f"best model:  {run_dir / 'model.keras'}" in result.stdout
    for name in ("learning_curves", "confusion_matrix", "test_samples"):
        assert_png(run_dir / f"{name}.png")

    model = keras.models.load_model(run_dir / "model.keras")
    (_, _), (x_test, _) = lesson.load_data(fashion_dir)
    probabilities = model.predict(x_test[:5], verbose=0)
    assert probabilities.shape == (5, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    for split in ("train", "validation"):
        scalars = event_tags(log_dir / split)["scalars"]
        assert {"epoch_loss", "epoch_accuracy"} <= scalars, (split, scalars)
    test_tags = event_tags(log_dir / "test")
    assert "test_accuracy" in test_tags["scalars"]
    assert "confusion_matrix" in test_tags["images"]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["script"] == SCRIPT and metrics["run"] == run_dir.name
    results = metrics["results"]
    for key in ("test_accuracy", "val_accuracy"):
        assert math.isfinite(results[key]) and 0 <= results[key] <= 1
    assert results["best_epoch"] == 1
    assert math.isfinite(metrics["throughput"]["value"])
    assert metrics["settings"]["quick"] is True

    # --evaluate-only scores the saved model: results on stdout, one a line,
    # the same test accuracy as the run found, and nothing written.
    before = snapshot(result.output_root, result.log_root)
    argv = ["--evaluate-only", "--quick", "--data", str(fashion_dir)]
    argv += ["--model", str(run_dir / "model.keras")]
    assert lesson.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"test_accuracy\t{results['test_accuracy']:.4f}"
    assert [line.split("\t")[0] for line in lines[1:]] == lesson.CLASS_NAMES
    # Without --data it reads the test images from the folder the run used.
    argv = ["--evaluate-only", "--quick", "--model", str(run_dir)]
    assert lesson.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == lines
    assert f" test images from {fashion_dir}\n" in captured.err
    assert snapshot(result.output_root, result.log_root) == before


def test_second_run_leaves_the_first_alone_and_resume_carries_on(
    fashion_dir, tmp_path, event_tags, capsys
):
    flags, out, logs = folders(tmp_path)
    argv = ["--data", str(fashion_dir), "--epochs", "1", *flags]
    argv += ["--cell", "simple", "--units", "4", "--no-bidirectional"]  # fast
    assert lesson.main(argv) == 0
    first = snapshot(out, logs)
    assert lesson.main(argv) == 0
    first_run, second_run = sorted((out / SCRIPT).iterdir())
    assert f"best model:  {second_run / 'model.keras'}" in capsys.readouterr().out
    assert {p: h for p, h in snapshot(out, logs).items() if p in first} == first

    # Make the second run look interrupted after its first of two epochs.
    settings = json.loads((second_run / "settings.json").read_text())
    settings["epochs"] = 2
    (second_run / "settings.json").write_text(json.dumps(settings))
    (second_run / "metrics.json").unlink()
    assert lesson.main(["--resume", *flags]) == 0
    assert sorted((out / SCRIPT).iterdir()) == [first_run, second_run]
    epochs = (second_run / "epochs.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in epochs] == ["epoch", "0", "1"]
    assert json.loads((second_run / "state.json").read_text())["epoch"] == 2
    assert (second_run / "metrics.json").exists()
    import tensorflow as tf

    steps = set()
    for path in (logs / SCRIPT / second_run.name / "train").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            if any(value.tag == "epoch_loss" for value in event.summary.value):
                steps.add(event.step)
    assert steps == {0, 1}
    assert {p: h for p, h in snapshot(out, logs).items() if p in first} == first
