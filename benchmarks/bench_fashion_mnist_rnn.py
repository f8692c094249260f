"""Benchmark fashion_mnist_rnn.py against the classic configuration.

On the real Fashion-MNIST, in one process on one machine:

1. the lesson's default run, once per seed (--seeds), through the lesson's
   own main() (its checkpoint, early stopping, CSV log, TensorBoard, final
   evaluation and pictures; the runs are kept under --runs-dir), with one
   addition made here, not in the lesson: the test set is scored after every
   epoch, by a callback slipped into the lesson's model.fit;
2. the classic configuration (LSTM of 50 returning sequences, LSTM of 32,
   softmax; Adam; batch 128; all 60,000 training images, no validation) for
   the same training wall time as the mean of ours, the test set scored after
   every epoch; its accuracy at that time is its final figure. It then trains
   on until it reaches --target (at most --classic-cap times as long), so that
   its time to the target is measured in the same run.

For each it reports the final test accuracy and the training time until the
test accuracy first reached --target (or that it never did), and prints a
results row with both figures and their ratio. Time spent scoring the test set
after each epoch is left out of the training times. Every finished epoch and
run is appended to --results as one JSON line, so an interrupted benchmark
keeps what it measured.

    python benchmarks/bench_fashion_mnist_rnn.py --data ../shared/data/fashion_mnist
"""

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("lesson", ROOT / "fashion_mnist_rnn.py")
lesson = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lesson)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data",
        default=str(ROOT / "data" / "fashion_mnist"),
        help="folder with the four Fashion-MNIST IDX gz files",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument(
        "--target", type=float, default=0.88, help="test accuracy to time"
    )
    parser.add_argument(
        "--results",
        default=str(ROOT / "output" / "bench_fashion_mnist_rnn.jsonl"),
        help="JSON lines file that each finished measurement is appended to",
    )
    parser.add_argument(
        "--runs-dir",
        default=str(ROOT / "output" / "bench_fashion_mnist_rnn"),
        help="where our runs keep their output/ and logs/",
    )
    parser.add_argument(
        "--classic-seconds",
        type=float,
        help="the classic's training time; default the mean of our runs",
    )
    parser.add_argument(
        "--classic-cap",
        type=float,
        default=4.0,
        help="past the shared time, the classic trains on until it reaches "
        "--target, for at most this many times that time",
    )
    parser.add_argument(
        "--skip-ours", action="store_true", help="only the classic (needs seconds)"
    )
    return parser.parse_args(argv)


class TestEveryEpoch(keras.callbacks.Callback):
    """Scores the test set after every epoch and keeps a clock of training
    time that leaves the scoring out. With a budget, stops at the first epoch
    end past it at which the target was reached, or past budget * cap."""

    def __init__(self, x_test, y_test, log, budget=None, target=None, cap=1.0):
        super().__init__()
        self.x_test, self.y_test, self.log = x_test, y_test, log
        self.budget, self.target, self.cap = budget, target, cap
        self.epochs = []

    def on_train_begin(self, logs=None):
        self.started, self.scoring = time.perf_counter(), 0.0

    def on_epoch_end(self, epoch, logs=None):
        train_seconds = time.perf_counter() - self.started - self.scoring
        scoring_started = time.perf_counter()
        probabilities = self.model.predict(self.x_test, batch_size=1024, verbose=0)
        accuracy = float(np.mean(probabilities.argmax(axis=1) == self.y_test))
        self.scoring += time.perf_counter() - scoring_started
        record = {
            "epoch": epoch + 1,
            "train_seconds": round(train_seconds, 1),
            "test_accuracy": accuracy,
            "val_accuracy": (logs or {}).get("val_accuracy"),
        }
        self.epochs.append(record)
        self.log(record)
        print(f"  epoch {epoch + 1}: {record}", file=sys.stderr, flush=True)
        if self.budget is None or train_seconds < self.budget:
            return
        reached = first_reach(self.epochs, self.target) is not None
        if reached or train_seconds >= self.budget * self.cap:
            self.model.stop_training = True


def first_reach(epochs, target):
    """Training seconds at the end of the first epoch at or above the target."""
    for record in epochs:
        if record["test_accuracy"] >= target:
            return record["train_seconds"]
    return None


