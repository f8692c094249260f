"""What a recurrent layer computes, made visible.

A recurrent layer reads a sequence one step at a time and carries a hidden
state from each step to the next. This lesson opens the box:

1. One SimpleRNN computed by hand with NumPy, h_t = tanh(x_t W_x + h_{t-1} W_h
   + b), beside keras.layers.SimpleRNN holding the same weights.
2. Static and dynamic unrolling: the same layer with unroll=True (a copy of
   the cell per step) and unroll=False (a loop); same outputs, different cost.
3. Outputs and final states: return_sequences and return_state, and the state
   shapes of SimpleRNN, LSTM and GRU side by side.
4. Sequences of different lengths: a mask built from the lengths, what the
   layer returns at padded steps, and why Masking(0.0) can be wrong.

Run it:
    python simple_rnn.py            # a few seconds on a laptop CPU
    python simple_rnn.py --quick    # shorter, fewer timing runs

Data: none; the lesson makes its own small arrays from --seed.

Writes output/simple_rnn/<run>/hidden_states.png and metrics.json, and
logs/simple_rnn/<run>/, whose Graphs tab shows the SimpleRNN computation:
    tensorboard --logdir logs

What to expect: the hand computation and the layer agree to about 1e-7, and
the unrolled and looped layers exactly. On 100 steps the unrolled layer takes
several times longer to trace (a cell copy per step), then runs each call a
little faster; the loop is the sane default for long sequences.

Caveats: timings depend on the machine and its load. Figures repeat on the
same CPU with the same seed; a GPU may differ in the last digits.
"""

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from pathlib import Path

# Keep TensorFlow's start-up chatter (INFO and WARNING lines) out of the way;
# errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import matplotlib  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

ROOT = Path(__file__).resolve().parent
SCRIPT = "simple_rnn"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--units", type=int, default=5, help="units per recurrent layer"
    )
    add_run_flags(parser)
    own = parser.add_argument_group(SCRIPT)
    own.add_argument(
        "--timing-steps", type=int, default=100, help="sequence length for timing"
    )
    own.add_argument(
        "--repeats", type=int, default=50, help="timed calls of each layer"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 5)
        args.timing_steps = min(args.timing_steps, 20)
    for name in ("units", "timing_steps", "repeats"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} must be at least 1, got {getattr(args, name)}")
    return args


# 1. One recurrent cell, by hand ----------------------------------------------

# The classic example: a batch of four sequences, two time steps, three
# features per step.
X0 = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 0, 1]]  # step t=0, (batch, features)
X1 = [[9, 8, 7], [0, 0, 0], [6, 5, 4], [3, 2, 1]]  # step t=1, (batch, features)


def hand_rnn(x, w_x, w_h, b):
    """A SimpleRNN in NumPy: h_t = tanh(x_t W_x + h_{t-1} W_h + b), h_{-1} = 0.

    (batch, time, features) -> (batch, time, units): the state after every
    step, which is also the layer's output at that step."""
    h = np.zeros((x.shape[0], w_h.shape[0]), dtype=x.dtype)  # (batch, units)
    outputs = []
    for t in range(x.shape[1]):
        h = np.tanh(x[:, t] @ w_x + h @ w_h + b)  # (batch, units)
        outputs.append(h)
    return np.stack(outputs, axis=1)  # (batch, time, units)


def random_weights(rng, features, units):
    """Small random weights and a non-zero bias, so every term shows."""
    w_x = rng.normal(0, 0.3, size=(features, units)).astype("float32")
    w_h = rng.normal(0, 0.3, size=(units, units)).astype("float32")
    b = rng.normal(0, 0.3, size=units).astype("float32")
    return w_x, w_h, b


def simple_rnn_layer(weights, **kwargs):
    """A keras.layers.SimpleRNN that holds the given weights."""
    w_x, w_h, b = weights
    layer = layers.SimpleRNN(w_h.shape[0], return_sequences=True, **kwargs)
    layer.build((None, None, w_x.shape[0]))
    # Keras keeps them in this order: kernel, recurrent_kernel, bias.
    layer.set_weights([w_x, w_h, b])
    return layer


def compare_with_keras(rng, units):
    """Run the hand computation and the layer on the classic batch."""
    x = np.stack([X0, X1], axis=1).astype("float32")  # (4, 2, 3)
    weights = random_weights(rng, x.shape[-1], units)
    by_hand = hand_rnn(x, *weights)  # (4, 2, units)
    by_keras = np.asarray(simple_rnn_layer(weights)(x))  # (4, 2, units)
    return x, weights, by_hand, by_keras


