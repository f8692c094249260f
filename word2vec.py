"""Word vectors from raw text: a skip-gram model with a sampled loss, measured.

A word is known by the company it keeps. Skip-gram learns one vector per word
by asking, for each word in the text, which words stand near it. Scoring every
word of the vocabulary at every step would be far too slow, so a sampled loss
compares the true neighbour with a few noise words instead. This lesson builds
the vocabulary, subsamples frequent words, makes the (word, neighbour) pairs
with NumPy and tf.data, trains with negative sampling (word2vec's loss) or
noise-contrastive estimation (the classic TensorFlow example's), and then asks
whether the vectors are any good: analogies (king - man + woman = queen) and
WordSim-353 (do the cosines agree with human similarity scores).

Run it:
    python word2vec.py --data ../shared/data/word2vec/brown_text8.zip
    python word2vec.py --quick          # a tiny run of the whole path
    python word2vec.py --nearest king   # nearest words in the newest run

Data: text8 (Wikipedia, 17M words) from mattmahoney.net, downloaded once
into data/word2vec/; or any plain-text file, or a zip holding one, via --data.
The analogy questions (questions-words.txt) and WordSim-353 are fetched into
data/word2vec/ too (or see --analogies and --wordsim); when one cannot be
found, training still runs and the summary says which check was skipped.

Writes output/word2vec/<run>/: model.keras (the two embedding tables),
vectors.tsv and metadata.tsv (for projector.tensorflow.org), tsne.png,
settings.json and metrics.json; logs/word2vec/<run>/: the loss, the nearest
words of a few probe words as text, and the embeddings for TensorBoard's
Projector tab:  tensorboard --logdir logs

What to expect: the Brown corpus (1M words) trains in about a minute on a
2-core CPU (85,000 to 200,000 words a second): 5 epochs give a WordSim-353
Spearman of 0.28 to 0.31 and an analogy accuracy of 2.3% to 2.6% on the 51%
of questions in its vocabulary, by seed (1M words is little text; gensim, on
the same words and candidates, gets about 0.25 and 2.2%). text8 (17M words)
should take about 12 minutes for 5 epochs and 4 GB of memory. Nearest words
of "three" are soon "four, two, five, six".

Caveats: the vectors depend on the seed; figures repeat on the same CPU and
may differ on a GPU. Throughput is a third to two fifths of gensim's (C, two
threads). Analogies search the whole vocabulary (gensim searches its first
300,000 words), so figures are comparable within this script only.
"""

import argparse
import collections
import concurrent.futures
import contextlib
import io
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
import zipfile
import zlib
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
SCRIPT = "word2vec"

# Where the data come from. Note: no checksum is published for text8.zip or
# for TensorFlow's copy of questions-words.txt; WordSim-353 is the file that
# gensim ships in its tests, whose SHA-256 is known.
TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
ANALOGIES_URL = "http://download.tensorflow.org/data/questions-words.txt"
WORDSIM_URL = (
    "https://raw.githubusercontent.com/piskvorky/gensim/develop/"
    "gensim/test/test_data/wordsim353.tsv"
)
WORDSIM_SHA256 = "f92a022fc2537793a15bc3a8c162ebcd74990e033a228bb6388cb71e4c0b1e1d"
UNK = "UNK"  # upper case: the corpus is lower-cased, so no word can clash
# Words whose neighbours are printed during training (missing ones skipped).
PROBE_WORDS = [
    "king",
    "woman",
    "paris",
    "city",
    "war",
    "money",
    "water",
    "three",
    "good",
    "american",
    "house",
    "music",
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
        "--epochs", type=int, default=5, help="training length in epochs"
    )
    parser.add_argument(
        "--batch-size", type=int, default=512, help="examples per batch"
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
        "--vocab-size",
        type=int,
        default=30000,
        help="the most frequent words kept; the rest become one unknown token",
    )
    own.add_argument(
        "--embedding-dim", type=int, default=100, help="numbers per word vector"
    )
    own.add_argument(
        "--window", type=int, default=5, help="largest distance of a neighbour"
    )
    own.add_argument(
        "--loss",
        choices=["neg", "nce"],
        default="neg",
        help="negative sampling (word2vec) or noise-contrastive estimation",
    )
    own.add_argument("--negatives", type=int, default=5, help="noise words per pair")
    own.add_argument(
        "--steps-per-execution",
        type=int,
        default=8,
        help="batches trained in one call of the compiled step (as in Keras)",
    )
    own.add_argument(
        "--sample",
        type=float,
        default=1e-3,
        help="subsampling threshold for frequent words; 0 keeps every word",
    )
    own.add_argument(
        "--learning-rate",
        type=float,
        default=0.04,
        help="SGD's starting rate per pair; it falls linearly towards zero",
    )
    own.add_argument(
        "--analogies",
        help="questions-words.txt; default data/word2vec/ or a download",
    )
    own.add_argument(
        "--wordsim",
        help="WordSim-353 (tab-separated); default data/word2vec/ or a download",
    )
    own.add_argument(
        "--tsne-words", type=int, default=400, help="most frequent words drawn"
    )
    own.add_argument(
        "--nearest",
        metavar="WORD",
        help="print a saved run's nearest words to WORD (see --model); no training",
    )
    own.add_argument(
        "--num-nearest", type=int, default=8, help="neighbours printed per word"
    )
    return parser.parse_args(argv)


