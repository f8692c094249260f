"""word2vec.py against gensim's Word2Vec, on the same corpus and machine.

Both train skip-gram with negative sampling on the same words with the same
settings (vocabulary size, dimensions, window, noise words, subsampling,
epochs); gensim uses --workers threads. Both sets of vectors are then scored
by word2vec.py's own evaluation functions, on the analogy questions and word
pairs whose words both vocabularies hold, with answers searched among the
words that both vocabularies hold, so the two figures answer the same
questions from the same candidates. Throughput is corpus words times epochs
over training seconds for both (vocabulary building excluded).

    python benchmarks/bench_word2vec.py \\
        --data ../shared/data/word2vec/brown_text8.zip \\
        --analogies ../shared/data/word2vec/questions-words.txt \\
        --wordsim ../shared/data/word2vec/wordsim353.tsv

Each finished measurement is appended to --results as one JSON line; the
last lines printed are a markdown results row. Needs gensim
(benchmarks/requirements.txt).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import word2vec as w2v  # noqa: E402


def parse_args(argv=None):
    lesson = w2v.parse_args([])  # the lesson's defaults are the benchmark's
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = ROOT / "data" / "word2vec"
    parser.add_argument("--data", default=str(data / "brown_text8.zip"))
    parser.add_argument("--analogies", default=str(data / "questions-words.txt"))
    parser.add_argument("--wordsim", default=str(data / "wordsim353.tsv"))
    parser.add_argument("--vocab-size", type=int, default=lesson.vocab_size)
    parser.add_argument("--embedding-dim", type=int, default=lesson.embedding_dim)
    parser.add_argument("--window", type=int, default=lesson.window)
    parser.add_argument("--negatives", type=int, default=lesson.negatives)
    parser.add_argument("--sample", type=float, default=lesson.sample)
    parser.add_argument("--epochs", type=int, default=lesson.epochs)
    parser.add_argument("--batch-size", type=int, default=lesson.batch_size)
    parser.add_argument("--learning-rate", type=float, default=lesson.learning_rate)
    parser.add_argument("--workers", type=int, default=2, help="gensim's threads")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[42, 43, 44],
        help="one run of each tool per seed; figures are the means",
    )
    parser.add_argument(
        "--results",
        default=str(ROOT / "output" / "bench" / "word2vec.jsonl"),
        help="JSON lines, one per finished measurement",
    )
    parser.add_argument(
        "--work-dir",
        default=str(ROOT / "output" / "bench" / "word2vec_runs"),
        help="where word2vec.py's run is written",
    )
    parser.add_argument("--skip-gensim", action="store_true")
    parser.add_argument("--skip-ours", action="store_true")
    return parser.parse_args(argv)


def record(args, row):
    """Append one finished measurement, so an interrupted run keeps it."""
    row = dict(row, time=time.strftime("%Y-%m-%d %H:%M:%S"), load=os.getloadavg())
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=str) + "\n")
    print(json.dumps(row, default=str), file=sys.stderr)


def train_gensim(args, words, seed):
    """gensim's skip-gram with negative sampling; text8 is read by gensim as
    sentences of 10,000 words, and so is the corpus here."""
    from gensim.models import Word2Vec

    sentences = [words[i : i + 10000] for i in range(0, len(words), 10000)]
    model = Word2Vec(
        sg=1,
        hs=0,
        negative=args.negatives,
        vector_size=args.embedding_dim,
        window=args.window,
        sample=args.sample,
        epochs=args.epochs,
        workers=args.workers,
        max_final_vocab=args.vocab_size,
        min_count=1,
        seed=seed,
    )
    model.build_vocab(sentences)
    started = time.time()
    model.train(sentences, total_examples=len(sentences), epochs=args.epochs)
    seconds = time.time() - started
    vocab = list(model.wv.index_to_key)
    return model.wv.vectors, vocab, len(words) * args.epochs / seconds, seconds


def train_ours(args, seed):
    """word2vec.py as a user runs it, with --loss neg; its vectors and its own
    words-per-second figure are read back from the run folder."""
    work = Path(args.work_dir)
    cmd = [
        sys.executable, str(ROOT / "word2vec.py"), "--loss", "neg",
        "--data", args.data, "--analogies", args.analogies, "--wordsim", args.wordsim,
        "--vocab-size", args.vocab_size, "--embedding-dim", args.embedding_dim,
        "--window", args.window, "--negatives", args.negatives,
        "--sample", args.sample, "--epochs", args.epochs,
        "--batch-size", args.batch_size, "--learning-rate", args.learning_rate,
        "--seed", seed,
        "--output-dir", work / "output", "--log-dir", work / "logs",
    ]  # fmt: skip
    started = time.time()
    subprocess.run([str(c) for c in cmd], check=True)
    wall = time.time() - started
    run_dir = sorted((work / "output" / "word2vec").glob("*_*"))[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    vectors, vocab = w2v.load_run(run_dir)
    speed = metrics["results"]["words_per_second"]
    return vectors[1:], vocab[1:], speed, wall, run_dir  # UNK left out


def score(vectors, vocab, questions, pairs):
    """word2vec.py's evaluation, on the given questions and pairs."""
    accuracy, _, asked = w2v.analogy_accuracy(vectors, vocab, questions)
    rho, _, used = w2v.wordsim_spearman(vectors, vocab, pairs)
    return {"analogy_accuracy": accuracy, "questions": asked,
            "wordsim_spearman": rho, "pairs": used}  # fmt: skip


