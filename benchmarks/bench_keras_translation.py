"""Benchmark keras_translation.py against the classic character seq2seq.

Ours: the default run of keras_translation.py (a subprocess, default settings)
on the real data. The classic configuration, as in the original Keras example:
one-hot characters, LSTM of 256, RMSprop, batch 64, the first 10,000 lines
less the test pairs, the last 20% of them for validation, no masking; trained
for the same wall time as our whole run, then scored on the same 1,000 test
pairs with greedy decoding (stopping at its end marker or its maximum length).

    python benchmarks/bench_keras_translation.py --data ../shared/data/fra_eng/fra.txt

Each finished measurement is appended to --results as one JSON line; the last
line printed is the results row. Takes about twice the default run's time.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import sacrebleu  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

import keras_translation as kt  # noqa: E402

CLASSIC_LINES = 10_000


def record(path, entry):
    """Append one finished measurement, so an interrupted run keeps it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
    print(json.dumps(entry), file=sys.stderr, flush=True)


def run_ours(args):
    """The lesson's default run, exactly as a user starts it."""
    cmd = [sys.executable, str(ROOT / "keras_translation.py"), "--data", args.data]
    cmd += ["--output-dir", args.output_dir, "--log-dir", args.log_dir]
    started = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - started
    runs = sorted((Path(args.output_dir) / "keras_translation").glob("*_*"))
    metrics = json.loads((runs[-1] / "metrics.json").read_text())
    return {"wall_seconds": round(wall, 1), **metrics["results"]}, metrics


def one_hot(texts, index, length):
    """(n,) texts -> (n, length, vocab) one-hot, as the classic example does."""
    out = np.zeros((len(texts), length, len(index)), dtype="float32")
    for i, text in enumerate(texts):
        for t, ch in enumerate(text[:length]):
            if ch in index:  # a character the classic never saw stays all-zero
                out[i, t, index[ch]] = 1.0
    return out


class TimeLimit(keras.callbacks.Callback):
    """Stop training once the wall-time budget is spent (checked every batch)."""

    def __init__(self, seconds):
        super().__init__()
        self.deadline = time.time() + seconds
        self.epochs = 0

    def on_train_batch_end(self, batch, logs=None):
        if time.time() > self.deadline:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.epochs = epoch + 1


