"""fake_donald_trump.py: loading, windows, sampling, generation, the run."""

import json
import math
from argparse import Namespace

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import fake_donald_trump as lesson

LINK = lesson.LINK_MARK


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


def tiny_args(**overrides):
    settings = dict(
        embedding_dim=8, cell="gru", units=16, layers=2, dropout=0.0, learning_rate=1e-2
    )
    settings.update(overrides)
    return Namespace(**settings)


def run_main(tmp_path, *args):
    out, logs = tmp_path / "out", tmp_path / "logs"
    code = lesson.main(
        [*map(str, args), "--output-dir", str(out), "--log-dir", str(logs)]
    )
    return code, out, logs


def assert_one_line_error(capsys, code, out, logs, *expected):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err and err[-1].startswith("error: "), err
    assert "Traceback" not in "\n".join(err)
    for text in expected:
        assert text in err[-1], err[-1]
    assert not out.exists() and not logs.exists()  # nothing written


# Loading ----------------------------------------------------------------------


def test_clean_tweet_entities_links_and_line_breaks():
    text = "Jobs &amp; more &quot;news&quot;\nsee https://t.co/abc123 now http://x.co/y"
    assert lesson.clean_tweet(text) == f'Jobs & more "news" see {LINK} now {LINK}'
    assert lesson.clean_tweet("  \t \n ") == ""