# 2. Static and dynamic unrolling ----------------------------------------------


def compare_unrolling(rng, weights, timing_steps, repeats):
    """The same layer unrolled (one cell copy per step, traced into the graph)
    and looped (one cell inside a while loop): same outputs, different cost.

    Both are compiled with tf.function, as model.fit would; the first call
    pays for tracing, so it is timed apart from the warm calls."""
    x = rng.normal(size=(32, timing_steps, weights[0].shape[0])).astype("float32")
    results = {}
    for unroll in (True, False):
        layer = simple_rnn_layer(weights, unroll=unroll)
        step = tf.function(layer)
        started = time.perf_counter()
        outputs = step(x)  # (32, timing_steps, units)
        trace_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(repeats):
            step(x)
        call_seconds = (time.perf_counter() - started) / repeats
        results[unroll] = (np.asarray(outputs), trace_seconds, call_seconds)
    diff = float(np.max(np.abs(results[True][0] - results[False][0])))
    return diff, results


# 3. Outputs and final states ---------------------------------------------------


def state_shapes(units, batch_size=4, seq_length=7, features=3):
    """What each layer returns with return_sequences and return_state.

    An LSTM carries two states (h, the output, and c, the memory cell);
    SimpleRNN and GRU carry one, which equals the last output."""
    x = np.zeros((batch_size, seq_length, features), dtype="float32")
    shapes = {}
    for name, layer_class in (
        ("SimpleRNN", layers.SimpleRNN),
        ("LSTM", layers.LSTM),
        ("GRU", layers.GRU),
    ):
        last = layer_class(units)(x)  # (batch, units)
        outputs, *states = layer_class(units, return_sequences=True, return_state=True)(
            x
        )  # outputs (batch, time, units); each state (batch, units)
        shapes[name] = {
            "default": tuple(last.shape),
            "return_sequences": tuple(outputs.shape),
            "states": [tuple(state.shape) for state in states],
        }
    return shapes


# 4. Sequences of different lengths ---------------------------------------------


def padded_batch(rng, lengths, max_length, features=3):
    """A batch padded with zeros after each sequence's real steps.

    Sequence 2's first real step is all zeros on purpose: only the lengths,
    not the values, can tell that it is real."""
    x = np.zeros((len(lengths), max_length, features), dtype="float32")
    for i, length in enumerate(lengths):
        x[i, :length] = rng.normal(size=(length, features))
    x[2, 0] = 0.0  # a real step that happens to be all zeros
    return x


def run_masked(weights, x, lengths):
    """Run the layer with a mask built from the lengths.

    Returns the outputs at every step (batch, time, units), the final state
    (batch, units) and the mask (batch, time)."""
    mask = tf.sequence_mask(lengths, maxlen=x.shape[1])  # (batch, time), bool
    layer = simple_rnn_layer(weights, return_state=True)
    outputs, state = layer(x, mask=mask)
    return np.asarray(outputs), np.asarray(state), np.asarray(mask)


def run_zero_masking(weights, x):
    """The common shortcut: layers.Masking(0.0) treats any all-zero step as
    padding, including a real one. Returns the final state (batch, units)."""
    inputs = keras.Input((None, x.shape[-1]))
    masked = layers.Masking(mask_value=0.0)(inputs)
    _, state = simple_rnn_layer(weights, return_state=True)(masked)
    return np.asarray(keras.Model(inputs, state)(x))


# Pictures and logs ---------------------------------------------------------------


def plot_hidden_states(outputs, lengths, path, args):
    """One panel per sequence: every unit's value at every step; padded steps
    are shaded, where Keras repeats the last real output."""
    fig, axes = plt.subplots(1, len(lengths), figsize=(3.2 * len(lengths), 3.2))
    for i, (ax, length) in enumerate(zip(axes, lengths, strict=True)):
        image = ax.imshow(outputs[i].T, vmin=-1, vmax=1, cmap="coolwarm")
        ax.axvspan(length - 0.5, outputs.shape[1] - 0.5, color="grey", alpha=0.5)
        ax.set_xticks(range(outputs.shape[1]))
        ax.set_title(f"sequence {i}: {length} real step(s)")
        ax.set_xlabel("time step")
        ax.set_ylabel("unit")
    fig.colorbar(image, ax=axes[-1], label="hidden state h_t")
    fig.suptitle("SimpleRNN hidden state; shaded steps are padding")
    save_figure(fig, path, args)