def check_settings(args):
    """Reject impossible settings with one line, before anything is written;
    then --quick shrinks the run (after the checks, so that `--quick --epochs
    0` is still an error)."""
    at_least_one = ("epochs", "batch_size", "vocab_size", "window", "negatives")
    for name in at_least_one + ("num_nearest", "steps_per_execution"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be at least 1, got {getattr(args, name)}")
    # The t-SNE picture is 2-D: it needs two numbers per word and two words.
    for name in ("embedding_dim", "tsne_words"):
        if getattr(args, name) < 2:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} must be at least 2, got {getattr(args, name)}")
    if not (args.sample >= 0 and math.isfinite(args.sample)):  # also catches nan
        raise UsageError(f"--sample must be a number 0 or more, got {args.sample}")
    if not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        raise UsageError(
            f"--learning-rate must be a positive number, got {args.learning_rate}"
        )
    if args.quick:  # one epoch, small vectors
        args.epochs = 1
        args.vocab_size = min(args.vocab_size, 2000)
        args.embedding_dim = min(args.embedding_dim, 32)
        args.batch_size = min(args.batch_size, 512)
        args.tsne_words = min(args.tsne_words, 100)


def plural(count, noun):
    """`1 word`, `2 words`: a count for a message."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def reason(err):
    """An exception as a short reason on one line: its type and message."""
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


# 1. Data ---------------------------------------------------------------------


def given_file(given, flag, fix):
    """The file a flag names: it must be a regular file (a missing one is an
    error, never a download). fix: what to pass instead."""
    path = Path(given)
    if not path.is_file():
        if path.is_dir():
            what = "a folder, not a file"
        elif path.exists():
            what = "not a regular file (a device, a pipe or a socket)"
        else:
            what = "no such file"
        raise UsageError(f"{flag} {path}: {what}; {fix}")
    return path


def find_corpus(args):
    """The corpus file: --data, else data/word2vec/text8.zip, else a download
    there (a missing --data path is an error, never a download)."""
    if args.data is not None:
        return given_file(args.data, "--data", "pass a text file or a zip holding one")
    path = ROOT / "data" / "word2vec" / "text8.zip"
    if path.exists():
        return path
    try:
        found = keras.utils.get_file(
            "text8.zip",
            origin=TEXT8_URL,
            cache_dir=str(ROOT / "data"),
            cache_subdir="word2vec",
        )
    except Exception as err:  # offline, refused, or cut short
        with contextlib.suppress(OSError):  # leave no empty folder behind
            path.parent.rmdir()
        raise UsageError(
            f"cannot download {TEXT8_URL} ({reason(err)}); place "
            f"text8.zip at {path}, or pass --data FILE"
        ) from err
    return Path(found)


def read_bytes(path):
    """A file's bytes, with a file that cannot be read as one line."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise UsageError(f"{path}: cannot read it ({err.strerror or err})") from err


def decode_text(raw, where, fix):
    """Bytes as UTF-8 text; a bad byte is one line saying where it is."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise UsageError(
            f"{where}: not UTF-8 text (a bad byte at {err.start}, on line {line}); "
            + fix
        ) from err


def zip_text(path, raw):
    """The one file in a zip, as bytes: text8.zip holds just `text8`. Folders,
    __MACOSX/ and hidden files (.DS_Store) do not count; any other number of
    files is an error, never a guess."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            members = [
                m
                for m in archive.infolist()
                if not m.is_dir()
                and not any(
                    part.startswith(".") or part == "__MACOSX"
                    for part in m.filename.split("/")
                )
            ]
            if len(members) != 1:
                names = ", ".join(m.filename for m in members[:3])
                names += ", ..." if len(members) > 3 else ""
                holds = f"{len(members)} files ({names})" if members else "no file"
                raise UsageError(
                    f"{path}: the zip holds {holds}; pass one text file, or a zip "
                    "holding one"
                )
            return archive.read(members[0]), members[0].filename
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise UsageError(
            f"{path}: a damaged zip ({reason(err)}); download it again, or pass "
            "another file"
        ) from err
    except (RuntimeError, NotImplementedError) as err:  # encrypted, or unknown
        raise UsageError(
            f"{path}: cannot read the zip ({reason(err)}); pass the text unzipped"
        ) from err


def read_words(path):
    """The corpus as a list of lower-cased words: runs of letters and digits,
    with inner apostrophes kept (text8 is already a-z and spaces only).

    A zip must hold one file, as text8.zip does; it is the text."""
    raw, where = read_bytes(path), str(path)
    # A zip starts with PK\3\4 (so a damaged one is still known as a zip).
    if raw[:4] == b"PK\x03\x04" or zipfile.is_zipfile(io.BytesIO(raw)):
        raw, member = zip_text(path, raw)
        where = f"{path}: {member}"
    text = decode_text(raw, where, "give a plain-text corpus or a zip holding one")
    words = re.findall(r"[^\W_]+(?:'[^\W_]+)*", text.lower())
    if not words:
        raise UsageError(f"{path}: no words in it; give a plain-text corpus")
    return words