def run_ours(seed, data, x_test, y_test, log, runs_dir):
    """The lesson's default run for one seed, through its own main(), with the
    test scoring added to the callbacks that its model.fit receives."""
    test_cb = TestEveryEpoch(x_test, y_test, log)
    fit = keras.Model.fit

    def fit_with_test(self, *fit_args, callbacks=(), **kwargs):
        return fit(self, *fit_args, callbacks=[*callbacks, test_cb], **kwargs)

    keras.Model.fit = fit_with_test
    try:
        argv = ["--data", data, "--seed", str(seed)]
        argv += ["--output-dir", str(runs_dir / "output")]
        argv += ["--log-dir", str(runs_dir / "logs")]
        if lesson.main(argv) != 0:
            raise SystemExit(f"the lesson failed for seed {seed}")
    finally:
        keras.Model.fit = fit
    run_dir = sorted((runs_dir / "output" / lesson.SCRIPT).iterdir())[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run_seconds = metrics["wall_seconds"] - test_cb.scoring
    return test_cb.epochs, metrics["results"]["test_accuracy"], run_seconds, run_dir


def classic_model():
    """The classic script's model: two stacked LSTMs and a softmax, Adam."""
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            layers.LSTM(50, return_sequences=True),  # (batch, 28, 50)
            layers.LSTM(32),  # (batch, 28, 50) -> (batch, 32)
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    return model


def run_classic(seconds, data, log, target, cap, seed=42):
    """The classic configuration on all training images for a time budget,
    and on past it (up to cap times the budget) until it reaches the target."""
    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    model = classic_model()
    test_cb = TestEveryEpoch(x_test, y_test, log, seconds, target, cap)
    model.fit(
        x_train, y_train, batch_size=128, epochs=1000, callbacks=[test_cb], verbose=2
    )
    return test_cb.epochs


def main(argv=None):
    args = parse_args(argv)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    machine = (
        f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"GPU: {'yes' if tf.config.list_physical_devices('GPU') else 'none'}"
    )
    command = "python " + " ".join([sys.argv[0], *sys.argv[1:]])
    started = time.time()

    def logger(**fields):
        def log(record):
            with results.open("a", encoding="utf-8") as f:
                f.write(json.dumps({**fields, **record, "time": time.time()}) + "\n")

        return log

    runs_dir = Path(args.runs_dir)
    data = lesson.load_data(Path(args.data))
    ours = []
    for seed in [] if args.skip_ours else args.seeds:
        print(f"ours, seed {seed}", file=sys.stderr, flush=True)
        epochs, accuracy, seconds, run_dir = run_ours(
            seed, args.data, *data[1], logger(model="ours", seed=seed), runs_dir
        )
        ours.append({"seed": seed, "test_accuracy": accuracy, "run_seconds": seconds})
        ours[-1].update(
            train_seconds=epochs[-1]["train_seconds"],
            reach_seconds=first_reach(epochs, args.target),
            epochs=len(epochs),
            run_dir=str(run_dir),
        )
        logger(model="ours", seed=seed, final=True)(ours[-1])
    budget = args.classic_seconds or float(np.mean([r["train_seconds"] for r in ours]))

    print(f"classic, {budget:.0f} s of training", file=sys.stderr, flush=True)
    epochs = run_classic(
        budget, data, logger(model="classic"), args.target, args.classic_cap
    )
    # Its accuracy at the same training time as ours: the first epoch end at or
    # past the budget. Epochs after that only time its way to the target.
    same_time = next((r for r in epochs if r["train_seconds"] >= budget), epochs[-1])
    classic = {
        "test_accuracy": same_time["test_accuracy"],
        "train_seconds": same_time["train_seconds"],
        "reach_seconds": first_reach(epochs, args.target),
        "epochs": same_time["epoch"],
        "epochs_to_reach": len(epochs),
    }
    logger(model="classic", final=True)(classic)

    def reach(seconds):
        return "never" if seconds is None else f"{seconds:.0f} s"

    print("\nours, the lesson's default run:")
    for r in ours:
        print(
            f"  seed {r['seed']}: test accuracy {r['test_accuracy']:.4f}, "
            f"{r['run_seconds']:.0f} s, {r['epochs']} epochs, "
            f"{args.target} reached after {reach(r['reach_seconds'])}"
        )
    print(
        f"classic: test accuracy {classic['test_accuracy']:.4f} after "
        f"{classic['epochs']} epochs in {classic['train_seconds']:.0f} s, "
        f"{args.target} reached after {reach(classic['reach_seconds'])}"
    )
    row = {"classic_test_accuracy": classic["test_accuracy"]}
    if ours:
        mean = float(np.mean([r["test_accuracy"] for r in ours]))
        reaches = [r["reach_seconds"] for r in ours]
        mean_reach = None if None in reaches else float(np.mean(reaches))
        ratio = (
            None
            if mean_reach is None or classic["reach_seconds"] is None
            else mean_reach / classic["reach_seconds"]
        )
        row.update(
            ours_mean_test_accuracy=mean,
            ours_mean_reach_seconds=mean_reach,
            classic_reach_seconds=classic["reach_seconds"],
            reach_time_ratio=ratio,
        )
        print(
            f"\n| ours mean test acc | classic test acc | ours to {args.target} | "
            f"classic to {args.target} | time ratio | wall | machine |\n"
            f"| {mean:.4f} | {classic['test_accuracy']:.4f} | "
            f"{reach(mean_reach)} | {reach(classic['reach_seconds'])} | "
            f"{'n/a' if ratio is None else f'{ratio:.2f}'} | "
            f"{(time.time() - started) / 60:.1f} min | {machine} |"
        )
    print(f"command: {command}")
    row.update(wall_seconds=round(time.time() - started, 1), machine=machine)
    logger(model="summary", command=command)(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
