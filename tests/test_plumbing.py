"""The plumbing that every lesson repeats on purpose: the copies must agree
word for word, the shared flags must mean the same everywhere, and the
helpers must do what CONVENTIONS.md promises."""

import ast
import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    "simple_rnn",
    "time_series",
    "word2vec",
    "keras_translation",
    "fake_donald_trump",
    "fashion_mnist_rnn",
]
# Every lesson has these; a training lesson has the rest too.
EVERYWHERE = [
    "UsageError",
    "add_run_flags",
    "check_versions",
    "start",
    "make_run_dirs",
    "write_json",
    "save_figure",
    "write_metrics",
    "print_summary",
]
TRAINING = [
    "find_run",
    "model_run_dir",
    "load_run_model",
    "resume_checkpoint",
    "discard_unsaved_run",
    "save_model",
    "RunCheckpoint",
]


def parse(script):
    path = ROOT / f"{script}.py"
    source = path.read_text(encoding="utf-8")
    return source, ast.parse(source, filename=str(path))


def top_level_sources(script):
    source, tree = parse(script)
    return {
        node.name: ast.get_source_segment(source, node)
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
    }


def flag_specs(script):
    """Each flag's help, type, choices and action, read from the source."""
    _, tree = parse(script)
    specs = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "add_argument"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keywords = {kw.arg: ast.unparse(kw.value) for kw in node.keywords}
            specs[node.args[0].value] = {
                key: keywords.get(key) for key in ("help", "type", "choices", "action")
            }
    return specs


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_lesson_has_the_shared_shape(script):
    source, tree = parse(script)
    names = top_level_sources(script)
    missing = [name for name in EVERYWHERE if name not in names]
    assert not missing, f"{script}.py lacks {missing}"
    assert "def main(argv=None):" in source
    assert 'if __name__ == "__main__":\n    sys.exit(main())' in source
    assert "ROOT = Path(__file__).resolve().parent" in source
    assert f'SCRIPT = "{script}"' in source
    assert ast.get_docstring(tree).count("\n") <= 45, "the front page is too long"


@pytest.mark.parametrize("name", EVERYWHERE + TRAINING)
def test_plumbing_copies_are_identical(name):
    copies = {}
    for script in SCRIPTS:
        source = top_level_sources(script).get(name)
        if source is not None:
            copies.setdefault(source, []).append(script)
    assert copies, f"no lesson defines {name}"
    assert len(copies) == 1, f"{name} differs between " + " | ".join(
        ", ".join(scripts) for scripts in copies.values()
    )


def test_training_lessons_share_the_training_plumbing():
    for script in SCRIPTS[1:]:
        names = top_level_sources(script)
        assert "RunCheckpoint" not in names or all(n in names for n in TRAINING)


# The flags of CONVENTIONS.md mean one thing everywhere: same help, type,
# choices and action. A script's own flags may share a name with another
# script's where the meaning is close (--learning-rate for Adam or for SGD);
# their types must still agree.
CONVENTION_FLAGS = {
    "--data",
    "--column",
    "--epochs",
    "--batch-size",
    "--cell",
    "--units",
    "--layers",
    "--dropout",
    "--seq-length",
    "--val-fraction",
    "--seed",
    "--output-dir",
    "--log-dir",
    "--quick",
    "--resume",
    "--model",
    "--show",
}


def test_shared_flags_mean_the_same_everywhere():
    seen = {}
    for script in SCRIPTS:
        for flag, spec in flag_specs(script).items():
            if flag not in CONVENTION_FLAGS:
                spec = {"type": spec["type"], "action": spec["action"]}
            seen.setdefault(flag, {}).setdefault(json.dumps(spec), []).append(script)
    drifted = {flag: specs for flag, specs in seen.items() if len(specs) > 1}
    assert not drifted, f"flags spelled differently across scripts: {drifted}"
    for script in SCRIPTS:
        run_flags = {"--seed", "--output-dir", "--log-dir", "--quick", "--show"}
        assert run_flags <= set(flag_specs(script)), script


# The helpers' behaviour, through simple_rnn's copies (identical everywhere) ----


