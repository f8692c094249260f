"""Benchmark fake_donald_trump.py against the classic configuration.

1. Ours: the lesson's default run on the real data (a subprocess, exactly as a
   user runs it); its held-out bits per character and its training time.
2. The classic configuration (three GRU layers of 512 on one-hot characters,
   windows of 30, batch 200, dropout 0.2, Adam 1e-3 without clipping) trained
   for the same wall time on the same split, and scored over the same held-out
   characters in the same windows as ours.
3. Generation speed: 20 tweets in one batch against 20 tweets one at a time,
   with our saved model, in characters per second; --rounds rounds, each a
   batch and then its count of single tweets, so load changes hit both.

Each finished measurement is appended to --results as one JSON line, so an
interrupted benchmark keeps what it measured. The last line printed is a
markdown results row.

    python benchmarks/bench_fake_donald_trump.py --data ../shared/data/trump/trump.txt
"""

import argparse
import json
import os
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
from keras import layers  # noqa: E402

import fake_donald_trump as lesson  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data", default=str(ROOT / "data" / "trump.txt"), help="the tweets CSV"
    )
    parser.add_argument(
        "--output-dir",
        default=str(ROOT / "output" / "bench"),
        help="where our run's output and logs go",
    )
    parser.add_argument(
        "--results",
        default=str(ROOT / "output" / "bench" / "fake_donald_trump.jsonl"),
        help="one JSON line per finished measurement",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help="training time for the classic model (default: what ours took)",
    )
    parser.add_argument(
        "--ours-run", help="reuse a finished run folder of ours instead of training"
    )
    parser.add_argument(
        "--generation-tweets", type=int, default=20, help="tweets in one batch"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=10,
        help="batches timed (and as many tweets alone)",
    )
    parser.add_argument(
        "--skip-classic", action="store_true", help="measure ours and generation only"
    )
    parser.add_argument(
        "lesson_flags", nargs="*", help="extra flags for our run (after --)"
    )
    return parser.parse_args(argv)


def record(path, row):
    """Append one finished measurement, and echo it."""
    row = {"time": time.strftime("%Y-%m-%d %H:%M:%S"), **row}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def run_ours(args):
    """The lesson's default run, as a user runs it."""
    if args.ours_run:
        return Path(args.ours_run)
    out = Path(args.output_dir)
    cmd = [sys.executable, str(ROOT / "fake_donald_trump.py"), "--data", args.data]
    cmd += ["--output-dir", str(out / "output"), "--log-dir", str(out / "logs")]
    cmd += args.lesson_flags
    subprocess.run(cmd, check=True)
    runs = sorted((out / "output" / "fake_donald_trump").glob("*_*"))
    return runs[-1]