def log_graph(log_dir, weights, x):
    """Trace one call of the layer so TensorBoard's Graphs tab can show it."""
    layer = simple_rnn_layer(weights)
    step = tf.function(layer)
    writer = tf.summary.create_file_writer(str(log_dir))
    tf.summary.trace_on(graph=True)
    step(x)
    with writer.as_default():
        tf.summary.trace_export(name="simple_rnn", step=0)
    return writer


def print_array(title, array):
    print(f"{title} {array.shape}:")
    print(np.array2string(array, precision=5, suppress_small=True))


# The lesson, in order ------------------------------------------------------------


def run(args):
    started = time.time()
    start(args)
    rng = np.random.default_rng(args.seed)
    run_dir, log_dir = make_run_dirs(args)

    print("\n1. One SimpleRNN cell, by hand and by Keras")
    x, weights, by_hand, by_keras = compare_with_keras(rng, args.units)
    max_abs_diff = float(np.max(np.abs(by_hand - by_keras)))
    print_array("inputs (batch, time, features)", x)
    print_array("by hand (batch, time, units)", by_hand)
    print_array("keras.layers.SimpleRNN (batch, time, units)", by_keras)
    print(f"largest difference: {max_abs_diff:.2e}")

    print(f"\n2. Unrolled and looped, {args.timing_steps} steps, batch 32")
    unroll_diff, timings = compare_unrolling(
        rng, weights, args.timing_steps, args.repeats
    )
    for unroll, (_, trace_seconds, call_seconds) in timings.items():
        print(
            f"unroll={unroll!s:5}  first call (trace) {trace_seconds * 1e3:8.1f} ms"
            f"  then {call_seconds * 1e3:7.2f} ms a call"
        )
    print(f"largest difference between the two: {unroll_diff:.2e}")

    print("\n3. What each layer returns (batch 4, 7 steps, 3 features)")
    for name, shapes in state_shapes(args.units).items():
        print(
            f"{name:9}  default {shapes['default']}  return_sequences "
            f"{shapes['return_sequences']}  states {shapes['states']}"
        )

    print("\n4. Sequences of different lengths")
    lengths = [4, 1, 3, 2]
    padded = padded_batch(rng, lengths, max_length=4)
    outputs, state, mask = run_masked(weights, padded, lengths)
    true_last = outputs[np.arange(len(lengths)), np.array(lengths) - 1]
    print(f"lengths {lengths}; mask from the lengths:\n{mask.astype(int)}")
    print(
        "final state == output at each sequence's last real step: "
        f"{np.allclose(state, true_last)}"
    )
    print(
        "at a padded step Keras repeats the last real output (sequence 1, steps "
        f"1-3 equal step 0: {np.allclose(outputs[1, 1:], outputs[1, :1])})"
    )
    zero_state = run_zero_masking(weights, padded)
    print(
        "Masking(0.0) skips sequence 2's real all-zero first step; its final "
        f"state then differs by {np.max(np.abs(zero_state[2] - state[2])):.3f}"
    )

    plot_hidden_states(outputs, lengths, run_dir / "hidden_states.png", args)
    writer = log_graph(log_dir, weights, x)
    with writer.as_default():
        tf.summary.scalar("max_abs_diff", max_abs_diff, step=0)
        tf.summary.scalar("unroll_max_abs_diff", unroll_diff, step=0)
    writer.close()

    looped_seconds = timings[False][2]
    throughput = {
        "value": round(32 * args.timing_steps / looped_seconds, 1),
        "unit": "sequence steps per second, looped layer, batch 32",
    }
    results = {"max_abs_diff": max_abs_diff, "unroll_max_abs_diff": unroll_diff}
    write_metrics(run_dir, args, started, throughput, results)
    print_summary(
        f"hand vs Keras: {max_abs_diff:.2e}; unrolled vs looped: {unroll_diff:.2e}",
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


def write_json(path, data):
    """Write JSON under a temporary name and rename it: never half a file."""
    tmp = Path(path).with_suffix(".tmp")
    text = json.dumps(
        data, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)
    )
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