def build_vocab(words, vocab_size):
    """Keep the vocab_size most frequent words; every other word becomes UNK.

    Returns the vocabulary (UNK first, then by falling frequency, ties in order
    of first appearance), the count of each entry (UNK's count is the number of
    tokens it replaced) and the corpus as word ids."""
    counts = collections.Counter(words).most_common(vocab_size)
    vocab = [UNK] + [word for word, _ in counts]
    index = {word: i for i, word in enumerate(vocab)}
    ids = np.array([index.get(word, 0) for word in words], dtype=np.int32)
    known = sum(count for _, count in counts)
    counts = np.array([len(words) - known] + [c for _, c in counts], dtype=np.int64)
    return vocab, counts, ids


def keep_probabilities(counts, sample):
    """The chance that each occurrence of a word is kept (word2vec's formula).

    With f a word's share of the known tokens and t = sample, the chance is
    (sqrt(f / t) + 1) * t / f, at most 1: "the" (f ~ 0.06) keeps about one
    occurrence in five, rare words are always kept. UNK is never kept: its
    tokens are dropped before training, as word2vec drops unknown words."""
    counts = np.asarray(counts, dtype=np.float64)
    share = counts / counts[1:].sum()
    if sample == 0:
        keep = np.ones_like(share)
    else:
        with np.errstate(divide="ignore"):
            keep = (np.sqrt(share / sample) + 1) * sample / share
    keep = np.minimum(keep, 1.0)
    keep[0] = 0.0
    return keep


def noise_table(counts, size=1_000_000):
    """word2vec's table of noise words: each word fills a share of `size`
    slots in proportion to its count to the power 0.75, so one random slot is
    one draw. The power lifts rare words a little above their plain frequency
    (Mikolov et al. 2013). UNK fills no slot: it is never drawn."""
    weights = np.asarray(counts, dtype=np.float64) ** 0.75
    weights[0] = 0.0
    slots = np.round(weights / weights.sum() * size).astype(np.int64)
    return np.repeat(np.arange(len(weights), dtype=np.int32), slots)


def skipgram_pairs(ids, spans):
    """All (center, context) pairs: each word with every word within its span.

    word2vec draws a span (1 to --window) for each center word, so near
    neighbours count more than far ones. For spans [1, 2, 1, 1]:

        position   0     1     2     3
        word       the   cat   sat   down
        span       1     2     1     1
        cat's pairs: (cat, the) (cat, sat) (cat, down)

    Vectorised: for each distance d, every position whose span reaches d pairs
    with the word d to its right, and every position d to the right whose span
    reaches d pairs with the word on the left. ids (n,), spans (n,) ->
    centers (pairs,), contexts (pairs,), grouped by distance."""
    ids, spans = np.asarray(ids), np.asarray(spans)
    n = len(ids)
    centers, contexts = [], []
    for d in range(1, int(spans.max(initial=0)) + 1):
        if d >= n:
            break
        left, right = ids[: n - d], ids[d:]
        looks_right = spans[: n - d] >= d  # the left word sees d ahead
        looks_left = spans[d:] >= d  # the right word sees d behind
        centers += [left[looks_right], right[looks_left]]
        contexts += [right[looks_right], left[looks_left]]
    if not centers:
        return np.zeros(0, ids.dtype), np.zeros(0, ids.dtype)
    return np.concatenate(centers), np.concatenate(contexts)


def sample_noise(table, shape, seed):
    """Noise words: random slots of the noise table. Stateless, so the pair
    (seed, step) fixes the draw and a resumed run draws the same words."""
    slots = tf.random.stateless_uniform(
        shape, seed, maxval=tf.shape(table)[0], dtype=tf.int32
    )
    return tf.gather(table, slots)  # shape, e.g. (batch, negatives)


