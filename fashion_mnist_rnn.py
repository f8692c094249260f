"""Classify Fashion-MNIST with a recurrent network that reads images row by row.

What it teaches: a recurrent layer can classify images if it reads the 28
rows of a 28x28 picture as 28 time steps of 28 pixels each, and it keeps the
summary of what it has seen in its hidden state. It also shows how a real
training run is kept honest and safe: a validation set taken from the
training images (never the test set), early stopping that restores the best
weights, a best checkpoint written by rename, the monitored metric's name
checked against what the model reports, a NaN stop, a CSV log of the epochs,
--resume after an interruption, and the test set scored once, at the end.

Run it:
    python fashion_mnist_rnn.py                  # the full run, see below
    python fashion_mnist_rnn.py --quick          # seconds: the whole path
    python fashion_mnist_rnn.py --resume         # carry on an interrupted run
    python fashion_mnist_rnn.py --evaluate-only  # score the newest saved model

Data: the four Fashion-MNIST IDX gz files (Zalando, MIT licence): --data DIR,
else data/fashion_mnist/, else downloaded there from the address that
keras.datasets.fashion_mnist uses, checked against the official SHA-256 sums.

Writes output/fashion_mnist_rnn/<run>/: model.keras (the best model),
last.keras and state.json (for --resume), settings.json, epochs.csv,
learning_curves.png, confusion_matrix.png, test_samples.png, metrics.json;
and logs/fashion_mnist_rnn/<run>/ for TensorBoard (tensorboard --logdir logs).

What to expect: on a 2-core CPU the default bidirectional LSTM of 96 units
trains its 10 epochs in about 3 minutes and scores 0.90 test accuracy (seeds
42, 43, 44: 0.9045, 0.8998, 0.8990); it passes 0.88 after about 75 seconds
of training, in its fourth epoch. The classic version of this lesson (two
stacked LSTMs, stopped on training accuracy) reported 0.8836 after 128
epochs; on the same machine it needs 265 seconds to reach 0.88. Shirts are the
hard class (about 0.71), mixed up with T-shirts, pullovers and coats.

Caveats: figures repeat on the same CPU with the same seed; a GPU may differ
in the last digits. On --resume, EarlyStopping's patience counts afresh and
the training data is shuffled from the seed again.
"""

import argparse
import contextlib
import gzip
import itertools
import json
import math
import os
import shutil
import sys
import time
import zlib
from pathlib import Path

# Keep TensorFlow's start-up chatter (INFO and WARNING lines) out of the way;
# errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import matplotlib  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, confusion_matrix  # noqa: E402

ROOT = Path(__file__).resolve().parent
SCRIPT = "fashion_mnist_rnn"

