"""Translate English into French one character at a time with two LSTMs.

What it teaches: sequence-to-sequence learning. An encoder LSTM reads the
English sentence character by character; its final states start a decoder LSTM
that writes the French sentence character by character. Training uses teacher
forcing (the decoder reads the true previous character); inference feeds the
decoder its own previous output, one step at a time, greedily or with beam
search. Quality is measured on sentences the model never saw: chrF and BLEU
(sacrebleu) and the exact-match rate on 1,000 test pairs.

Run it:
    python keras_translation.py                   # the full lesson
    python keras_translation.py --quick           # the whole path in seconds
    python keras_translation.py --translate "I am hungry."
    python keras_translation.py --beam-width 4    # beam search on the test set

Data: Tatoeba English-French pairs from manythings.org, one pair a line,
English<TAB>French[<TAB>attribution]. Read from --data (the .txt or the zip),
else data/fra.txt, else downloaded from DATA_URL into data/fra-eng/ with
keras.utils.get_file (no checksum is published for it, so none is checked).
Lines without a tab or with an empty side are skipped and counted.

Writes output/keras_translation/<run>/: model.keras (best validation loss),
settings.json (vocabularies and settings), last.keras, state.json and
history.csv (for --resume), translations.tsv (every test pair: input,
reference, output), learning_curves.png, metrics.json; TensorBoard logs in
logs/keras_translation/<run>/ (curves, and sample translations as text).

What to expect: the default run (15 epochs on 20,000 pairs, LSTMs of 128
units) took 10.8 minutes on a 2-core CPU shared with other jobs (an epoch
26-50 s) and scored test chrF 23.7, BLEU 5.6, exact match 0.0, validation
character accuracy 0.68; beam width 4 gives chrF 24.2, BLEU 7.1. It has
learnt French-looking phrases more than meaning: "Get up." -> "Sors.",
"I am hungry." -> "Je suis prêt.", "You are stupid." -> "Tu es perdu."
Same seed, same data, same CPU: same figures; a GPU may differ.

Caveats: the test pairs come from the first 10,000 lines (short sentences),
so the figures say how well it translates short everyday phrases; long
sentences need far more training (see --num-samples, --epochs, --units).
Characters seen in no training pair are read as unknown. --resume restarts
the shuffling order. Data: Tatoeba, CC-BY 2.0, www.manythings.org/anki and
tatoeba.org.
"""

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import sys
import time
import warnings
import zipfile
from collections import Counter
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

ROOT = Path(__file__).resolve().parent
SCRIPT = "keras_translation"

DATA_URL = "http://storage.googleapis.com/download.tensorflow.org/data/fra-eng.zip"
TEST_POOL = 10_000  # test pairs are drawn from this many first pairs

# Reserved token ids. Source: 0 padding, 1 unknown character. Target: 0 padding,
# 1 start marker, 2 end marker. Characters follow in sorted order.
PAD, UNK = 0, 1
START, END = 1, 2
# Keras warns at the end of every first epoch of a dataset of unknown length.
warnings.filterwarnings("ignore", message="Your input ran out of data")
QUICK = {
    "num_samples": 2000,
    "test_size": 200,
    "epochs": 1,
    "units": 32,
    "embedding_dim": 16,
}


# Settings ---------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--data", help="the dataset to read (file or folder); default under data/"
    )
    parser.add_argument(
        "--epochs", type=int, default=15, help="training length in epochs"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="examples per batch")
    parser.add_argument(
        "--units", type=int, default=128, help="units per recurrent layer"
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
        "--num-samples",
        type=int,
        default=20_000,
        help="pairs to read, in file order (shortest first)",
    )
    own.add_argument(
        "--test-size", type=int, default=1000, help="test pairs (never trained on)"
    )
    own.add_argument(
        "--embedding-dim", type=int, default=32, help="size of a character vector"
    )
    own.add_argument(
        "--learning-rate", type=float, default=3e-3, help="Adam's step size"
    )
    own.add_argument(
        "--patience",
        type=int,
        default=3,
        help="epochs without improvement before early stopping",
    )
    own.add_argument("--beam-width", type=int, default=1, help="1 is greedy decoding")
    own.add_argument(
        "--translate",
        metavar="TEXT",
        help="translate TEXT with the saved run (see --model) and exit",
    )
    args = parser.parse_args(argv)
    if args.quick:  # tiny settings, unless given on the command line
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    return args