def make_dataset(ids, keep, window, batch_size, steps, seed, epoch, table, negatives):
    """One epoch of shuffled skip-gram pairs as a tf.data pipeline, each pair
    with `negatives` noise words drawn from `table`, in groups of `steps`
    batches: one group per call of the compiled training step.

    Yields (centers (steps, batch), candidates (steps, batch, 1 + negatives)):
    a candidate row is the true neighbour, then the noise words. The epoch is
    padded to whole groups with pairs whose center is UNK (0), which never
    occurs in a real pair, so the step can leave them out. Each epoch draws
    its own subsample, spans, order and noise from (seed, epoch), so a
    resumed run sees exactly the epochs an unbroken run would. Returns the
    dataset and the number of real pairs."""
    rng = np.random.default_rng([seed, epoch])
    kept = ids[rng.random(len(ids)) < keep[ids]]  # (n,) -> (kept,)
    spans = rng.integers(1, window + 1, size=len(kept))
    centers, contexts = skipgram_pairs(kept, spans)
    count, group = len(centers), steps * batch_size
    order = rng.permutation(count)
    pairs = np.zeros((2, -(-count // group) * group), np.int32)  # UNK pads
    np.take(centers, order, out=pairs[0, :count])
    np.take(contexts, order, out=pairs[1, :count])
    del centers, contexts, order  # text8 makes 80M pairs: free them early
    pairs = tf.constant(pairs)  # (2, padded)
    table = tf.constant(table)
    epoch_seed = tf.constant([seed, epoch], tf.int64)

    def group_at(start):
        # A group is cut as a slice of the shuffled arrays: slicing pair by
        # pair and batching (from_tensor_slices(...).batch) took 20 s an epoch
        # on Brown. The noise is drawn here, beside training rather than in
        # its step: tf.data runs this on another core while the step trains.
        center = tf.reshape(pairs[0, start : start + group], [steps, batch_size])
        context = tf.reshape(pairs[1, start : start + group], [steps, batch_size])
        noise_seed = tf.random.experimental.stateless_fold_in(epoch_seed, start)
        noise = sample_noise(table, [steps, batch_size, negatives], noise_seed)
        return center, tf.concat([context[..., None], noise], axis=-1)

    starts = tf.data.Dataset.range(0, pairs.shape[1], group)
    # One map thread, running ahead of training through prefetch: a parallel
    # map would also take the core that the step runs on.
    return starts.map(group_at).prefetch(tf.data.AUTOTUNE), count


def expected_pairs(counts, keep, window):
    """The pairs an epoch makes on average: each kept word pairs with
    2 * span neighbours, and the span averages (window + 1) / 2."""
    return float((counts * keep).sum() * (window + 1))


# 2. Model ----------------------------------------------------------------------


def build_model(vocab_size, embedding_dim, learning_rate, total_steps):
    """Two tables of word vectors and a score for (center, candidate) pairs.

    target_embedding holds the vectors we keep: a word as a center. Its
    partner context_embedding holds each word as a neighbour; the score of a
    pair is the dot product of the two. As in word2vec, the target vectors
    start small and random and the context ones at zero. The optimizer is
    plain SGD, as in word2vec, its rate falling linearly to near zero; the
    step sums the batch's losses, so each pair moves the vectors as much as
    one update of word2vec's would.

    Note: no bias per word. With one, WordSim-353 fell from 0.13 to 0.00
    after two epochs on Brown: the bias soaks up what the vectors should learn.
    """
    center = keras.Input((), dtype="int32", name="center")  # (batch,)
    candidates = keras.Input((None,), dtype="int32", name="candidates")
    init = keras.initializers.RandomUniform(-0.5 / embedding_dim, 0.5 / embedding_dim)
    target = layers.Embedding(
        vocab_size, embedding_dim, embeddings_initializer=init, name="target_embedding"
    )(center)  # (batch,) -> (batch, dim)
    context = layers.Embedding(
        vocab_size,
        embedding_dim,
        embeddings_initializer="zeros",
        name="context_embedding",
    )(candidates)  # (batch, k) -> (batch, k, dim)
    scores = layers.Dot(axes=(1, 2), name="scores")([target, context])  # (batch, k)
    model = keras.Model([center, candidates], scores, name="skipgram")
    schedule = keras.optimizers.schedules.PolynomialDecay(
        learning_rate, max(total_steps, 1), end_learning_rate=learning_rate * 1e-4
    )
    model.compile(optimizer=keras.optimizers.SGD(schedule))
    return model


def noise_log_odds(counts, negatives):
    """NCE's correction for each word w: log(k * q(w)), with k = negatives and
    q the noise distribution that noise_table draws from (counts ** 0.75).
    A frequent word is drawn as noise often, so a high score for it is weaker
    evidence that it is the true neighbour. UNK, never drawn, gets log(0)."""
    weights = np.asarray(counts, dtype=np.float64) ** 0.75
    weights[0] = 0.0
    with np.errstate(divide="ignore"):
        return np.log(negatives * weights / weights.sum()).astype(np.float32)


def sampled_loss(model, center, candidates, log_odds=None):
    """The true neighbour (candidates[:, 0]) should score high (label 1), each
    noise word after it low (label 0), each a logistic regression.
    center (batch,), candidates (batch, 1 + neg) -> loss per pair (batch,).

    Negative sampling (word2vec) uses the scores as they are. Noise-contrastive
    estimation subtracts each candidate's log_odds, log(k * q(w)), first: it
    asks "data or noise?" knowing how often the noise would offer that word.
    That one term is the whole difference between the two losses."""
    scores = model([center, candidates])  # (batch, 1 + neg)
    if log_odds is not None:
        scores -= tf.gather(log_odds, candidates)
    labels = tf.one_hot(tf.zeros_like(center), tf.shape(candidates)[1])
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels, scores)
    return tf.reduce_sum(losses, axis=1)  # (batch,)


def make_train_step(model, log_odds=None):
    """The compiled training step: SGD on each batch of a group in turn.

    centers (steps, batch), candidates (steps, batch, 1 + neg) -> the mean
    loss per real pair. log_odds: None for negative sampling, noise_log_odds
    for NCE. XLA (jit_compile) fuses the lookups and the sparse updates, and
    running several small batches in one call, as Keras' steps_per_execution
    does, keeps each batch's rows in the CPU's cache: on Brown, 512 pairs at a
    time trained 1.9 times as fast as one batch of 4,096 per call."""
    if log_odds is not None:
        log_odds = tf.constant(log_odds)

    @tf.function(jit_compile=True)
    def train_step(centers, candidates):
        total, count = tf.constant(0.0), tf.constant(0.0)
        for i in tf.range(tf.shape(centers)[0]):  # a loop inside XLA
            real = tf.cast(centers[i] > 0, tf.float32)  # padding has center UNK
            with tf.GradientTape() as tape:
                losses = sampled_loss(model, centers[i], candidates[i], log_odds)
                # Summed over the batch, as word2vec sums its updates pair by
                # pair; padding pairs count for nothing.
                loss = tf.reduce_sum(losses * real)
            grads = tape.gradient(loss, model.trainable_variables)
            model.optimizer.apply(grads, model.trainable_variables)
            total, count = total + loss, count + tf.reduce_sum(real)
        return total / tf.maximum(count, 1.0)

    return train_step


# 3. Training -------------------------------------------------------------------


def nearest_words(vectors, vocab, word, count):
    """The `count` words whose vectors have the highest cosine with `word`'s,
    with their cosines; the word itself and UNK are left out (so there are at
    most len(vocab) - 2)."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    index = vocab.index(word)
    cosines = unit @ unit[index]  # (vocab,)
    order = np.argsort(-cosines, kind="stable")
    best = order[(order != 0) & (order != index)][:count]
    return [(vocab[i], float(cosines[i])) for i in best]


def probe_report(model, vocab, probes, count):
    """One line per probe word: its nearest words now."""
    vectors = model.get_layer("target_embedding").get_weights()[0]
    lines = []
    for word in probes:
        near = nearest_words(vectors, vocab, word, count)
        lines.append(f"{word}: " + ", ".join(w for w, _ in near))
    return lines


def train(model, data, args, run_dir, log_dir, initial_epoch, best):
    """The custom loop: one tf.data pipeline per epoch, a compiled step per
    batch, progress with words per second, the loss to TensorBoard, and the
    probe words' neighbours after every epoch. Returns the training seconds."""
    vocab, counts, ids, keep, probes, corpus_words = data
    nce = args.loss == "nce"
    train_step = make_train_step(
        model, noise_log_odds(counts, args.negatives) if nce else None
    )
    table, negatives = noise_table(counts), args.negatives
    checkpoint_cb = RunCheckpoint(run_dir, "loss", "min", best)
    checkpoint_cb.set_model(model)
    writer = tf.summary.create_file_writer(str(log_dir))
    seconds = 0.0
    # The next epoch's pairs are made in a thread while this epoch trains: the
    # step runs on one core, and NumPy and TensorFlow let go of Python's lock
    # while they work, so the other core makes the pairs (0.8 s on Brown).
    maker = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def upcoming(epoch):
        sizes = (args.window, args.batch_size, args.steps_per_execution)
        settings = (*sizes, args.seed, epoch, table, negatives)
        return maker.submit(make_dataset, ids, keep, *settings)

    next_epoch = upcoming(initial_epoch)
    for epoch in range(initial_epoch, args.epochs):
        print(f"\nepoch {epoch + 1}/{args.epochs}")
        started = time.time()  # waiting for the pairs is part of training time
        pairs_ds, num_pairs = next_epoch.result()
        if epoch + 1 < args.epochs:
            next_epoch = upcoming(epoch + 1)
        steps = math.ceil(num_pairs / (args.batch_size * args.steps_per_execution))
        progbar = keras.utils.Progbar(steps, stateful_metrics=["loss", "words/s"])
        # The step's losses stay tensors until a progress line needs their
        # mean: reading one back (or updating a Keras metric) at every call
        # would cost about a millisecond each.
        pending, loss_sum = [], 0.0
        for call, (centers, candidates) in enumerate(pairs_ds):
            loss = train_step(centers, candidates)
            pending.append(loss)
            if call % 50 == 0 or call == steps - 1:
                loss_sum += float(tf.add_n(pending))
                pending.clear()
                value = loss_sum / (call + 1)  # the epoch's mean loss so far
                words_per_second = corpus_words * (call + 1) / steps
                words_per_second /= max(time.time() - started, 1e-9)
                progbar.update(
                    call + 1, [("loss", value), ("words/s", words_per_second)]
                )
                checkpoint_cb.on_train_batch_end(call, {"loss": float(loss)})
                if checkpoint_cb.nan_batch is not None:
                    break
                step = int(model.optimizer.iterations)
                with writer.as_default():
                    tf.summary.scalar("loss", value, step=step)
        seconds += time.time() - started
        if checkpoint_cb.nan_batch is not None:
            raise UsageError(
                f"the loss became NaN in epoch {epoch + 1}; lower --learning-rate"
            )
        checkpoint_cb.on_epoch_end(epoch, {"loss": value})
        lines = probe_report(model, vocab, probes, args.num_nearest)
        print("\n".join(lines))
        with writer.as_default():
            tf.summary.scalar("epoch_loss", value, step=epoch + 1)
            tf.summary.scalar(
                "words_per_second", corpus_words / (time.time() - started), epoch + 1
            )
            if lines:
                tf.summary.text("nearest_words", "\n\n".join(lines), step=epoch + 1)
    writer.close()
    maker.shutdown()
    return seconds


# 4. Evaluation -----------------------------------------------------------------


def find_eval_file(given, name, url, sha256, flag):
    """An evaluation file: the flag's path, else data/word2vec/<name>, else a
    download. None (with a note) when it cannot be had: training goes on."""
    if given is not None:
        return given_file(given, flag, f"pass a file like {name}")
    path = ROOT / "data" / "word2vec" / name
    if path.exists():
        return path
    try:
        return Path(
            keras.utils.get_file(
                name,
                origin=url,
                file_hash=sha256,
                cache_dir=str(ROOT / "data"),
                cache_subdir="word2vec",
            )
        )
    except Exception as err:  # offline, refused, or a bad checksum
        with contextlib.suppress(OSError):  # leave no empty folder behind
            path.parent.rmdir()
        print(
            f"note: cannot download {url} ({reason(err)}); that evaluation "
            f"is skipped: place {name} at {path}, or pass {flag} FILE",
            file=sys.stderr,
        )
        return None


def too_few_records(path, found, bad, noun, fix):
    """A file with no usable record, or more malformed lines than good ones,
    is one line naming the file and its first bad line: it is the wrong file,
    not a few typos. found: the good records; bad: the bad lines' numbers."""
    if found and len(bad) <= len(found):
        return
    count = f"only {plural(len(found), noun)}" if found else f"no {noun}s"
    where = f", the first on line {bad[0]}" if bad else ""
    raise UsageError(
        f"{path}: {count} and {plural(len(bad), 'malformed line')}{where}; " + fix
    )


def read_analogies(path):
    """questions-words.txt: `: section` headers, then `a b c d` lines meaning
    a is to b as c is to d. Lower-cased; other lines skipped and counted."""
    fix = "pass questions-words.txt (UTF-8 text, lines of four words a b c d)"
    text = decode_text(read_bytes(path), path, fix)
    questions, bad = [], []
    for number, line in enumerate(text.split("\n"), 1):
        words = line.lower().split()
        if not words or line.startswith(":"):
            continue
        if len(words) == 4:
            questions.append(tuple(words))
        else:
            bad.append(number)
    too_few_records(path, questions, bad, "analogy question", fix)
    return questions, len(bad)


def analogy_accuracy(vectors, vocab, questions, chunk=1024):
    """3CosAdd: the answer to a:b :: c:? is the word whose unit vector is
    nearest to b - a + c, leaving a, b and c out, searched over the whole
    vocabulary. Only questions with all four words in the vocabulary count.

    Returns (accuracy, coverage, number of questions asked)."""
    index = {word: i for i, word in enumerate(vocab)}
    asked = np.array(
        [[index[w] for w in q] for q in questions if all(w in index for w in q)],
        dtype=np.int64,
    ).reshape(-1, 4)  # (asked, 4)
    if len(asked) == 0:
        return float("nan"), 0.0, 0
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    correct = 0
    for start_row in range(0, len(asked), chunk):
        q = asked[start_row : start_row + chunk]  # (chunk, 4)
        query = unit[q[:, 1]] - unit[q[:, 0]] + unit[q[:, 2]]  # (chunk, dim)
        scores = query @ unit.T  # (chunk, vocab)
        rows = np.arange(len(q))[:, None]
        scores[rows, q[:, :3]] = -np.inf
        correct += int((scores.argmax(axis=1) == q[:, 3]).sum())
    return correct / len(asked), len(asked) / len(questions), len(asked)


def read_wordsim(path):
    """WordSim-353: `#` comment lines, then word1<TAB>word2<TAB>score (more
    columns are ignored). Lower-cased; rows that do not parse are skipped and
    counted."""
    fix = "pass wordsim353.tsv (UTF-8 text, word1<TAB>word2<TAB>score)"
    text = decode_text(read_bytes(path), path, fix)
    pairs, bad = [], []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("\t")]
        try:
            score = float(fields[2])
        except (IndexError, ValueError):
            score = math.nan
        if math.isfinite(score) and fields[0] and fields[1]:
            pairs.append((fields[0].lower(), fields[1].lower(), score))
        else:
            bad.append(number)
    too_few_records(path, pairs, bad, "word pair", fix)
    return pairs, len(bad)


def wordsim_spearman(vectors, vocab, pairs):
    """Spearman correlation between the cosines of the word pairs and the human
    scores, over the pairs with both words in the vocabulary.

    Returns (rho, coverage, number of pairs used); rho is NaN when there is no
    rank to correlate (under two pairs, or all cosines or scores equal)."""
    from scipy.stats import spearmanr

    index = {word: i for i, word in enumerate(vocab)}
    used = [(a, b, s) for a, b, s in pairs if a in index and b in index]
    if len(used) < 2:
        return float("nan"), len(used) / len(pairs), len(used)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
    cosines = [float(unit[index[a]] @ unit[index[b]]) for a, b, _ in used]
    scores = [s for _, _, s in used]
    if len(set(cosines)) < 2 or len(set(scores)) < 2:  # no ranks to correlate
        return float("nan"), len(used) / len(pairs), len(used)
    rho = spearmanr(cosines, scores).statistic
    return float(rho), len(used) / len(pairs), len(used)


def evaluate(vectors, vocab, analogies, wordsim):
    """Both checks, on the vectors of the known words (UNK is left out);
    analogies and wordsim are what read_analogies and read_wordsim return,
    or None for a skipped check. A check with nothing to score gives None
    (null in metrics.json), never NaN."""
    results = {}
    if analogies is not None:
        questions, skipped = analogies
        accuracy, coverage, asked = analogy_accuracy(vectors[1:], vocab[1:], questions)
        malformed = f"{plural(skipped, 'malformed line')} skipped"
        if asked:
            print(
                f"analogies: accuracy {accuracy:.4f} on {plural(asked, 'question')} "
                f"(coverage {coverage:.3f} of {len(questions)}; {malformed})",
                file=sys.stderr,
            )
        else:
            accuracy = None
            print(
                f"analogies: nothing to score: none of the {len(questions)} "
                f"questions has its four words in the vocabulary ({malformed})",
                file=sys.stderr,
            )
        results.update(analogy_accuracy=accuracy, analogy_coverage=coverage)
        results["analogy_questions"] = asked
    if wordsim is not None:
        pairs, skipped = wordsim
        rho, coverage, used = wordsim_spearman(vectors[1:], vocab[1:], pairs)
        malformed = f"{plural(skipped, 'malformed row')} skipped"
        if math.isfinite(rho):
            print(
                f"WordSim-353: Spearman {rho:.4f} on {plural(used, 'pair')} "
                f"(coverage {coverage:.3f} of {len(pairs)}; {malformed})",
                file=sys.stderr,
            )
        else:  # under two pairs known, or cosines (or scores) all the same
            rho = None
            why = (
                f"only {used} of the {len(pairs)} pairs have both words in the "
                "vocabulary (2 needed)"
                if used < 2
                else f"the cosines or the scores of the {used} pairs are all equal"
            )
            print(
                f"WordSim-353: nothing to score: {why} ({malformed})", file=sys.stderr
            )
        results.update(wordsim_spearman=rho, wordsim_coverage=coverage)
        results["wordsim_pairs"] = used
    return results


# 5. Saving, pictures and the projector -------------------------------------------


def save_embeddings(run_dir, log_dir, vectors, vocab):
    """vectors.tsv and metadata.tsv (one row per word, UNK first) for
    projector.tensorflow.org, and a checkpoint with a projector config in the
    log folder, so TensorBoard's Projector tab shows the words.

    Keras 3: its TensorBoard callback no longer writes embeddings."""
    from tensorboard.plugins import projector

    lines = ["\t".join(f"{x:.6f}" for x in row) for row in vectors]
    (run_dir / "vectors.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    metadata = "\n".join(vocab) + "\n"
    (run_dir / "metadata.tsv").write_text(metadata, encoding="utf-8")
    (log_dir / "metadata.tsv").write_text(metadata, encoding="utf-8")
    checkpoint = tf.train.Checkpoint(embedding=tf.Variable(vectors))
    checkpoint.save(str(log_dir / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    embedding.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(str(log_dir), config)


def plot_tsne(vectors, words, path, args):
    """The most frequent words laid out in 2-D by t-SNE; neighbours in the
    picture are neighbours in the vector space (distances between far groups
    mean little). Perplexity must stay below the number of points."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, len(words) - 1.0)
    points = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=args.seed
    ).fit_transform(vectors)  # (words, dim) -> (words, 2)
    fig, ax = plt.subplots(figsize=(14, 14))
    ax.scatter(points[:, 0], points[:, 1], s=4, color="tab:blue")
    for (x, y), word in zip(points, words, strict=True):
        ax.annotate(word, (x, y), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set_title(f"t-SNE of the {len(words)} most frequent words (perplexity "
                 f"{perplexity:g})")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, path, args)
    return perplexity


def log_picture(log_dir, path, step):
    """The saved PNG in TensorBoard's Images tab too."""
    image = tf.io.decode_png(tf.io.read_file(str(path)), channels=3)
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        tf.summary.image("tsne", image[None], step=step)


# The lesson, in order ------------------------------------------------------------


def load_run(run_dir):
    """A saved run's vectors (vocab, dim) and vocabulary. Another script's
    run, or files from two runs, are one line."""
    model = load_run_model(run_dir / "model.keras", compile=False)
    try:
        vectors = model.get_layer("target_embedding").get_weights()[0]
    except ValueError:  # no such layer
        raise UsageError(
            f"{run_dir}: not a {SCRIPT} run (its model has no target_embedding "
            f"layer); give a run of {SCRIPT}.py with --model"
        ) from None
    metadata = run_dir / "metadata.tsv"
    vocab = decode_text(read_bytes(metadata), metadata, "train a new run").split("\n")
    vocab = vocab[:-1] if vocab[-1:] == [""] else vocab  # the last line's newline
    if len(vocab) != len(vectors):
        raise UsageError(
            f"{run_dir}: metadata.tsv lists {plural(len(vocab), 'word')} but the "
            f"model has {len(vectors)} vectors; give a whole run with --model"
        )
    return vectors, vocab


def show_nearest(args):
    """--nearest WORD: the saved run's neighbours of WORD on standard output,
    one `word<TAB>cosine` per line."""
    run_dir = model_run_dir(args, needs=("model.keras", "metadata.tsv"))
    vectors, vocab = load_run(run_dir)
    word = args.nearest.lower()
    if word not in vocab[1:]:
        raise UsageError(
            f"--nearest {args.nearest}: not in the vocabulary of {run_dir} "
            f"({plural(len(vocab) - 1, 'word')})"
        )
    print(f"nearest to {word!r} in {run_dir}:", file=sys.stderr)
    for near, cosine in nearest_words(vectors, vocab, word, args.num_nearest):
        print(f"{near}\t{cosine:.4f}")
    return 0


def prepare_data(args):
    """Read the corpus and build what training needs; checks that the
    settings fit the data before any folder is made."""
    path = find_corpus(args)
    words = read_words(path)
    if args.quick:
        words = words[:30000]
    vocab, counts, ids = build_vocab(words, args.vocab_size)
    known = len(vocab) - 1
    print(
        f"{path}: {plural(len(words), 'word')}, {known} kept in the vocabulary, "
        f"{plural(int(counts[0]), 'token')} ({counts[0] / len(words):.1%}) "
        "outside it (UNK)",
        file=sys.stderr,
    )
    if args.negatives >= known:  # noise words must differ from the neighbour
        if known > 1:
            fix = "lower --negatives"
        elif args.vocab_size == 1:
            fix = "raise --vocab-size"
        else:
            fix = "give a corpus of more than one distinct word"
        raise UsageError(
            f"--negatives {args.negatives} is more than the vocabulary of "
            f"{plural(known, 'word')} allows; {fix}"
        )
    keep = keep_probabilities(counts, args.sample)
    if expected_pairs(counts, keep, args.window) < 1:
        raise UsageError(f"{path}: too few words to make a single pair")
    probes = [word for word in PROBE_WORDS if word in vocab]
    missing = sorted(set(PROBE_WORDS) - set(probes))
    if missing:
        print(
            f"probe words not in the vocabulary: {' '.join(missing)}", file=sys.stderr
        )
    return vocab, counts, ids, keep, probes, len(words)


def run(args):
    check_settings(args)
    if args.nearest is not None:
        return show_nearest(args)
    started = time.time()
    if args.resume:  # the run's own settings, not today's flags
        run_dir, log_dir = find_run(args, completed=False)
        saved = json.loads((run_dir / "settings.json").read_text())
        keep_flags = ("resume", "output_dir", "log_dir", "show")
        vars(args).update({k: v for k, v in saved.items() if k not in keep_flags})
    start(args)

    # Everything is checked before a run folder exists: errors write nothing.
    data = prepare_data(args)
    vocab, counts, _, keep, _, corpus_words = data
    # The evaluation sets are read now: a malformed one fails before training.
    analogy_path = find_eval_file(
        args.analogies, "questions-words.txt", ANALOGIES_URL, None, "--analogies"
    )
    wordsim_path = find_eval_file(
        args.wordsim, "wordsim353.tsv", WORDSIM_URL, WORDSIM_SHA256, "--wordsim"
    )
    analogies = read_analogies(analogy_path) if analogy_path else None
    wordsim = read_wordsim(wordsim_path) if wordsim_path else None

    total_steps = math.ceil(
        args.epochs * expected_pairs(counts, keep, args.window) / args.batch_size
    )
    if args.resume:
        model, state = resume_checkpoint(run_dir)
        initial_epoch, best = state["epoch"], state["best"]
        print(f"resuming {run_dir.name} after epoch {initial_epoch}", file=sys.stderr)
    else:
        model = build_model(
            len(vocab), args.embedding_dim, args.learning_rate, total_steps
        )
        run_dir, log_dir = make_run_dirs(args)
        write_json(run_dir / "settings.json", vars(args))
        initial_epoch, best = 0, None
    model.summary(print_fn=lambda line, **_: print(line, file=sys.stderr))

    with discard_unsaved_run(run_dir, log_dir):
        train_seconds = train(model, data, args, run_dir, log_dir, initial_epoch, best)
    epochs_run = args.epochs - initial_epoch
    words_per_second = corpus_words * epochs_run / max(train_seconds, 1e-9)

    # The vectors are saved before anything is drawn or scored.
    save_model(model, run_dir / "model.keras")
    vectors = model.get_layer("target_embedding").get_weights()[0]  # (vocab, dim)
    save_embeddings(run_dir, log_dir, vectors, vocab)

    results = {
        "analogy_accuracy": None,
        "analogy_coverage": None,
        "wordsim_spearman": None,
        "words_per_second": round(words_per_second, 1),
    }
    results.update(evaluate(vectors, vocab, analogies, wordsim))
    skipped = [
        name
        for name, found in (("analogies", analogies), ("WordSim-353", wordsim))
        if found is None
    ]
    count = min(args.tsne_words, len(vocab) - 1)
    if count >= 2:
        results["tsne_perplexity"] = plot_tsne(
            vectors[1 : count + 1], vocab[1 : count + 1], run_dir / "tsne.png", args
        )
        log_picture(log_dir, run_dir / "tsne.png", args.epochs)

    throughput = {
        "value": round(words_per_second, 1),
        "unit": "corpus words per second of training (words x epochs / seconds)",
    }
    write_metrics(run_dir, args, started, throughput, results)

    example = next((word for word in PROBE_WORDS if word in vocab), vocab[-1])

    def figure(key, read):
        value = results.get(key)
        if value is None:
            return "nothing to score" if read is not None else "skipped"
        return f"{value:.4f}"

    print_summary(
        f"analogy accuracy {figure('analogy_accuracy', analogies)} (coverage "
        f"{figure('analogy_coverage', analogies)}), WordSim-353 Spearman "
        f"{figure('wordsim_spearman', wordsim)}, {words_per_second:,.0f} words/s"
        + (f"\nskipped: {', '.join(skipped)} (file not found)" if skipped else "")
        + f"\nnearest words: python {SCRIPT}.py --nearest {example} --model {run_dir}",
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