@pytest.fixture(scope="module")
def lesson():
    return importlib.import_module("simple_rnn")


@pytest.fixture(scope="module")
def trainer():
    """A training lesson's module, for the helpers that only they have."""
    for script in SCRIPTS[1:]:
        if "RunCheckpoint" in top_level_sources(script):
            return importlib.import_module(script)
    pytest.fail("no training lesson defines RunCheckpoint")


def run_args(lesson, tmp_path, *extra):
    return lesson.parse_args(
        ["--output-dir", str(tmp_path / "out"), "--log-dir", str(tmp_path / "logs")]
        + list(extra)
    )


def test_two_runs_in_the_same_second_get_two_folders(lesson, tmp_path, monkeypatch):
    monkeypatch.setattr(lesson.time, "strftime", lambda fmt: "20260102-030405")
    args = run_args(lesson, tmp_path)
    first, first_logs = lesson.make_run_dirs(args)
    second, second_logs = lesson.make_run_dirs(args)
    assert first.name == "20260102-030405_00"
    assert second.name == "20260102-030405_01"
    assert first.parent == tmp_path / "out" / "simple_rnn"
    assert first_logs == tmp_path / "logs" / "simple_rnn" / first.name
    assert second_logs.is_dir() and second.is_dir()


def test_run_ids_sort_by_time(lesson, tmp_path):
    args = run_args(lesson, tmp_path)
    run_dir, _ = lesson.make_run_dirs(args)
    assert re.fullmatch(r"\d{8}-\d{6}_\d{2}", run_dir.name)