def check_args(args):
    """Refuse settings that cannot work, before anything is written."""
    for name in ["epochs", "batch_size", "units", "num_samples", "test_size"]:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    for name in ["embedding_dim", "beam_width"]:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.val_fraction < 1:
        raise UsageError("--val-fraction must be between 0 and 1")
    if not args.learning_rate > 0:
        raise UsageError("--learning-rate must be positive")


# 1. Data ----------------------------------------------------------------------


def parse_pairs(lines):
    """(English, French) pairs from tab-separated lines; extra columns ignored.

    Blank lines are passed over; a line without a tab or with an empty side is
    skipped and counted. Returns (pairs, skipped)."""
    pairs, skipped = [], 0
    for line in lines:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")[:2]
        if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
            skipped += 1
            continue
        pairs.append((fields[0].strip(), fields[1].strip()))
    return pairs, skipped


def resolve_data(args):
    """The pairs file: --data, else data/fra.txt (or the zip extracted under
    data/fra-eng/), else a download of the zip into data/fra-eng/."""
    if args.data:
        path = Path(args.data)
        if not path.exists():
            raise UsageError(f"--data {path}: no such file")
        return path
    data_dir = ROOT / "data"
    found = [data_dir / "fra.txt", *sorted(data_dir.glob("fra-eng*/**/fra.txt"))]
    for path in found:
        if path.is_file():
            return path
    try:
        # Note: no checksum is published for this zip, so none is checked.
        extracted = keras.utils.get_file(
            "fra-eng.zip",
            DATA_URL,
            extract=True,
            cache_dir=str(data_dir),
            cache_subdir="fra-eng",  # extracted to fra-eng/fra-eng_extracted/
        )
    except Exception as err:
        with contextlib.suppress(OSError):  # leave no empty folder behind
            (data_dir / "fra-eng").rmdir()
        raise UsageError(
            f"cannot download {DATA_URL} ({err}); put fra.txt at "
            f"{data_dir / 'fra.txt'} or pass --data PATH"
        ) from None
    for path in sorted(Path(extracted).glob("**/fra.txt")):
        if "__MACOSX" not in path.parts:
            return path
    raise UsageError(f"no fra.txt in {extracted}; pass --data PATH")