class TimeLimit(keras.callbacks.Callback):
    """Stop training once the wall-time budget is spent."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.batches = seconds, 0

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if time.time() - self.started > self.seconds:
            self.model.stop_training = True


def build_classic(vocab_size):
    """Three GRU layers of 512 on one-hot characters, dropout 0.2, Adam 1e-3.

    An Embedding frozen at the identity matrix is exactly a one-hot encoding."""
    char_ids = keras.Input(shape=(None,), dtype="int32")
    x = layers.Embedding(
        vocab_size, vocab_size, embeddings_initializer="identity", trainable=False
    )(char_ids)  # (batch, time) -> (batch, time, vocab_size), one-hot
    for _ in range(3):
        x = layers.Dropout(0.2)(x)  # the classic drops each cell's input
        x = layers.GRU(512, return_sequences=True)(x)
    x = layers.Dropout(0.2)(x)
    logits = layers.Dense(vocab_size)(x)
    model = keras.Model(char_ids, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[lesson.bits_per_char],
    )
    return model


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    machine = f"{os.cpu_count()} CPU cores, no GPU, shared with other jobs"

    run_dir = run_ours(args)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    settings = Namespace(**metrics["settings"])
    ours_bits = metrics["results"]["val_bits_per_char"]
    train_seconds = metrics["results"]["train_seconds"]
    record(
        args.results,
        {
            "what": "ours",
            "run": str(run_dir),
            "val_bits_per_char": ours_bits,
            "val_characters": metrics["results"]["val_characters"],
            "train_seconds": train_seconds,
            "epochs_run": metrics["results"]["epochs_run"],
            "settings": metrics["settings"],
        },
    )

    # The same tweets, split, vocabulary and held-out windows as our run.
    tweets, _ = lesson.read_tweets(Path(args.data), settings.column)
    train_tweets, val_tweets = lesson.split_tweets(
        tweets, settings.val_fraction, settings.seed
    )
    vocab = lesson.load_vocab(run_dir)["vocab"]
    train_ids = lesson.encode(lesson.join_tweets(train_tweets), vocab)
    val_ids = lesson.encode(lesson.join_tweets(val_tweets), vocab)
    val_ds = lesson.make_eval_ds(val_ids, settings.seq_length, 128)

    classic_bits = float("nan")
    if not args.skip_classic:
        keras.utils.set_random_seed(settings.seed)
        seconds = args.seconds or train_seconds
        classic = build_classic(len(vocab))
        train_ds = lesson.make_train_ds(train_ids, 30, 200, settings.seed).repeat()
        limit = TimeLimit(seconds)
        # "Epochs" of 20 batches only pace the progress lines; TimeLimit ends it.
        classic.fit(
            train_ds, epochs=10**4, steps_per_epoch=20, callbacks=[limit], verbose=2
        )
        classic_bits = classic.evaluate(val_ds, verbose=0, return_dict=True)[
            "bits_per_char"
        ]
        record(
            args.results,
            {
                "what": "classic",
                "val_bits_per_char": classic_bits,
                "train_seconds": round(seconds, 1),
                "batches": limit.batches,
            },
        )

    # Generation: the same model and settings, 20 tweets together or alone.
    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    step_model = lesson.make_step_model(model)
    count, rounds = args.generation_tweets, args.rounds

    # Rounds alternate between one batch of `count` tweets and `count` tweets
    # one at a time, so a change in the machine's load falls on both alike.
    for batch in (count, 1):  # trace the step for both shapes first
        lesson.generate(step_model, vocab, [""] * batch, 0.8, 0, 280, seed=0)
    seconds, chars, batches = {count: 0.0, 1: 0.0}, {count: 0, 1: 0}, []
    for i in range(rounds):
        for batch in (count, 1):
            begun = time.perf_counter()
            tweets = [
                tweet
                for j in range(count // batch)
                for tweet in lesson.generate(
                    step_model, vocab, [""] * batch, 0.8, 0, 280, 1 + i * count + j
                )
            ]
            seconds[batch] += time.perf_counter() - begun
            chars[batch] += sum(len(t) + 1 for t in tweets)
            if batch == count:
                batches.append(tweets)
    batched, alone = (chars[b] / seconds[b] for b in (count, 1))
    # A batch runs until its longest tweet ends: even if a step cost the same
    # at any batch size, the speedup could not pass this.
    steps = [[min(len(t) + 1, 280) for t in row] for row in batches]
    ceiling = sum(sum(row) for row in steps) / sum(max(row) for row in steps)
    record(
        args.results,
        {
            "what": "generation",
            "batched_chars_per_second": round(batched, 1),
            "one_at_a_time_chars_per_second": round(alone, 1),
            "speedup": round(batched / alone, 2),
            "longest_tweet_ceiling": round(ceiling, 2),
            "tweets": count * rounds,
            "batch": count,
            "samples": batches[0][:5],
        },
    )

    wall = time.time() - started
    command = "python benchmarks/bench_fake_donald_trump.py --data " + args.data
    print(
        "| held-out bits/char: ours | classic (same wall time) | ratio "
        "| generation chars/s: 20 batched | one at a time | speedup "
        "| wall | machine | command |"
    )
    print(
        f"| {ours_bits:.3f} | {classic_bits:.3f} | {classic_bits / ours_bits:.2f}x "
        f"| {batched:.0f} | {alone:.0f} | {batched / alone:.1f}x "
        f"| {wall / 60:.1f} min | {machine} | `{command}` |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