def run_classic(args, test, budget):
    """Train the classic configuration for `budget` seconds, then decode."""
    started = time.time()
    pairs = kt.load_pairs(Path(args.data), CLASSIC_LINES)
    test_english = {src for src, _ in test}
    pairs = [p for p in pairs if p[0] not in test_english]
    sources = [s for s, _ in pairs]
    targets = ["\t" + t + "\n" for _, t in pairs]  # start and end markers
    src_index = {c: i for i, c in enumerate(sorted(set("".join(sources))))}
    tgt_index = {c: i for i, c in enumerate(sorted(set("".join(targets))))}
    src_len = max(map(len, sources))
    tgt_len = max(map(len, targets))
    enc_x = one_hot(sources, src_index, src_len)
    dec_x = one_hot(targets, tgt_index, tgt_len)
    dec_y = one_hot([t[1:] for t in targets], tgt_index, tgt_len)

    keras.utils.set_random_seed(args.seed)
    enc_in = keras.Input(shape=(None, len(src_index)), name="encoder_input")
    _, h, c = layers.LSTM(256, return_state=True, name="encoder_lstm")(enc_in)
    dec_in = keras.Input(shape=(None, len(tgt_index)), name="decoder_input")
    dec_lstm = layers.LSTM(
        256, return_sequences=True, return_state=True, name="decoder_lstm"
    )
    y, _, _ = dec_lstm(dec_in, initial_state=[h, c])
    dense = layers.Dense(len(tgt_index), activation="softmax", name="decoder_output")
    model = keras.Model([enc_in, dec_in], dense(y))
    model.compile("rmsprop", "categorical_crossentropy", metrics=["accuracy"])
    limit_cb = TimeLimit(budget - (time.time() - started))
    history = model.fit(
        [enc_x, dec_x],
        dec_y,
        batch_size=64,
        epochs=10_000,
        validation_split=0.2,
        callbacks=[limit_cb],
        verbose=2,
    )
    train_seconds = time.time() - started

    # Inference models from the trained layers, fetched by name.
    encoder = keras.Model(enc_in, [h, c])
    token = keras.Input(shape=(1, len(tgt_index)))
    h_in, c_in = keras.Input(shape=(256,)), keras.Input(shape=(256,))
    y, h2, c2 = model.get_layer("decoder_lstm")(token, initial_state=[h_in, c_in])
    probs = model.get_layer("decoder_output")(y)
    decoder = keras.Model([token, h_in, c_in], [probs, h2, c2])
    step = tf.function(lambda t, h, c: decoder([t, h, c]), reduce_retracing=True)

    english = sorted(test_english)
    chars = sorted(tgt_index, key=tgt_index.get)
    outputs = {}
    for i in range(0, len(english), 256):
        batch = english[i : i + 256]
        h, c = encoder(one_hot(batch, src_index, src_len))
        tokens = np.zeros((len(batch), 1, len(tgt_index)), dtype="float32")
        tokens[:, 0, tgt_index["\t"]] = 1.0
        texts, done = [""] * len(batch), np.zeros(len(batch), dtype=bool)
        for _ in range(tgt_len):
            p, h, c = step(tokens, h, c)
            best = np.argmax(p.numpy()[:, -1], axis=-1)
            for j, k in enumerate(best):
                if not done[j]:
                    if chars[k] == "\n":
                        done[j] = True
                    else:
                        texts[j] += chars[k]
            if done.all():
                break
            tokens = np.zeros_like(tokens)
            tokens[np.arange(len(batch)), 0, best] = 1.0
        outputs.update(zip(batch, texts, strict=True))
    scores = score(test, [outputs[s] for s, _ in test])
    val_acc = history.history["val_accuracy"][-1]
    return {
        "train_seconds": round(train_seconds, 1),
        "epochs": limit_cb.epochs,
        "train_pairs": round(0.8 * len(pairs)),
        "val_accuracy_with_padding": val_acc,
        **scores,
    }


def score(test, hypotheses):
    references = [ref for _, ref in test]
    matches = [h == r for h, r in zip(hypotheses, references, strict=True)]
    return {
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "exact_match": float(np.mean(matches)),
    }


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", default=str(ROOT / "data" / "fra.txt"))
    parser.add_argument("--output-dir", default=str(ROOT / "output" / "bench"))
    parser.add_argument("--log-dir", default=str(ROOT / "logs" / "bench"))
    parser.add_argument(
        "--results", default=str(ROOT / "output" / "bench" / "keras_translation.jsonl")
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    results = Path(args.results)
    machine = f"{os.cpu_count()} cores, {platform.processor() or 'CPU'}, no GPU"
    if tf.config.list_physical_devices("GPU"):
        machine = f"{os.cpu_count()} cores, GPU"

    ours, metrics = run_ours(args)
    record(results, {"what": "ours (default run)", "machine": machine, **ours})

    # The same test pairs: the split depends only on the first lines and the seed.
    settings = metrics["settings"]
    pairs = kt.load_pairs(Path(args.data), settings["num_samples"])
    _, _, test = kt.split_pairs(
        pairs, settings["test_size"], settings["val_fraction"], settings["seed"]
    )
    classic = run_classic(args, test, budget=ours["wall_seconds"])
    record(results, {"what": "classic, same wall time", "machine": machine, **classic})

    ratio = ours["chrf"] / max(classic["chrf"], 1e-9)
    print(
        f"| ours chrF {ours['chrf']:.1f} BLEU {ours['bleu']:.1f} exact "
        f"{ours['exact_match']:.3f} | classic chrF {classic['chrf']:.1f} BLEU "
        f"{classic['bleu']:.1f} exact {classic['exact_match']:.3f} "
        f"({classic['epochs']} epochs) | chrF ratio {ratio:.2f} | "
        f"{ours['wall_seconds']:.0f} s each | {machine} | "
        f"python benchmarks/bench_keras_translation.py --data {args.data} |"
    )


if __name__ == "__main__":
    main()