def read_lines(path):
    """The text lines of the .txt, or of the fra.txt inside a zip."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                names = [
                    n
                    for n in archive.namelist()
                    if n.endswith(".txt") and "__MACOSX" not in n
                ]
                name = next((n for n in names if n.endswith("fra.txt")), None)
                if name is None:
                    raise UsageError(f"{path}: the zip holds no fra.txt")
                return archive.read(name).decode("utf-8").splitlines()
        return path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, IsADirectoryError, zipfile.BadZipFile) as err:
        raise UsageError(f"{path}: not a UTF-8 text file or zip ({err})") from None


def load_pairs(path, num_samples):
    """The first `num_samples` pairs in file order (the file is sorted by
    length, so these are the shortest)."""
    pairs, skipped = parse_pairs(read_lines(path))
    if not pairs:
        raise UsageError(f"{path}: no English<TAB>French pairs in it")
    if skipped:
        print(f"skipped {skipped} malformed lines of {path}", file=sys.stderr)
    return pairs[:num_samples]


def split_by_english(pairs, size, rng):
    """Draw whole English-sentence groups until `size` pairs are taken.

    The file repeats an English sentence with several translations; drawing
    groups keeps every sentence on one side of the split. Returns the set of
    drawn English sentences."""
    counts = Counter(english for english, _ in pairs)
    groups = list(counts)  # first appearance order, so the draw is repeatable
    chosen, taken = set(), 0
    for i in rng.permutation(len(groups)):
        if taken >= size:
            break
        chosen.add(groups[i])
        taken += counts[groups[i]]
    return chosen


def split_pairs(pairs, test_size, val_fraction, seed):
    """Test pairs from the first TEST_POOL pairs, then validation from the
    rest, both grouped by English sentence: no sentence is in two splits."""
    rng = np.random.default_rng(seed)
    pool = pairs[:TEST_POOL]
    test_english = split_by_english(pool, test_size, rng)
    # Note: a drawn sentence's extra pairs beyond test_size are left out.
    test = [pair for pair in pool if pair[0] in test_english][:test_size]
    rest = [pair for pair in pairs if pair[0] not in test_english]
    val_english = split_by_english(rest, round(val_fraction * len(rest)), rng)
    val = [pair for pair in rest if pair[0] in val_english]
    train = [pair for pair in rest if pair[0] not in val_english]
    return train, val, test


def make_vocab(texts):
    """The sorted characters of the texts (ids follow the reserved ones)."""
    return sorted(set("".join(texts)))


def encode_source(texts, source_chars):
    """English texts -> lists of ids, read backwards; unseen characters
    become UNK.

    Reversed, the first English characters are the last the encoder reads, so
    they sit next to the decoder's first steps: a shorter path for the
    gradient (Sutskever et al., 2014). It measured a little better here."""
    index = {ch: i + 2 for i, ch in enumerate(source_chars)}
    return [[index.get(ch, UNK) for ch in reversed(text)] for text in texts]


def encode_target(texts, target_chars):
    """French texts -> START, ids..., END (the decoder's whole sequence)."""
    index = {ch: i + 3 for i, ch in enumerate(target_chars)}
    return [[START, *(index[ch] for ch in text), END] for text in texts]


def decode_target(ids, target_chars):
    """Ids -> French text, up to the end marker (markers and padding dropped)."""
    chars = []
    for i in ids:
        if i in (END, PAD):
            break
        if i >= 3:
            chars.append(target_chars[i - 3])
    return "".join(chars)


def pad(sequences, length=None):
    """Right-pad lists of ids with PAD: (n,) lists -> (n, length) int32."""
    length = length or max(len(s) for s in sequences)
    out = np.zeros((len(sequences), length), dtype="int32")
    for row, seq in zip(out, sequences, strict=False):
        row[: len(seq)] = seq[:length]
    return out


def make_dataset(source_ids, target_ids, batch_size, shuffle, seed):
    """Batches of ((source, decoder input), decoder target) for fit().

    Teacher forcing: the decoder reads the target shifted right by one step
    and learns to predict the next character:

        decoder input   <s> V  a     !
        decoder target  V   a  " "   !  </s>

    Pairs of similar French length share a batch (bucketing), so little time
    is spent on padding; padding is masked out of the loss and the accuracy."""
    lengths = [len(t) for t in target_ids]
    source = tf.ragged.constant(source_ids, dtype="int32")
    target = tf.ragged.constant(target_ids, dtype="int32")
    ds = tf.data.Dataset.from_tensor_slices((source, target))
    if shuffle:
        ds = ds.shuffle(len(target_ids), seed=seed, reshuffle_each_iteration=True)
    # (source_len,), (target_len,) -> ((source_len,), (target_len-1,)), (target_len-1,)
    ds = ds.map(lambda s, t: ((s, t[:-1]), t[1:]))
    bounds = sorted({b for b in range(8, max(lengths) + 8, 8)})
    ds = ds.bucket_by_sequence_length(
        lambda x, y: tf.shape(y)[0],
        bucket_boundaries=bounds,
        bucket_batch_sizes=[batch_size] * (len(bounds) + 1),
    )
    return ds.prefetch(tf.data.AUTOTUNE)


# 2. Model ---------------------------------------------------------------------


def build_model(source_vocab_size, target_vocab_size, embedding_dim, units, lr):
    """Encoder LSTM -> its final (h, c) -> initial state of the decoder LSTM."""
    source = keras.Input(shape=(None,), dtype="int32", name="source")
    target_in = keras.Input(shape=(None,), dtype="int32", name="decoder_input")
    # mask_zero: padding steps are skipped by the LSTMs and left out of the
    # loss and the accuracy (the mask travels with the tensors).
    x = layers.Embedding(
        source_vocab_size, embedding_dim, mask_zero=True, name="encoder_embedding"
    )(source)  # (batch, source_len) -> (batch, source_len, embedding_dim)
    # Only the encoder's final states are kept: they summarise the sentence.
    _, h, c = layers.LSTM(units, return_state=True, name="encoder_lstm")(
        x
    )  # (batch, source_len, embedding_dim) -> 2 x (batch, units)
    y = layers.Embedding(
        target_vocab_size, embedding_dim, mask_zero=True, name="decoder_embedding"
    )(target_in)  # (batch, target_len) -> (batch, target_len, embedding_dim)
    y, _, _ = layers.LSTM(
        units, return_sequences=True, return_state=True, name="decoder_lstm"
    )(y, initial_state=[h, c])  # -> (batch, target_len, units)
    logits = layers.Dense(target_vocab_size, name="decoder_output")(
        y
    )  # (batch, target_len, units) -> (batch, target_len, target_vocab_size)
    model = keras.Model([source, target_in], logits, name="seq2seq")
    model.compile(
        # Clipping keeps one long sentence's exploding gradient from wrecking
        # the weights, a known hazard of backpropagation through time.
        optimizer=keras.optimizers.Adam(learning_rate=lr, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="char_accuracy")],
    )
    return model