def common(vectors, vocab, shared):
    """The rows of vectors whose words are in `shared`, and those words."""
    rows = [i for i, word in enumerate(vocab) if word in shared]
    return vectors[rows], [vocab[i] for i in rows]


def main(argv=None):
    args = parse_args(argv)
    bench_started = time.time()
    words = w2v.read_words(Path(args.data))
    questions, _ = w2v.read_analogies(args.analogies)
    pairs, _ = w2v.read_wordsim(args.wordsim)
    settings = {k: v for k, v in vars(args).items() if k not in ("results",)}
    print(f"{args.data}: {len(words)} words; settings {settings}", file=sys.stderr)

    found = {"gensim": [], "ours": []}  # (vectors, vocab, words/s) per seed
    for seed in args.seeds:
        if not args.skip_gensim:
            vectors, vocab, speed, seconds = train_gensim(args, words, seed)
            found["gensim"].append((vectors, vocab, speed))
            record(args, {"tool": "gensim", "seed": seed, "words_per_second": speed,
                          "train_seconds": seconds, "vocab": len(vocab),
                          "own": score(vectors, vocab, questions, pairs),
                          "settings": settings})  # fmt: skip
        if not args.skip_ours:
            vectors, vocab, speed, wall, run_dir = train_ours(args, seed)
            found["ours"].append((vectors, vocab, speed))
            record(args, {"tool": "word2vec.py", "seed": seed,
                          "words_per_second": speed, "wall_seconds": wall,
                          "vocab": len(vocab), "run": run_dir,
                          "own": score(vectors, vocab, questions, pairs),
                          "settings": settings})  # fmt: skip
    if not (found["gensim"] and found["ours"]):
        return 0

    # The same questions for every run: those whose words all vocabularies hold.
    shared = set.intersection(*(set(v) for runs in found.values() for _, v, _ in runs))
    same_questions = [q for q in questions if all(w in shared for w in q)]
    same_pairs = [p for p in pairs if p[0] in shared and p[1] in shared]
    figures = {}  # tool -> measure -> one figure per seed
    for tool, runs in found.items():
        # Answers are searched among the shared words only: gensim's vocabulary
        # rule (max_final_vocab raises the minimum count) keeps fewer words than
        # ours, and every extra word is one more wrong answer to pick.
        scores = [
            dict(score(*common(v, vocab, shared), same_questions, same_pairs),
                 words_per_second=s)
            for v, vocab, s in runs
        ]  # fmt: skip
        figures[tool] = {key: [row[key] for row in scores] for key in scores[0]}
    measures = ("analogy_accuracy", "wordsim_spearman", "words_per_second")
    means = {
        tool: {key: statistics.mean(figures[tool][key]) for key in measures}
        for tool in figures
    }
    ratios = {key: means["ours"][key] / means["gensim"][key] for key in measures}
    wall = time.time() - bench_started
    machine = (
        f"{os.cpu_count()} cores, CPU ({platform.processor() or platform.machine()}),"
        f" no GPU; load average {os.getloadavg()[0]:.1f} at the end (shared machine)"
    )
    command = "python benchmarks/bench_word2vec.py " + " ".join(
        a if " " not in a else repr(a) for a in (argv or sys.argv[1:])
    )
    record(args, {"tool": "comparison", "seeds": args.seeds, "figures": figures,
                  "means": means, "ratios": ratios,
                  "same_questions": len(same_questions),
                  "same_pairs": len(same_pairs), "wall_seconds": wall,
                  "machine": machine, "command": command})  # fmt: skip

    def cell(tool, key, form):
        values = figures[tool][key]
        each = ", ".join(format(v, form) for v in values)
        return f"{means[tool][key]:{form}} ({each})"

    print(f"\n| measure, mean over seeds {args.seeds} (each seed) | word2vec.py "
          "(--loss neg) | gensim | ratio |")  # fmt: skip
    print("| --- | --- | --- | --- |")
    labels = {
        "analogy_accuracy": (f"analogy accuracy ({len(same_questions)} questions)",
                             ".4f"),
        "wordsim_spearman": (f"WordSim-353 Spearman ({len(same_pairs)} pairs)",
                             ".4f"),
        "words_per_second": (f"words per second (gensim: {args.workers} workers)",
                             ",.0f"),
    }  # fmt: skip
    for key, (label, form) in labels.items():
        print(
            f"| {label} | {cell('ours', key, form)} | {cell('gensim', key, form)} | "
            f"{ratios[key]:.2f} |"
        )
    print(f"\nwall time {wall:.0f} s; {machine}\ncommand: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