# Where keras.datasets.fashion_mnist downloads from, and the SHA-256 sums of
# the official files (the same files as Zalando's published MD5 sums).
ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
FILES = {
    "train-images-idx3-ubyte.gz": (
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
    ),
    "train-labels-idx1-ubyte.gz": (
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
    ),
}
CLASS_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data", help="the dataset to read (file or folder); default under data/"
    )
    parser.add_argument(
        "--epochs", type=int, default=10, help="training length in epochs"
    )
    parser.add_argument(
        "--batch-size", type=int, default=256, help="examples per batch"
    )
    parser.add_argument(
        "--cell",
        choices=["simple", "lstm", "gru"],
        default="lstm",
        help="the recurrent layer type",
    )
    parser.add_argument(
        "--units", type=int, default=96, help="units per recurrent layer"
    )
    parser.add_argument(
        "--layers", type=int, default=1, help="stacked recurrent layers"
    )
    parser.add_argument(
        "--dropout", type=float, default=0.0, help="dropout rate between layers"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the training data held out for validation",
    )
    add_run_flags(parser)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest unfinished run from its last checkpoint",
    )
    parser.add_argument(
        "--model",
        help="the saved run (folder or model.keras) that an inference mode uses; "
        "default the newest completed run",
    )
    own = parser.add_argument_group(SCRIPT)
    own.add_argument(
        "--bidirectional",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read the rows top-down and bottom-up",
    )
    own.add_argument(
        "--learning-rate", type=float, default=6e-3, help="Adam's step size"
    )
    own.add_argument(
        "--patience",
        type=int,
        default=3,
        help="epochs without improvement before early stopping",
    )
    own.add_argument(
        "--monitor",
        default="val_accuracy",
        help="the metric that picks the best model and stops training",
    )
    own.add_argument(
        "--evaluate-only",
        action="store_true",
        help="score a saved model (see --model) on the test set; train nothing",
    )
    args = parser.parse_args(argv)
    if args.quick:  # a few hundred images, one epoch, a small layer
        args.epochs, args.units = 1, min(args.units, 16)
    for name in ("epochs", "batch_size", "units", "layers"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be at least 1, got {getattr(args, name)}")
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if not 0 < args.val_fraction < 1:
        parser.error(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.patience < 0:
        parser.error(f"--patience must be at least 0, got {args.patience}")
    return args


# 1. Data ---------------------------------------------------------------------


def find_data(args):
    """The folder holding the four IDX files: --data, else data/fashion_mnist/,
    else a download there (a missing --data path is an error, never a download).
    """
    if args.data is not None:
        folder = Path(args.data)
        if not folder.is_dir():
            raise UsageError(f"--data {folder}: no such folder")
        missing = [name for name in FILES if not (folder / name).exists()]
        if missing:
            raise UsageError(f"--data {folder}: missing {', '.join(missing)}")
        return folder
    folder = ROOT / "data" / "fashion_mnist"
    for name, sha256 in FILES.items():
        if (folder / name).exists():
            continue
        try:
            keras.utils.get_file(
                name,
                origin=ORIGIN + name,
                file_hash=sha256,
                cache_dir=str(ROOT / "data"),
                cache_subdir="fashion_mnist",
            )
        except Exception as err:  # offline, refused, or a bad checksum
            with contextlib.suppress(OSError):  # leave no empty folder behind
                folder.rmdir()
            why = f"{type(err).__name__}: {' '.join(str(err).split())}"
            raise UsageError(
                f"cannot download {ORIGIN}{name} ({why}); place "
                f"{', '.join(FILES)} in {folder}, or pass --data DIR"
            ) from err
    return folder


def read_idx(path, ndim):
    """Read one gzipped IDX file: a 4-byte magic number (0x0000 08 <ndim>, 08
    meaning unsigned bytes), ndim big-endian sizes, then the bytes."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise UsageError(
            f"{path}: damaged or truncated gz file ({err}); download it again"
        ) from err
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big")
    if len(raw) < header or magic != 0x0800 + ndim:
        raise UsageError(
            f"{path}: not an IDX file of {ndim} dimension(s) (magic number "
            f"{magic:#010x}, expected {0x0800 + ndim:#010x}); check the file name"
        )
    shape = tuple(int(n) for n in np.frombuffer(raw[4:header], ">u4"))
    if len(raw) - header != math.prod(shape):
        raise UsageError(
            f"{path}: the header promises {shape} but the file holds "
            f"{len(raw) - header} bytes of data; download it again"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def load_split(folder, prefix):
    """Images scaled to [0, 1] as (num_samples, rows, cols) float32, and labels.

    Each image is a sequence: its rows are the time steps, the pixels of a row
    are the features of that step."""
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if len(images) != len(labels):
        raise UsageError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; the two files must come from the same set"
        )
    if len(labels) and labels.max() >= len(CLASS_NAMES):
        raise UsageError(f"{labels_path}: label {labels.max()} is not a class 0-9")
    return images.astype("float32") / 255.0, labels.astype("int64")


def load_data(folder):
    """The training and test sets, checked to have images of the same size."""
    x_train, y_train = load_split(folder, "train")
    x_test, y_test = load_split(folder, "t10k")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UsageError(
            f"{folder}: training images are {x_train.shape[1:]} but test images "
            f"are {x_test.shape[1:]}"
        )
    return (x_train, y_train), (x_test, y_test)


def split_validation(x, y, val_fraction, seed):
    """Hold out a random share of the training images for validation.

    Early stopping and the best checkpoint look at these, so the test set
    stays unseen until the single evaluation at the end."""
    num_val = round(len(x) * val_fraction)
    if num_val < 1 or num_val >= len(x):
        raise UsageError(
            f"{len(x)} training images cannot give a validation share of "
            f"{val_fraction}; change --val-fraction"
        )
    order = np.random.default_rng(seed).permutation(len(x))
    val, train = order[:num_val], order[num_val:]
    return (x[train], y[train]), (x[val], y[val])


def make_dataset(x, y, batch_size, seed=None):
    """A tf.data pipeline of (images, labels) batches, shuffled when seeded."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        ds = ds.shuffle(len(x), seed=seed)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# 2. Model ----------------------------------------------------------------------


def build_model(
    image_shape,
    cell,
    units,
    num_layers,
    bidirectional,
    dropout,
    lr,
    decay_steps,
    unroll=True,
):
    """Stacked recurrent layers over the rows, then one softmax over 10 classes.

    unroll=True writes the 28 steps out as 28 copies of the cell instead of a
    loop. Keras compiles the training step with XLA, which then fuses across
    steps: on a 2-core CPU a batch of the default model took 64 ms unrolled
    against 98 ms looped. The price is a longer compile (about 10 s), which
    --quick does not repay, so it keeps the loop. Built and compiled in one
    function, so a tf.distribute strategy scope can wrap it."""
    rnn_layer = {"simple": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
    directions = 2 if bidirectional else 1
    inputs = keras.Input(shape=image_shape, name="rows")  # (batch, rows, cols)
    x = inputs
    for i in range(1, num_layers + 1):
        # Every layer but the last hands on its whole sequence to the next.
        last = i == num_layers
        rnn = rnn_layer[cell](
            units, return_sequences=not last, unroll=unroll, name=f"{cell}_{i}"
        )
        if bidirectional:  # one copy reads top-down, one bottom-up; concatenated
            rnn = layers.Bidirectional(rnn, name=f"bidirectional_{i}")
        # (batch, rows, features) -> (batch, rows, directions * units), or
        # (batch, directions * units) for the last layer: its final state.
        x = rnn(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    # (batch, directions * units) -> (batch, 10): one probability per class.
    outputs = layers.Dense(len(CLASS_NAMES), activation="softmax", name="classes")(x)
    model = keras.Model(inputs, outputs, name=f"{'bi' * (directions - 1)}{cell}_rows")
    # The step size falls along a cosine from lr to zero over the whole run:
    # big steps early, fine ones in the last epochs, where accuracy is won.
    schedule = keras.optimizers.schedules.CosineDecay(lr, decay_steps)
    model.compile(
        # Clipping the gradient's norm keeps one unlucky batch from throwing the
        # recurrent weights far off, where the state saturates or explodes.
        optimizer=keras.optimizers.Adam(learning_rate=schedule, clipnorm=1.0),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


# 3. Training -------------------------------------------------------------------


def monitor_mode(monitor):
    """Accuracies are better higher; losses lower."""
    return "max" if "acc" in monitor else "min"


def train(model, train_ds, val_ds, args, run_dir, log_dir, initial_epoch, best):
    """Fit with validation, the safe best checkpoint, early stopping, the CSV
    log and TensorBoard. Epoch numbers (and TensorBoard steps) carry on from
    initial_epoch, so a resumed run continues its curves."""
    mode = monitor_mode(args.monitor)
    checkpoint_cb = RunCheckpoint(run_dir, args.monitor, mode, best)
    early_stop_cb = keras.callbacks.EarlyStopping(
        monitor=args.monitor,
        mode=mode,
        patience=args.patience,
        restore_best_weights=True,
    )
    csv_cb = keras.callbacks.CSVLogger(run_dir / "epochs.csv", append=initial_epoch > 0)
    tensorboard_cb = keras.callbacks.TensorBoard(log_dir=str(log_dir))
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=args.epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # train_ds shuffles itself, from the seed
        # The checkpoint comes first, so the CSV never lists an unsaved epoch.
        callbacks=[checkpoint_cb, csv_cb, early_stop_cb, tensorboard_cb],
    )
    if checkpoint_cb.nan_batch is not None:
        raise UsageError(
            f"the loss became NaN (batch {checkpoint_cb.nan_batch + 1}), so training "
            "stopped before saving those weights; lower --learning-rate and start "
            "again"
        )


# 4. Evaluation -----------------------------------------------------------------


def evaluate(model, x_test, y_test):
    """Score the test set once: predicted classes, accuracy, per-class accuracy
    and the confusion matrix (rows: true class, columns: predicted)."""
    probabilities = model.predict(x_test, batch_size=1024, verbose=0)  # (n, 10)
    predicted = probabilities.argmax(axis=1)  # (n, 10) -> (n,)
    matrix = confusion_matrix(y_test, predicted, labels=range(len(CLASS_NAMES)))
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    accuracy = float(np.mean(predicted == y_test))
    return (
        predicted,
        accuracy,
        dict(zip(CLASS_NAMES, per_class.tolist(), strict=True)),
        matrix,
    )


def best_epoch_row(epochs_csv, monitor):
    """The CSV log's row of the best epoch (a resumed run's rows included)."""
    history = pd.read_csv(epochs_csv).drop_duplicates("epoch", keep="last")
    column = history[monitor]
    best = column.idxmax() if monitor_mode(monitor) == "max" else column.idxmin()
    return history, history.loc[best]


# 5. Pictures -------------------------------------------------------------------


def plot_learning_curves(history, best_epoch, monitor, path, args):
    """Loss and accuracy per epoch, training beside validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = history["epoch"] + 1  # Keras counts from 0 in the log, 1 on screen
    for ax, name in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[name], "o-", label="training")
        ax.plot(epochs, history["val_" + name], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.legend()
        ax.axvline(best_epoch, color="grey", ls="--", lw=1)
    fig.suptitle(f"best epoch by {monitor}: {best_epoch} (dashed)")
    save_figure(fig, path, args)


def plot_confusion(matrix, path, args):
    """Which classes the model mixes up: shirts, T-shirts, pullovers, coats."""
    fig, ax = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay(matrix, display_labels=CLASS_NAMES).plot(
        ax=ax, xticks_rotation=45, colorbar=False, values_format="d"
    )
    ax.set_title("test set: true class (rows) vs predicted (columns)")
    save_figure(fig, path, args)


def plot_samples(x_test, y_test, predicted, path, args, count=24):
    """The first test images with true and predicted labels; mistakes in red."""
    count = min(count, len(x_test))
    cols = 6
    fig, axes = plt.subplots(-(-count // cols), cols, figsize=(cols * 1.8, 8))
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i >= count:
            continue
        ax.imshow(x_test[i], cmap="gray_r")
        right = predicted[i] == y_test[i]
        label = CLASS_NAMES[predicted[i]]
        if not right:
            label += f"\n(is {CLASS_NAMES[y_test[i]]})"
        ax.set_title(label, fontsize=8, color="black" if right else "red")
    fig.suptitle("test images: predicted class; red = mistake, true class below")
    save_figure(fig, path, args)


def log_pictures(log_dir, pngs, test_accuracy, step):
    """Put the test accuracy and the pictures beside the curves in TensorBoard."""
    with tf.summary.create_file_writer(str(log_dir / "test")).as_default():
        tf.summary.scalar("test_accuracy", test_accuracy, step=step)
        for png in pngs:
            image = tf.image.decode_png(tf.io.read_file(str(png)), channels=4)
            tf.summary.image(png.stem, image[None], step=step)  # add a batch axis


# The lesson, in order ------------------------------------------------------------


def evaluate_only(args):
    """Score a saved model on the test set; results on stdout, one per line.
    Without --data, the test images come from the folder the run used."""
    run_dir = model_run_dir(args)
    settings = run_dir / "settings.json"
    if args.data is None and settings.exists():  # the run's data, if still there
        saved = json.loads(settings.read_text()).get("data")
        if saved and Path(saved).is_dir():
            args.data = saved
    start(args)
    folder = find_data(args)
    (_, _), (x_test, y_test) = load_data(folder)
    if args.quick:
        x_test, y_test = x_test[:500], y_test[:500]
    print(f"scoring {len(x_test)} test images from {folder}", file=sys.stderr)
    try:
        model = load_run_model(run_dir / "model.keras")
    except (OSError, ValueError) as err:
        raise UsageError(f"{run_dir / 'model.keras'}: cannot load ({err})") from err
    _, accuracy, per_class, _ = evaluate(model, x_test, y_test)
    print(f"model: {run_dir / 'model.keras'}", file=sys.stderr)
    print(f"test_accuracy\t{accuracy:.4f}")
    for name, value in per_class.items():
        print(f"{name}\t{value:.4f}")
    return 0


def run(args):
    if args.evaluate_only:
        return evaluate_only(args)
    started = time.time()
    if args.resume:  # the run's own settings, not today's flags
        run_dir, log_dir = find_run(args, completed=False)
        saved = json.loads((run_dir / "settings.json").read_text())
        keep = ("resume", "output_dir", "log_dir", "show")
        vars(args).update({k: v for k, v in saved.items() if k not in keep})
    start(args)

    # Everything is checked before a run folder exists: errors write nothing.
    (x_train, y_train), (x_test, y_test) = load_data(find_data(args))
    if args.quick:
        x_train, y_train = x_train[:1000], y_train[:1000]
        x_test, y_test = x_test[:500], y_test[:500]
    (x_train, y_train), (x_val, y_val) = split_validation(
        x_train, y_train, args.val_fraction, args.seed
    )
    print(
        f"images {x_train.shape[1:]}: {len(x_train)} training, {len(x_val)} "
        f"validation, {len(x_test)} test",
        file=sys.stderr,
    )
    train_ds = make_dataset(x_train, y_train, args.batch_size, seed=args.seed)
    val_ds = make_dataset(x_val, y_val, 1024)

    if args.resume:
        model, state = resume_checkpoint(run_dir)
        initial_epoch, best = state["epoch"], state["best"]
        print(f"resuming {run_dir.name} after epoch {initial_epoch}", file=sys.stderr)
    else:
        model = build_model(
            x_train.shape[1:],
            args.cell,
            args.units,
            args.layers,
            args.bidirectional,
            args.dropout,
            args.learning_rate,
            decay_steps=args.epochs * math.ceil(len(x_train) / args.batch_size),
            unroll=not args.quick,
        )
        run_dir, log_dir = make_run_dirs(args)
        write_json(run_dir / "settings.json", vars(args))
        initial_epoch, best = 0, None
    model.summary(print_fn=lambda line, **_: print(line, file=sys.stderr))

    train_started = time.time()
    with discard_unsaved_run(run_dir, log_dir):
        train(model, train_ds, val_ds, args, run_dir, log_dir, initial_epoch, best)
    train_seconds = time.time() - train_started

    # The best weights, as saved on disk: the same model that --evaluate-only
    # and any later user will load.
    model = load_run_model(run_dir / "model.keras")
    history, best_row = best_epoch_row(run_dir / "epochs.csv", args.monitor)
    best_epoch = int(best_row["epoch"]) + 1
    val_accuracy = float(best_row["val_accuracy"])
    predicted, test_accuracy, per_class, matrix = evaluate(model, x_test, y_test)
    for name, value in per_class.items():
        print(f"{name:12} {value:.4f}")

    pngs = [run_dir / f"{name}.png" for name in ("learning_curves", "confusion_matrix")]
    pngs.append(run_dir / "test_samples.png")
    plot_learning_curves(history, best_epoch, args.monitor, pngs[0], args)
    plot_confusion(matrix, pngs[1], args)
    plot_samples(x_test, y_test, predicted, pngs[2], args)
    log_pictures(log_dir, pngs, test_accuracy, best_epoch)

    epochs_run = len(history) - initial_epoch
    throughput = {
        "value": round(len(x_train) * epochs_run / train_seconds, 1),
        "unit": "training images per second (validation included in the time)",
    }
    results = {
        "test_accuracy": test_accuracy,
        "val_accuracy": val_accuracy,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "per_class_accuracy": per_class,
    }
    write_metrics(run_dir, args, started, throughput, results)
    print_summary(
        f"test accuracy {test_accuracy:.4f} (validation {val_accuracy:.4f}, best "
        f"epoch {best_epoch} of {len(history)})\n"
        f"best model:  {run_dir / 'model.keras'}",
        run_dir,
        log_dir,
    )
    return 0


# Plumbing ----------------------------------------------------------------------
# The same few helpers stand in every lesson of this collection, word for word.


class UsageError(Exception):
    """Bad usage, bad input or missing data: one line for the user, exit 2."""


def add_run_flags(parser):
    """The flags every lesson shares: seed, folders, --quick and --show."""
    parser.add_argument("--seed", type=int, default=42, help="one seed for all")
    parser.add_argument(
        "--output-dir", default=str(ROOT / "output"), help="where runs are saved"
    )
    parser.add_argument(
        "--log-dir", default=str(ROOT / "logs"), help="where TensorBoard logs go"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a tiny run of the whole path"
    )
    parser.add_argument(
        "--show", action="store_true", help="also open the pictures in a window"
    )


def check_versions():
    """Stop with one plain line on TensorFlow before 2.16 or on Keras 2."""
    found = tuple(int(part) for part in tf.__version__.split(".")[:2])
    if found < (2, 16) or not keras.__version__.startswith("3."):
        raise UsageError(
            f"found TensorFlow {tf.__version__} with Keras {keras.__version__}; "
            "these lessons need TensorFlow 2.16 or newer with Keras 3: "
            "pip install -U 'tensorflow>=2.16'"
        )


def start(args):
    """Seed Python, NumPy and TensorFlow once; pick the picture backend."""
    if not args.show:
        matplotlib.use("Agg")  # no window: pictures go to files only
    keras.utils.set_random_seed(args.seed)
    print("settings: " + json.dumps(vars(args), sort_keys=True), file=sys.stderr)


def make_run_dirs(args):
    """Give a new run its id and its own output and log folders.

    The id is a sortable time stamp; creating the output folder is atomic, so
    two runs started in the same second take _00 and _01. A folder that cannot
    be made is one line naming the flag, and leaves no half-made run."""
    out_root = Path(args.output_dir) / SCRIPT
    stamp = time.strftime("%Y%m%d-%H%M%S")
    flag = "--output-dir"
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        for n in itertools.count():
            run_dir = out_root / f"{stamp}_{n:02d}"
            try:
                run_dir.mkdir()
            except FileExistsError:
                continue
            flag, log_dir = "--log-dir", Path(args.log_dir) / SCRIPT / run_dir.name
            try:
                log_dir.mkdir(parents=True, exist_ok=True)
            except OSError:
                run_dir.rmdir()
                with contextlib.suppress(OSError):  # and no empty lesson folder
                    out_root.rmdir()
                raise
            return run_dir, log_dir
    except OSError as err:
        raise UsageError(
            f"{flag}: cannot make {err.filename} ({err.strerror}); "
            "give a folder you can write to"
        ) from None


def find_run(args, completed):
    """The newest completed run (with metrics.json) or the newest unfinished one."""
    out_root = Path(args.output_dir) / SCRIPT
    runs = sorted(p for p in out_root.glob("*_*") if p.is_dir())
    for run_dir in reversed(runs):
        if (run_dir / "metrics.json").exists() == completed:
            return run_dir, Path(args.log_dir) / SCRIPT / run_dir.name
    kind = "completed" if completed else "unfinished"
    raise UsageError(f"no {kind} run in {out_root}; train one: python {SCRIPT}.py")


def model_run_dir(args, needs=("model.keras",)):
    """The run folder an inference mode reads: --model, or the newest complete.
    It must hold the files in `needs`."""
    if args.model is None:
        run_dir = find_run(args, completed=True)[0]
        where, fix = run_dir, "give a complete run with --model, or train again"
    else:
        path = Path(args.model)
        run_dir = path.parent if path.suffix == ".keras" else path
        where, fix = f"--model {path}", f"give a run folder of {SCRIPT}.py"
    for name in needs:
        if not (run_dir / name).is_file():
            raise UsageError(f"{where}: no {name} there; {fix}")
    return run_dir


def load_run_model(path, **kwargs):
    """keras.models.load_model, with a missing or damaged file as one line."""
    try:
        return keras.models.load_model(path, **kwargs)
    except ValueError:
        raise UsageError(
            f"{path}: not a readable Keras model (missing or damaged); "
            "train a new run, or give another with --model"
        ) from None


def resume_checkpoint(run_dir):
    """The checkpoint --resume carries on from: last.keras and state.json."""
    if not (run_dir / "state.json").exists():
        raise UsageError(
            f"{run_dir} stopped before its first checkpoint: nothing to resume; "
            "delete that folder, or start a new run"
        )
    try:
        state = json.loads((run_dir / "state.json").read_text(encoding="utf-8"))
        state = {"epoch": int(state["epoch"]), "best": state["best"]}
    except (ValueError, KeyError, TypeError):
        raise UsageError(
            f"{run_dir / 'state.json'}: damaged; delete {run_dir}, or start a new run"
        ) from None
    return load_run_model(run_dir / "last.keras"), state


@contextlib.contextmanager
def discard_unsaved_run(run_dir, log_dir):
    """Around training: a run stopped (bad input, a NaN, Ctrl-C) before its
    first checkpoint is removed, folders and all; one with a checkpoint stays
    for --resume."""
    try:
        yield
    except (UsageError, KeyboardInterrupt) as err:
        if (run_dir / "state.json").exists():
            raise
        shutil.rmtree(run_dir)
        shutil.rmtree(log_dir, ignore_errors=True)
        for folder in (run_dir.parent, log_dir.parent):  # if now empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(err, KeyboardInterrupt):
            raise KeyboardInterrupt("nothing was saved yet: start again") from None
        raise


def save_model(model, path):
    """Save to a temporary .keras name, then rename over the old file, so a
    crash mid-write leaves the previous checkpoint readable."""
    tmp = Path(path).with_name(Path(path).stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def write_json(path, data):
    """Write JSON under a temporary name and rename it: never half a file."""
    tmp = Path(path).with_suffix(".tmp")
    text = json.dumps(
        data, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)
    )
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


class RunCheckpoint(keras.callbacks.Callback):
    """Keeps a run resumable and its best model safe, after every epoch.

    Writes last.keras (for --resume) and, when `monitor` improves, model.keras,
    both by rename; state.json holds the epoch and the best figure. Checks the
    monitored name after the first batch, and stops on a NaN loss."""

    def __init__(self, run_dir, monitor, mode="min", best=None):
        super().__init__()
        self.run_dir, self.monitor, self.mode = Path(run_dir), monitor, mode
        self.best = best
        self.nan_batch = None
        self.checked = False

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        if not self.checked:
            self.checked = True
            names = sorted(set(logs) | {"val_" + name for name in logs})
            if self.monitor not in names:
                raise UsageError(
                    f"cannot monitor {self.monitor!r}: the model reports "
                    + ", ".join(names)
                )
        if not math.isfinite(float(logs.get("loss", 0.0))):
            self.nan_batch = batch
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_batch is not None:
            return  # never save weights that produced a NaN loss
        value = float(logs[self.monitor])
        if self.best is None:
            better = True
        else:
            better = value < self.best if self.mode == "min" else value > self.best
        if better:
            self.best = value
            save_model(self.model, self.run_dir / "model.keras")
        save_model(self.model, self.run_dir / "last.keras")
        state = {"epoch": epoch + 1, "monitor": self.monitor, "best": self.best}
        write_json(self.run_dir / "state.json", state)


def save_figure(fig, path, args):
    """Write a picture into the run folder; open a window only with --show."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    if args.show:
        plt.show()
    plt.close(fig)


def write_metrics(run_dir, args, started, throughput, results):
    """Write metrics.json last: a run folder that has one is complete."""
    metrics = {
        "script": SCRIPT,
        "run": Path(run_dir).name,
        "settings": vars(args),
        "wall_seconds": round(time.time() - started, 2),
        "throughput": throughput,
        "results": results,
    }
    write_json(Path(run_dir) / "metrics.json", metrics)


def print_summary(headline, run_dir, log_dir):
    """The closing lines: the headline figure, the run folder, TensorBoard."""
    print(f"\n{headline}")
    print(f"run folder:  {run_dir}")
    print(f"logs:        {log_dir}")
    print(f"TensorBoard: tensorboard --logdir {Path(log_dir).parent.parent}")


def main(argv=None):
    args = parse_args(argv)
    try:
        check_versions()
        return run(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # a lesson may say what it kept
        kept = (
            str(err) or f"the last good checkpoint is kept: python {SCRIPT}.py --resume"
        )
        print(f"\ninterrupted; {kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