# 3. Training ------------------------------------------------------------------


def train(model, train_ds, val_ds, args, run_dir, log_dir, initial_epoch, best):
    """Fit with early stopping; keep the best model and a resumable last one."""
    checkpoint_cb = RunCheckpoint(run_dir, "val_loss", "min", best)
    stop_cb = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=args.patience, restore_best_weights=True
    )
    tensorboard_cb = keras.callbacks.TensorBoard(str(log_dir))
    # history.csv grows across --resume, so the curves show the whole run.
    history_cb = keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True)
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=args.epochs,
        initial_epoch=initial_epoch,
        callbacks=[checkpoint_cb, stop_cb, tensorboard_cb, history_cb],
        shuffle=False,  # the dataset shuffles itself, with the seed
        verbose=2 if args.quick else 1,
    )
    if checkpoint_cb.nan_batch is not None:
        raise UsageError(
            f"the loss became NaN at batch {checkpoint_cb.nan_batch}; "
            "lower --learning-rate and train again"
        )
    return len(history.history.get("loss", []))


# 4. Decoding ------------------------------------------------------------------


def make_translator(model):
    """Inference encoder and one-step decoder, built from the trained layers.

    The encoder returns the states (h, c); the decoder takes one character and
    the states, and returns log-probabilities of the next one and new states.
    Both are compiled tf.functions, called directly (predict() costs tens of
    milliseconds a call, too slow inside a loop)."""
    units = model.get_layer("encoder_lstm").units
    source = keras.Input(shape=(None,), dtype="int32")
    x = model.get_layer("encoder_embedding")(source)
    _, h, c = model.get_layer("encoder_lstm")(x)  # -> 2 x (batch, units)
    encoder = keras.Model(source, [h, c], name="inference_encoder")

    token = keras.Input(shape=(1,), dtype="int32")
    h_in, c_in = keras.Input(shape=(units,)), keras.Input(shape=(units,))
    y = model.get_layer("decoder_embedding")(token)  # -> (batch, 1, embedding_dim)
    y, h, c = model.get_layer("decoder_lstm")(y, initial_state=[h_in, c_in])
    logits = model.get_layer("decoder_output")(y)  # -> (batch, 1, vocab_size)
    decoder = keras.Model([token, h_in, c_in], [logits, h, c], name="decoder_step")

    @tf.function(reduce_retracing=True)
    def encode(source_ids):
        return encoder(source_ids, training=False)

    @tf.function(reduce_retracing=True)
    def step(tokens, h, c):
        logits, h, c = decoder([tokens, h, c], training=False)
        log_probs = tf.nn.log_softmax(logits[:, 0, :])  # -> (batch, vocab_size)
        # Padding and the start marker are never a next character.
        banned = tf.one_hot([PAD, START], tf.shape(log_probs)[1], on_value=-1e9)
        return log_probs + tf.reduce_sum(banned, axis=0), h, c

    return encode, step


def greedy_decode(encode, step, source, max_length):
    """Pick the most likely next character at every step, for a whole batch.

    source: (batch, source_len) ids -> (batch, <= max_length) ids."""
    h, c = encode(source)
    n = len(source)
    tokens = np.full((n, 1), START, dtype="int32")
    done = np.zeros(n, dtype=bool)
    out = []
    for _ in range(max_length):
        log_probs, h, c = step(tokens, h, c)
        best = np.argmax(log_probs.numpy(), axis=-1)
        best[done] = PAD  # finished rows emit padding (a masked, no-op step)
        out.append(best)
        done |= best == END
        if done.all():
            break
        tokens = best[:, None].astype("int32")
    return np.stack(out, axis=1)