def test_a_folder_that_cannot_be_made_is_one_line_and_leaves_nothing(lesson, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    args = run_args(lesson, tmp_path)
    args.output_dir = str(blocker)
    with pytest.raises(lesson.UsageError, match=r"^--output-dir: cannot make .*a_file"):
        lesson.make_run_dirs(args)
    args = run_args(lesson, tmp_path)
    args.log_dir = str(blocker)
    with pytest.raises(lesson.UsageError, match=r"^--log-dir: cannot make .*a_file"):
        lesson.make_run_dirs(args)
    assert not (tmp_path / "out" / "simple_rnn").exists()  # no half-made run


def test_write_json_handles_numpy_and_paths(lesson, tmp_path):
    path = tmp_path / "m.json"
    lesson.write_json(path, {"a": np.float32(0.5), "b": np.int64(3), "p": tmp_path})
    assert json.loads(path.read_text()) == {"a": 0.5, "b": 3, "p": str(tmp_path)}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary left


def test_write_metrics_has_the_promised_keys(lesson, tmp_path):
    args = run_args(lesson, tmp_path)
    lesson.write_metrics(tmp_path, args, 0.0, {"value": 1.0, "unit": "x/s"}, {"k": 1})
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert sorted(metrics) == sorted(
        ["script", "run", "settings", "wall_seconds", "throughput", "results"]
    )
    assert metrics["settings"]["seed"] == 42 and metrics["results"] == {"k": 1}


def test_find_run_tells_completed_from_unfinished(trainer, tmp_path):
    args = run_args(trainer, tmp_path, "--quick")
    root = tmp_path / "out" / trainer.SCRIPT
    with pytest.raises(trainer.UsageError, match="no completed run"):
        trainer.find_run(args, completed=True)
    for name in ("20260101-000000_00", "20260101-000000_01", "20260102-000000_00"):
        (root / name).mkdir(parents=True)
    (root / "20260101-000000_01" / "metrics.json").write_text("{}")
    done, done_logs = trainer.find_run(args, completed=True)
    assert done.name == "20260101-000000_01"
    assert done_logs == tmp_path / "logs" / trainer.SCRIPT / done.name
    assert trainer.find_run(args, completed=False)[0].name == "20260102-000000_00"
    args.model = str(root / "20260102-000000_00")
    with pytest.raises(trainer.UsageError, match="no model.keras there"):
        trainer.model_run_dir(args)


def test_a_damaged_run_is_one_line_for_inference_and_resume(trainer, tmp_path):
    args = run_args(trainer, tmp_path, "--quick")
    run_dir = tmp_path / "out" / trainer.SCRIPT / "20260101-000000_00"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    with pytest.raises(trainer.UsageError, match=r"_00: no model.keras there; give"):
        trainer.model_run_dir(args)  # the newest completed run lost its model
    (run_dir / "model.keras").write_bytes(b"half a zip")
    assert trainer.model_run_dir(args) == run_dir
    with pytest.raises(trainer.UsageError, match="no vocab.json there"):
        trainer.model_run_dir(args, needs=("model.keras", "vocab.json"))
    with pytest.raises(trainer.UsageError, match="not a readable Keras model"):
        trainer.load_run_model(run_dir / "model.keras")
    with pytest.raises(trainer.UsageError, match="before its first checkpoint"):
        trainer.resume_checkpoint(run_dir)
    for damaged in ("{oops", "{}", '{"epoch": "x", "best": 1}'):
        (run_dir / "state.json").write_text(damaged)
        with pytest.raises(trainer.UsageError, match="state.json: damaged; delete"):
            trainer.resume_checkpoint(run_dir)
    (run_dir / "state.json").write_text(json.dumps({"epoch": 1, "best": 2.0}))
    with pytest.raises(trainer.UsageError, match="last.keras: not a readable"):
        trainer.resume_checkpoint(run_dir)


def test_a_run_stopped_before_its_first_checkpoint_is_discarded(trainer, tmp_path):
    args = run_args(trainer, tmp_path, "--quick")
    run_dir, log_dir = trainer.make_run_dirs(args)
    with pytest.raises(KeyboardInterrupt, match="nothing was saved yet"):
        with trainer.discard_unsaved_run(run_dir, log_dir):
            raise KeyboardInterrupt
    assert not (tmp_path / "out" / trainer.SCRIPT).exists()
    assert not (tmp_path / "logs" / trainer.SCRIPT).exists()
    run_dir, log_dir = trainer.make_run_dirs(args)
    (run_dir / "state.json").write_text("{}")  # a checkpoint: kept for --resume
    with pytest.raises(trainer.UsageError, match="NaN"):
        with trainer.discard_unsaved_run(run_dir, log_dir):
            raise trainer.UsageError("NaN")
    assert run_dir.is_dir() and log_dir.is_dir()


def tiny_fit(trainer, run_dir, monitor, x, y, epochs=2, best=None):
    keras = trainer.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    checkpoint_cb = trainer.RunCheckpoint(run_dir, monitor, "min", best)
    model.fit(
        x, y, validation_split=0.5, epochs=epochs, verbose=0, callbacks=[checkpoint_cb]
    )
    return checkpoint_cb


def test_run_checkpoint_saves_best_last_and_state(trainer, tmp_path):
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    checkpoint_cb = tiny_fit(trainer, tmp_path, "val_loss", x, y)
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["epoch"] == 2 and state["monitor"] == "val_loss"
    assert state["best"] == pytest.approx(checkpoint_cb.best)
    model = trainer.keras.models.load_model(tmp_path / "model.keras")
    assert model.predict(x[:2], verbose=0).shape == (2, 1)
    assert (tmp_path / "last.keras").exists()
    assert not list(tmp_path.glob("*.tmp*"))


def test_run_checkpoint_names_the_metrics_on_a_wrong_monitor(trainer, tmp_path):
    x = np.ones((8, 3), dtype="float32")
    with pytest.raises(trainer.UsageError) as error:
        tiny_fit(trainer, tmp_path, "val_acc", x, x[:, :1])
    assert (
        str(error.value) == "cannot monitor 'val_acc': the model reports loss, val_loss"
    )
    assert not (tmp_path / "model.keras").exists()


def test_run_checkpoint_stops_on_nan_and_keeps_no_nan_weights(trainer, tmp_path):
    x = np.full((8, 3), np.nan, dtype="float32")
    checkpoint_cb = tiny_fit(trainer, tmp_path, "val_loss", x, x[:, :1], epochs=5)
    assert checkpoint_cb.nan_batch == 0
    assert not (tmp_path / "model.keras").exists()
    assert not (tmp_path / "state.json").exists()