def test_csv_with_bom_empty_cells_and_broken_rows(tmp_path):
    rows = [
        "text,created_at",
        "Make it great &amp; strong,03-01-2018 12:00:00",
        ",03-02-2018 12:00:00",  # an empty cell: skipped, never "nan"
        '"A tweet, with a comma",03-03-2018 12:00:00',
        "the first half of a broken",  # fragments of an unquoted line break
        "",
        "tweet,03-04-2018 12:00:00",
        "too,many,fields,here",  # pandas skips it; counted as broken
        "Read it: https://t.co/xyz,03-05-2018 12:00:00",
    ]
    path = write(tmp_path / "tweets.txt", "\n".join(rows) + "\n", "utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"  # a byte-order mark
    tweets, skipped = lesson.read_tweets(path, "text")
    assert tweets == [
        "Make it great & strong",
        "A tweet, with a comma",
        "tweet",
        f"Read it: {LINK}",
    ]
    assert skipped == {"empty": 1, "broken": 3}


def test_the_archives_quote_marks_are_text(tmp_path):
    # The real file never quotes a field and has no commas in tweets: a tweet
    # opening with a quote must not swallow the rows after it, dates and all.
    rows = [
        "text,created_at",
        '"Fake news" said he. Sad!,03-01-2018 12:00:00',
        'Next "one,03-02-2018 12:00:00',
        "Third,03-03-2018 12:00:00",
    ]
    path = write(tmp_path / "trump.txt", "\n".join(rows) + "\n")
    tweets, skipped = lesson.read_tweets(path, "text")
    assert tweets == ['"Fake news" said he. Sad!', 'Next "one', "Third"]
    assert skipped == {"empty": 0, "broken": 0}


def test_a_csv_writers_quoting_is_read_as_quoting(tmp_path):
    # pandas, R and spreadsheets quote a field that holds a line break, a
    # comma or a quote, and double the quotes inside it.
    # No tweet here holds a comma, as none in the archive does.
    tweets = ["line one\nline two", 'He said "hello" today', "plain"]
    path = tmp_path / "quoted.csv"
    pd.DataFrame({"text": tweets, "id": [1, 2, 3]}).to_csv(path, index=False)
    assert lesson.read_tweets(path, "text") == (
        ["line one line two", 'He said "hello" today', "plain"],
        {"empty": 0, "broken": 0},
    )
    every = write(tmp_path / "all.csv", '"text","year"\n"hello world","2017"\n')
    assert lesson.read_tweets(every, "text")[0] == ["hello world"]


def test_a_unicode_line_separator_stays_inside_its_tweet(tmp_path):
    path = write(tmp_path / "t.txt", "one\u2028more\nsecond\n")
    assert lesson.read_tweets(path, "text")[0] == ["one more", "second"]


def test_plain_text_is_one_tweet_per_line_whatever_the_name(tmp_path):
    path = write(tmp_path / "tweets.csv", "first tweet, with a comma\n\nsecond &lt;3\n")
    tweets, skipped = lesson.read_tweets(path, "text")
    assert tweets == ["first tweet, with a comma", "second <3"]
    assert skipped == {"empty": 1, "broken": 0}


def test_csv_without_the_column_names_the_flag(tmp_path):
    path = write(tmp_path / "t.csv", "tweet,created_at\nhello,03-01-2018\n")
    with pytest.raises(lesson.UsageError, match="--column"):
        lesson.read_tweets(path, "text")
    assert lesson.read_tweets(path, "tweet")[0] == ["hello"]


def test_the_fixture_csv_loads(tweets_csv):
    tweets, skipped = lesson.read_tweets(tweets_csv, "text")
    assert len(tweets) == 80 and skipped == {"empty": 0, "broken": 0}
    assert not any("&amp;" in t or "https://" in t for t in tweets)
    assert sum(LINK in t for t in tweets) == 9  # rows 0, 9, ..., 72
    assert tweets[0].endswith(f"& more {LINK}, believe me!")


def test_offline_names_the_address_the_path_and_the_flag(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(lesson, "ROOT", tmp_path)
    monkeypatch.setattr(lesson.keras.utils, "get_file", offline)
    with pytest.raises(lesson.UsageError) as caught:
        lesson.resolve_data(Namespace(data=None))
    message = str(caught.value)
    assert lesson.DATA_URL in message and "--data" in message
    assert str(tmp_path / "data" / "trump.txt") in message
    assert "(OSError: no network)" in message  # the reason, not just its type


def test_split_join_vocab_encode():
    tweets = [f"t{i}" for i in range(10)]
    train, val = lesson.split_tweets(tweets, 0.2, seed=42)
    assert len(val) == 2 and sorted(train + val) == sorted(tweets)
    assert lesson.split_tweets(tweets, 0.2, seed=42) == (train, val)  # seeded
    assert lesson.join_tweets(["ab", "c"]) == "\nab\nc\n"
    vocab = lesson.make_vocab("\nab\nc\n")
    assert vocab == [lesson.UNKNOWN, "\n", "a", "b", "c"]
    assert lesson.encode("cab?", vocab).tolist() == [4, 2, 3, 0]  # unseen -> 0


# Windows ----------------------------------------------------------------------


def test_training_windows_and_targets_shifted_by_one():
    ids = np.arange(11, dtype=np.int32)
    ds = lesson.make_train_ds(ids, seq_length=3, batch_size=8, seed=0)
    (inputs, targets), *rest = list(ds.as_numpy_iterator())
    assert not rest and inputs.shape == targets.shape == (3, 3)
    order = np.argsort(inputs[:, 0])
    assert inputs[order].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert targets[order].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    # The count is known, so Keras sees where a full pass (--steps-per-epoch 0)
    # ends instead of warning that the data ran out.
    assert lesson.make_train_ds(ids, 3, 2, seed=0).cardinality().numpy() == 2


def test_eval_windows_score_every_character_once():
    ids = np.arange(1, 12, dtype=np.int32)  # 11 ids -> 10 targets
    batches = list(lesson.make_eval_ds(ids, seq_length=4, batch_size=2))
    inputs = np.concatenate([b[0] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    weights = np.concatenate([b[2] for b in batches])
    assert inputs.shape == (3, 4)  # 10 targets -> 3 windows, 2 padded slots
    assert weights.sum() == 10
    assert targets[weights == 1].tolist() == list(range(2, 12))
    assert inputs[weights == 1].tolist() == list(range(1, 11))


def test_short_corpus_stops_before_any_model(tmp_path, capsys):
    data = write(tmp_path / "t.txt", "short one\nand two\nthree\n")
    code, out, logs = run_main(tmp_path, "--data", data, "--seq-length", 100)
    assert_one_line_error(
        capsys,
        code,
        out,
        logs,
        "--seq-length 100",
        "needs at least 101",
        "lower --seq-length",
    )


# Sampling ---------------------------------------------------------------------


def test_sampling_temperatures():
    logits = tf.constant([[1.0, 3.0, 2.0], [0.5, 0.1, 0.2]])
    greedy = lesson.sample(logits, 0.0, 0, seed=[1, 2]).numpy()
    assert greedy.tolist() == [1, 0]
    tiny = lesson.sample(logits, 1e-30, 0, seed=[1, 2]).numpy()
    assert tiny.tolist() == [1, 0]  # no overflow, greedy in the limit
    assert lesson.sample(logits, 1e-45, 0, seed=[1, 2]).numpy().tolist() == [1, 0]
    # Temperature 1 draws from the softmax: frequencies match it.
    many = tf.tile(tf.constant([[0.0, math.log(3.0)]]), [4000, 1])
    draws = lesson.sample(many, 1.0, 0, seed=[3, 4]).numpy()
    assert abs(draws.mean() - 0.75) < 0.03
    hot = lesson.sample(many, 1e6, 0, seed=[3, 4]).numpy()
    assert abs(hot.mean() - 0.5) < 0.03  # very hot: uniform
    top1 = lesson.sample(tf.tile(logits, [50, 1]), 5.0, 1, seed=[5, 6]).numpy()
    assert set(top1[0::2]) == {1} and set(top1[1::2]) == {0}


def test_negative_temperature_is_one_line(tmp_path, capsys, tweets_csv):
    code, out, logs = run_main(tmp_path, "--data", tweets_csv, "--temperature", -0.5)
    assert_one_line_error(
        capsys, code, out, logs, "--temperature", "0 (greedy) or a positive", "-0.5"
    )


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--temperature", "inf"], "--temperature"),
        (["--learning-rate", "-1"], "--learning-rate must be a positive number"),
        (["--learning-rate", "nan"], "--learning-rate must be a positive number"),
        (["--quick", "--max-length", "0"], "--max-length must be at least 1, got 0"),
        (["--quick", "--embedding-dim", "0"], "--embedding-dim must be at least 1"),
        (["--quick", "--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--prime", "中国 hi"], "--prime has characters the training tweets never"),
    ],
)
def test_impossible_settings_are_one_line(
    tmp_path, capsys, tweets_csv, flags, expected
):
    code, out, logs = run_main(tmp_path, "--data", tweets_csv, *flags)
    assert_one_line_error(capsys, code, out, logs, expected)


def test_missing_data_path_is_an_error(tmp_path, capsys):
    code, out, logs = run_main(tmp_path, "--data", tmp_path / "nope.txt", "--quick")
    assert_one_line_error(capsys, code, out, logs, "nope.txt")


def test_binary_file_is_an_error(tmp_path, capsys):
    binary = tmp_path / "garbage.bin"
    binary.write_bytes(bytes([0xFF, 0xFE, 0x00, 0x81] * 64))
    code, out, logs = run_main(tmp_path, "--data", binary, "--quick")
    assert_one_line_error(capsys, code, out, logs, "not UTF-8 text")


# Generation -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    keras.utils.set_random_seed(0)
    vocab = lesson.make_vocab(lesson.join_tweets(["abc de", "fed cba"]))
    return lesson.build_model(len(vocab), tiny_args()), vocab


def test_step_model_carries_the_state(tiny_model):
    model, vocab = tiny_model
    ids = lesson.encode("\nabc de\nfed", vocab)[None, :]  # (1, 11)
    full = model(ids, training=False).numpy()[0]  # (11, vocab_size)
    step_model = lesson.make_step_model(model)
    states = [tf.zeros((1, 16))] * 2  # one state per GRU layer
    for t in range(ids.shape[1]):
        logits, *states = step_model([tf.constant(ids[:, t : t + 1]), *states])
        np.testing.assert_allclose(logits.numpy()[0], full[t], atol=1e-5)


def test_batched_greedy_equals_one_at_a_time(tiny_model):
    model, vocab = tiny_model
    step_model = lesson.make_step_model(model)
    primes = ["ab", "", "fed c", "b"]
    batched = lesson.generate(step_model, vocab, primes, 0.0, 0, 20, seed=1)
    alone = [
        lesson.generate(step_model, vocab, [p], 0.0, 0, 20, seed=1)[0] for p in primes
    ]
    assert batched == alone
    for prime, tweet in zip(primes, batched, strict=True):
        assert tweet.startswith(prime) and len(tweet) <= 20 and "\n" not in tweet
    again = lesson.generate(step_model, vocab, ["ab"] * 3, 0.0, 0, 20, seed=7)
    assert again == [batched[0]] * 3  # greedy repeats exactly, whatever the seed
    warm = lesson.generate(step_model, vocab, [""] * 3, 1.0, 0, 20, seed=7)
    assert warm == lesson.generate(step_model, vocab, [""] * 3, 1.0, 0, 20, seed=7)


# The run as a user runs it ----------------------------------------------------


def test_quick_run_then_generate_only(run_script, event_tags, assert_png, tweets_csv):
    result = run_script("fake_donald_trump", "--quick", "--data", tweets_csv)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, log_dir = result.run_dir, result.log_dir
    assert "skipped 0 broken rows and 0 empty" in result.stderr
    assert_png(run_dir / "learning_curves.png")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["script"] == "fake_donald_trump" and metrics["run"] == run_dir.name
    for key in ("val_bits_per_char", "generation_chars_per_second"):
        assert math.isfinite(metrics["results"][key]) and metrics["results"][key] > 0
    assert 0 < metrics["results"]["val_bits_per_char"] < 8
    assert metrics["settings"]["quick"] is True

    model = keras.models.load_model(run_dir / "model.keras")
    vocab = json.loads((run_dir / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    logits = model.predict(np.zeros((2, 7), np.int32), verbose=0)
    assert logits.shape == (2, 7, len(vocab)) and np.isfinite(logits).all()

    samples = (run_dir / "samples.txt").read_text(encoding="utf-8").splitlines()
    assert "machine-generated" in samples[0] and len(samples) == 2 + 3
    by_epoch = (run_dir / "samples_by_epoch.txt").read_text(encoding="utf-8")
    assert by_epoch.startswith("# epoch 1 (machine-generated")

    tags = event_tags(log_dir)
    assert {"epoch_bits_per_char", "epoch_loss"} <= tags["scalars"]
    assert "samples" in tags["text"]

    # A fresh process reads only the saved run: model.keras and vocab.json.
    result = run_script(
        "fake_donald_trump",
        "--generate-only",
        "--num-tweets", "4",
        "--temperature", "0",
        "--prime", "great",
        "--model", str(run_dir),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and len(set(lines)) == 1  # greedy: four equal tweets
    assert all(line.startswith("great") for line in lines)
    assert "machine-generated" in result.stderr


def test_a_nan_loss_is_one_line_and_leaves_no_run(tmp_path, capsys, tweets_csv):
    code, out, logs = run_main(
        tmp_path, "--quick", "--data", tweets_csv, "--learning-rate", "1e38"
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: the loss became NaN"), err[-3:]
    assert err[-1].endswith("lower --learning-rate and start again")
    # not even an empty lesson folder
    assert not (out / lesson.SCRIPT).exists() and not (logs / lesson.SCRIPT).exists()


def test_an_interrupt_before_the_first_checkpoint_keeps_nothing(
    tmp_path, capsys, tweets_csv, monkeypatch
):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(lesson, "train", interrupted)
    code, out, logs = run_main(tmp_path, "--quick", "--data", tweets_csv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err[-1] == "interrupted; nothing was saved yet: start again"
    assert not (out / lesson.SCRIPT).exists() and not (logs / lesson.SCRIPT).exists()
    code, out, logs = run_main(tmp_path, "--resume")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: no unfinished run in "), err[-1]


def test_resume_prints_and_uses_the_runs_own_settings(tmp_path, capsys, tweets_csv):
    code, out, logs = run_main(tmp_path, "--quick", "--data", tweets_csv)
    assert code == 0
    (run_dir,) = (out / lesson.SCRIPT).iterdir()
    (run_dir / "metrics.json").unlink()  # as if stopped after its last epoch
    capsys.readouterr()
    code, _, _ = run_main(tmp_path, "--resume", "--units", "7")
    err = capsys.readouterr().err
    settings = json.loads(err.split("settings: ", 1)[1].splitlines()[0])
    assert code == 0 and settings["quick"] is True and settings["units"] == 32
    assert (run_dir / "metrics.json").exists()


def test_generate_only_names_what_a_run_lacks(tmp_path, capsys):
    out = tmp_path / "out"
    run_dir = out / lesson.SCRIPT / "20260101-000000_00"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.save(run_dir / "model.keras")
    code, _, _ = run_main(tmp_path, "--generate-only")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].endswith(
        "_00: no vocab.json there; give a complete run with --model, or train again"
    ), err[-1]
    for damaged in ("{bad", "{}", '{"vocab": [1, 2]}'):
        (run_dir / "vocab.json").write_text(damaged)
        code, _, _ = run_main(tmp_path, "--generate-only")
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err[-1].endswith("vocab.json: damaged; train a new run")
    (run_dir / "vocab.json").write_text(json.dumps({"vocab": ["?", "\n", "a"]}))
    code, _, _ = run_main(tmp_path, "--generate-only")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].endswith(
        "_00: not a fake_donald_trump run; give one with --model"
    ), err[-1]


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        lesson.parse_args(["--help"])
    out = capsys.readouterr().out
    for flag in ("--temperature", "--top-k", "--prime", "--num-tweets", "--resume"):
        assert flag in out