def beam_decode(encode, step, source, max_length, beam_width):
    """Keep the `beam_width` most likely partial translations of each sentence.

    A finished beam keeps its slot and its score (it can only emit padding);
    the best beam is picked by log-probability per character. Width 1 is
    greedy decoding. source: (batch, source_len) -> (batch, <= max_length)."""
    n, k = len(source), beam_width
    h, c = encode(source)
    h, c = tf.repeat(h, k, axis=0), tf.repeat(c, k, axis=0)  # -> (batch*k, units)
    scores = np.full((n, k), -np.inf)
    scores[:, 0] = 0.0  # at first all beams are the same: keep one
    seqs = np.zeros((n, k, 0), dtype="int64")
    done = np.zeros((n, k), dtype=bool)
    tokens = np.full((n * k, 1), START, dtype="int32")
    for _ in range(max_length):
        log_probs, h, c = step(tokens, h, c)
        log_probs = log_probs.numpy().reshape(n, k, -1)  # (batch, k, vocab_size)
        vocab_size = log_probs.shape[-1]
        log_probs[done] = -np.inf
        log_probs[done, PAD] = 0.0
        total = (scores[:, :, None] + log_probs).reshape(n, k * vocab_size)
        top = np.argsort(-total, axis=1, kind="stable")[:, :k]  # (batch, k)
        beam, token = top // vocab_size, top % vocab_size
        scores = np.take_along_axis(total, top, axis=1)
        seqs = np.concatenate(
            [np.take_along_axis(seqs, beam[:, :, None], axis=1), token[:, :, None]],
            axis=2,
        )
        done = np.take_along_axis(done, beam, axis=1) | (token == END)
        rows = (np.arange(n)[:, None] * k + beam).reshape(-1)
        h, c = tf.gather(h, rows), tf.gather(c, rows)
        tokens = token.reshape(-1, 1).astype("int32")
        if done.all():
            break
    lengths = np.maximum((seqs != PAD).sum(axis=2), 1)
    best = np.argmax(scores / lengths, axis=1)
    return seqs[np.arange(n), best]


def translate(model, texts, settings, beam_width=1, batch_size=256):
    """Translate English texts, a batch at a time; returns French texts."""
    encode, step = make_translator(model)
    ids = encode_source(texts, settings["source_chars"])
    outputs = []
    for i in range(0, len(ids), batch_size):
        source = pad(ids[i : i + batch_size])
        if beam_width > 1:
            out = beam_decode(
                encode, step, source, settings["max_target_length"], beam_width
            )
        else:
            out = greedy_decode(encode, step, source, settings["max_target_length"])
        outputs += [decode_target(row, settings["target_chars"]) for row in out]
    return outputs


# 5. Evaluation ----------------------------------------------------------------


def evaluate(model, test, settings, beam_width):
    """chrF, BLEU and exact match of the test translations (sacrebleu)."""
    import sacrebleu

    english = sorted({src for src, _ in test})  # decode each sentence once
    outputs = dict(
        zip(english, translate(model, english, settings, beam_width), strict=True)
    )
    hypotheses = [outputs[src] for src, _ in test]
    references = [ref for _, ref in test]
    results = {
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "exact_match": float(
            np.mean([h == r for h, r in zip(hypotheses, references, strict=True)])
        ),
    }
    return results, hypotheses


# 6. Pictures ------------------------------------------------------------------


def plot_history(csv_path, path, args):
    """Learning curves: loss and per-character accuracy, train and validation."""
    history = pd.read_csv(csv_path)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = history["epoch"] + 1
    for ax, name in zip(axes, ["loss", "char_accuracy"], strict=True):
        ax.plot(epochs, history[name], "o-", label="training")
        ax.plot(epochs, history["val_" + name], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(name.replace("_", " ") + " (padding excluded)")
        ax.legend()
    save_figure(fig, path, args)


# The lesson, in order ---------------------------------------------------------


def load_run(run_dir):
    """A saved run's best model and its settings.json."""
    settings = json.loads((run_dir / "settings.json").read_text(encoding="utf-8"))
    return load_run_model(run_dir / "model.keras"), settings


def run_translate(args):
    """--translate: print the translation of new text on stdout."""
    text = args.translate.strip()
    if not text:
        raise UsageError("--translate needs some text")
    run_dir = model_run_dir(args)
    model, settings = load_run(run_dir)
    print(f"translating with {run_dir}", file=sys.stderr)
    print(translate(model, [text], settings, args.beam_width)[0])
    return 0


def prepare(args):
    """Read, split and encode the data; settings.json content for the run."""
    path = resolve_data(args)
    pairs = load_pairs(path, args.num_samples)
    pool_size = len(pairs[:TEST_POOL])
    if args.test_size > pool_size // 2:
        raise UsageError(
            f"{path}: {len(pairs)} pairs are too few for {args.test_size} test "
            f"pairs; lower --test-size (at most {pool_size // 2})"
        )
    train_pairs, val_pairs, test = split_pairs(
        pairs, args.test_size, args.val_fraction, args.seed
    )
    if len(train_pairs) < args.batch_size or not val_pairs:
        raise UsageError(
            f"{path}: {len(train_pairs)} training pairs after the test and "
            "validation splits; lower --batch-size, --test-size or --val-fraction"
        )
    print(
        f"{path}: {len(pairs)} pairs -> train {len(train_pairs)}, "
        f"validation {len(val_pairs)}, test {len(test)}",
        file=sys.stderr,
    )
    src_texts = [src for src, _ in train_pairs]
    tgt_texts = [tgt for _, tgt in train_pairs]
    settings = {
        "source_chars": make_vocab(src_texts),
        "target_chars": make_vocab(tgt_texts),
        "max_target_length": max(len(t) for t in tgt_texts) + 1,  # + end marker
        "data": str(path),
    }
    return train_pairs, val_pairs, test, settings


def datasets(pairs_by_split, settings, args):
    """tf.data pipelines for training and validation. A validation pair whose
    French has a character unseen in training is left out (no id for it)."""
    out = []
    for pairs, shuffle in pairs_by_split:
        tgt_chars = set(settings["target_chars"])
        pairs = [p for p in pairs if set(p[1]) <= tgt_chars]
        source = encode_source([s for s, _ in pairs], settings["source_chars"])
        target = encode_target([t for _, t in pairs], settings["target_chars"])
        out.append(make_dataset(source, target, args.batch_size, shuffle, args.seed))
    return out


def write_translations(run_dir, log_dir, test, hypotheses):
    """translations.tsv in the run folder; a sample table to TensorBoard."""
    lines = ["input\treference\toutput"]
    lines += [f"{s}\t{r}\t{h}" for (s, r), h in zip(test, hypotheses, strict=True)]
    (run_dir / "translations.tsv").write_text("\n".join(lines) + "\n", "utf-8")
    rows = ["| input | reference | output |", "| --- | --- | --- |"]
    rows += [
        f"| {s} | {r} | {h} |"
        for (s, r), h in list(zip(test, hypotheses, strict=True))[:30]
    ]
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        tf.summary.text("test_translations", "\n".join(rows), step=0)


def run(args):
    if args.translate is not None:
        return run_translate(args)
    check_args(args)
    if args.resume:
        run_dir, log_dir = find_run(args, completed=False)
        saved = json.loads((run_dir / "settings.json").read_text(encoding="utf-8"))
        for name, value in saved["args"].items():
            if name not in ("resume", "show"):
                setattr(args, name, value)  # the run keeps its own settings
    start(args)
    started = time.time()
    train_pairs, val_pairs, test, settings = prepare(args)
    if args.resume:
        model, state = resume_checkpoint(run_dir)
        initial_epoch, best = state["epoch"], state["best"]
        settings = saved
    else:
        run_dir, log_dir = make_run_dirs(args)
        model = build_model(
            len(settings["source_chars"]) + 2,
            len(settings["target_chars"]) + 3,
            args.embedding_dim,
            args.units,
            args.learning_rate,
        )
        initial_epoch, best = 0, None
        settings["args"] = vars(args)
        write_json(run_dir / "settings.json", settings)
    model.summary(print_fn=lambda line, *a, **k: print(line, file=sys.stderr))
    train_ds, val_ds = datasets(
        [(train_pairs, True), (val_pairs, False)], settings, args
    )

    train_started = time.time()
    with discard_unsaved_run(run_dir, log_dir):
        epochs_run = train(
            model, train_ds, val_ds, args, run_dir, log_dir, initial_epoch, best
        )
    train_seconds = time.time() - train_started
    model = load_run_model(run_dir / "model.keras")  # the best weights

    results, hypotheses = evaluate(model, test, settings, args.beam_width)
    val = model.evaluate(val_ds, verbose=0, return_dict=True)
    results["val_char_accuracy"] = val["char_accuracy"]  # of the best model
    write_translations(run_dir, log_dir, test, hypotheses)
    plot_history(run_dir / "history.csv", run_dir / "learning_curves.png", args)
    chars = sum(len(t) + 1 for _, t in train_pairs) * epochs_run
    throughput = {"value": round(chars / train_seconds, 1), "unit": "target chars/s"}
    write_metrics(run_dir, args, started, throughput, results)
    for (src, ref), hyp in list(zip(test, hypotheses, strict=True))[:5]:
        print(f"{src}  ->  {hyp}   (reference: {ref})")
    print_summary(
        f"test chrF {results['chrf']:.1f}, BLEU {results['bleu']:.1f}, exact match "
        f"{results['exact_match']:.3f} on {len(test)} pairs",
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
