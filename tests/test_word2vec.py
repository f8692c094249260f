"""Tests for word2vec.py: vocabulary, subsampling, pairs, noise, the negatives
check, the evaluations on known answers, t-SNE, the projector files,
--nearest, the download path with get_file replaced, bad input, and a --quick
run as a user would."""

import json
import math
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import word2vec as w2v  # noqa: E402


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never download: a fetch that is not replaced fails the test."""

    def refuse(fname, origin, **kwargs):
        pytest.fail(f"a test tried to download {origin}")

    monkeypatch.setattr(w2v.keras.utils, "get_file", refuse)


# Pure functions ------------------------------------------------------------------


def test_vocabulary_keeps_the_most_frequent_and_counts_the_unknown():
    words = "a b a c a b d".split()
    vocab, counts, ids = w2v.build_vocab(words, vocab_size=2)
    assert vocab == ["UNK", "a", "b"]
    assert counts.tolist() == [2, 3, 2]  # c and d became UNK
    assert ids.tolist() == [1, 2, 1, 0, 1, 2, 0]
    vocab, counts, _ = w2v.build_vocab(words, vocab_size=10)
    assert vocab == ["UNK", "a", "b", "c", "d"]  # ties in order of appearance
    assert counts.tolist() == [0, 3, 2, 1, 1]


def test_words_are_lower_cased_runs_of_letters(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("The cat's  HAT, 42 times!\nsnake_case café", encoding="utf-8")
    assert w2v.read_words(path) == [
        "the", "cat's", "hat", "42", "times", "snake", "case", "café",
    ]  # fmt: skip


def test_subsampling_follows_the_word2vec_formula():
    counts = np.array([5, 60, 30, 10])  # UNK, then 100 known tokens
    keep = w2v.keep_probabilities(counts, sample=0.1)
    expected = [0.0, (math.sqrt(6) + 1) / 6, (math.sqrt(3) + 1) / 3, 1.0]
    np.testing.assert_allclose(keep, expected)
    assert keep[1] == pytest.approx(0.5749149571)
    np.testing.assert_array_equal(w2v.keep_probabilities(counts, 0), [0, 1, 1, 1])


def test_noise_table_follows_the_three_quarter_power_without_unk():
    # 16 ** 0.75 = 8 and 1 ** 0.75 = 1: eight slots for word 1, one for word 2.
    assert w2v.noise_table([7, 16, 1], size=9).tolist() == [1] * 8 + [2]
    table = w2v.noise_table([5, 81, 16, 1], size=100)  # 27 : 8 : 1
    assert np.bincount(table).tolist() == [0, 75, 22, 3]


def test_pairs_match_the_hand_worked_example():
    centers, contexts = w2v.skipgram_pairs([10, 11, 12, 13], spans=[1, 2, 1, 1])
    pairs = sorted(zip(centers.tolist(), contexts.tolist(), strict=True))
    assert pairs == [
        (10, 11),
        (11, 10), (11, 12), (11, 13),
        (12, 11), (12, 13),
        (13, 12),
    ]  # fmt: skip
    centers, contexts = w2v.skipgram_pairs([1, 2], spans=[5, 5])  # past the end
    assert sorted(zip(centers, contexts, strict=True)) == [(1, 2), (2, 1)]


def test_epochs_are_seeded_and_differ_from_each_other():
    ids = np.arange(1, 201, dtype=np.int32) % 20 + 1
    keep = np.ones(21)
    keep[0] = 0.0
    table = w2v.noise_table(np.r_[0, np.ones(20)], size=100)  # words 1 to 20

    def epoch(seed, number):
        settings = (3, 16, 4, seed, number, table, 2)  # 4 batches of 16 a call
        pairs_ds, count = w2v.make_dataset(ids, keep, *settings)
        groups = list(pairs_ds.as_numpy_iterator())
        assert all(c.shape == (4, 16) and x.shape == (4, 16, 3) for c, x in groups)
        centers = np.concatenate([c.ravel() for c, _ in groups])
        candidates = np.concatenate([x.reshape(-1, 3) for _, x in groups])
        # The epoch is padded to whole calls with UNK centers, and only there.
        assert len(centers) == -(-count // 64) * 64
        assert (centers[:count] > 0).all() and (centers[count:] == 0).all()
        centers, candidates = centers[:count], candidates[:count]
        # Column 0 is each center's true neighbour: the words are consecutive
        # ids mod 20, so a neighbour within 3 differs from its center by 1-3.
        distance = (candidates[:, 0] - centers) % 20
        assert set(distance.tolist()) <= {1, 2, 3, 17, 18, 19}
        assert candidates[:, 1:].min() >= 1  # noise words, never UNK
        return np.concatenate([centers[:, None], candidates], axis=1)

    first = epoch(1, 0)
    np.testing.assert_array_equal(first, epoch(1, 0))
    assert not np.array_equal(first, epoch(1, 1))
    assert not np.array_equal(first, epoch(2, 0))
    # The noise differs from batch to batch within an epoch, too.
    assert not np.array_equal(first[:16, 2:], first[16:32, 2:])


def test_noise_words_are_random_slots_of_the_table_and_seeded():
    table = w2v.tf.constant(w2v.noise_table([9, 2, 1, 1], size=1000))
    noise = w2v.sample_noise(table, [4000, 5], [3, 0]).numpy()
    assert noise.shape == (4000, 5)
    shares = np.bincount(noise.ravel(), minlength=4) / noise.size
    assert shares[0] == 0  # UNK is never drawn
    np.testing.assert_allclose(
        shares[1:], np.array([2, 1, 1]) ** 0.75 / 3.68, atol=0.02
    )
    again = w2v.sample_noise(table, [4000, 5], [3, 0]).numpy()
    np.testing.assert_array_equal(noise, again)
    assert not np.array_equal(noise, w2v.sample_noise(table, [4000, 5], [3, 1]))


def test_model_scores_are_dot_products():
    model = w2v.build_model(6, 4, 0.1, 10)
    rng = np.random.default_rng(0)
    target, context = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    model.get_layer("target_embedding").set_weights([target])
    model.get_layer("context_embedding").set_weights([context])
    center, candidates = np.array([1, 2]), np.array([[3, 4, 5], [0, 1, 2]])
    scores = np.asarray(model([center, candidates]))  # (2, 3)
    expected = np.einsum("bd,bkd->bk", target[center], context[candidates])
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


def test_a_training_step_is_word2vecs_update_for_each_pair():
    model = w2v.build_model(5, 3, 0.5, 10)  # SGD, rate 0.5 at the first step
    rng = np.random.default_rng(1)
    target, context = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    model.get_layer("target_embedding").set_weights([target])
    model.get_layer("context_embedding").set_weights([context])
    center, candidates = np.array([1, 2]), np.array([[3, 4], [0, 4]])
    # One call trains a group of batches in turn: this pair of pairs, then a
    # batch of padding (center UNK), which must change nothing.
    padding = np.zeros((2, 2), np.int32)
    mean_loss = w2v.make_train_step(model)(
        np.stack([center, padding[:, 0]]), np.stack([candidates, padding + 4])
    )

    # By hand: each (center, candidate) pair is a logistic regression, label 1
    # for the neighbour (column 0) and 0 for noise; its error moves both rows.
    new_target, new_context, losses = target.copy(), context.copy(), []
    for c, row in zip(center, candidates, strict=True):
        for k, label in zip(row, [1.0, 0.0], strict=True):
            p = 1 / (1 + np.exp(-target[c] @ context[k]))
            losses.append(-np.log(p if label else 1 - p))
            new_target[c] -= 0.5 * (p - label) * context[k]
            new_context[k] -= 0.5 * (p - label) * target[c]
    assert float(mean_loss) == pytest.approx(sum(losses) / 2, rel=1e-5)
    got = model.get_layer("target_embedding").get_weights()[0]
    np.testing.assert_allclose(got, new_target, rtol=1e-5, atol=1e-6)
    got = model.get_layer("context_embedding").get_weights()[0]
    np.testing.assert_allclose(got, new_context, rtol=1e-5, atol=1e-6)


def test_nce_scores_each_candidate_against_its_noise_odds():
    counts = np.array([3, 16, 1, 81])  # UNK, then q = 8 : 1 : 27 (power 0.75)
    log_odds = w2v.noise_log_odds(counts, negatives=2)
    np.testing.assert_allclose(
        log_odds[1:], np.log(2 * np.array([8, 1, 27]) / 36), rtol=1e-6
    )
    assert log_odds[0] == -np.inf  # UNK is never a candidate
    model = w2v.build_model(4, 2, 0.1, 10)
    model.get_layer("target_embedding").set_weights([np.ones((4, 2)) * 0.5])
    model.get_layer("context_embedding").set_weights([np.eye(4, 2)])
    center, candidates = np.array([1]), np.array([[1, 3, 2]])  # scores .5 0 0
    nce = w2v.sampled_loss(model, center, candidates, w2v.tf.constant(log_odds))
    logits = np.array([0.5, 0.0, 0.0]) - log_odds[[1, 3, 2]]
    by_hand = np.log1p(np.exp(-logits[0])) + np.log1p(np.exp(logits[1:])).sum()
    assert float(nce[0]) == pytest.approx(by_hand, rel=1e-5)
    neg = w2v.sampled_loss(model, center, candidates)  # no correction
    by_hand = np.log1p(np.exp(-0.5)) + 2 * np.log(2)
    assert float(neg[0]) == pytest.approx(by_hand, rel=1e-5)


def country_vectors():
    """Cities are `capital + their country`, kings and queens `royal + sex`."""
    names = ["athens", "paris", "rome", "berlin", "madrid", "lisbon"]
    countries = ["greece", "france", "italy", "germany", "spain", "portugal"]
    vocab = names + countries + ["king", "queen", "man", "woman", "the", "of"]
    eye = np.eye(len(vocab))
    capital, royal, male, female = eye[12], eye[13], eye[14], eye[15]
    vectors = [capital + eye[6 + i] for i in range(6)] + [eye[6 + i] for i in range(6)]
    vectors += [royal + male, royal + female, male, female, eye[16], eye[17]]
    return np.array(vectors), vocab


def test_analogies_find_the_known_answers(analogy_file):
    questions, skipped = w2v.read_analogies(analogy_file)
    assert len(questions) == 33 and skipped == 0
    assert questions[0] == ("athens", "greece", "paris", "france")
    vectors, vocab = country_vectors()
    accuracy, coverage, asked = w2v.analogy_accuracy(vectors, vocab, questions)
    assert (accuracy, asked) == (1.0, 32)  # "unicorn horn" is out of vocabulary
    assert coverage == pytest.approx(32 / 33)
    # Swap the royal vectors: both family questions now fail.
    vectors[[12, 13]] = vectors[[13, 12]]
    accuracy, _, _ = w2v.analogy_accuracy(vectors, vocab, questions, chunk=7)
    assert accuracy == pytest.approx(30 / 32)


def test_wordsim_spearman_on_a_known_order(wordsim_file):
    pairs, skipped = w2v.read_wordsim(wordsim_file)
    assert pairs[0] == ("king", "queen", 8.58) and len(pairs) == 7 and skipped == 0
    # Angles chosen so that the cosines rank the pairs as people did.
    angle = {"king": 0, "queen": 0.1, "man": 1, "woman": 1.2, "paris": 2,
             "france": 2.3, "rome": 3, "italy": 3.4, "of": 1.2, "the": 4,
             "greece": 5.6}  # fmt: skip
    vocab = list(angle)
    vectors = np.array([[math.cos(a), math.sin(a)] for a in angle.values()])
    rho, coverage, used = w2v.wordsim_spearman(vectors, vocab, pairs)
    assert (rho, used) == (pytest.approx(1.0), 6)
    assert coverage == pytest.approx(6 / 7)
    flipped = [(a, b, -score) for a, b, score in pairs]
    assert w2v.wordsim_spearman(vectors, vocab, flipped)[0] == pytest.approx(-1.0)


def test_an_evaluation_with_nothing_to_score_gives_none(capsys):
    vocab = ["UNK", "king", "queen", "man"]
    vectors = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    analogies = ([("athens", "greece", "paris", "france")], 0)  # none known
    wordsim = ([("king", "queen", 8.0), ("king", "man", 6.0)], 1)  # equal cosines
    results = w2v.evaluate(vectors, vocab, analogies, wordsim)
    assert results["analogy_accuracy"] is None and results["analogy_questions"] == 0
    assert results["wordsim_spearman"] is None and results["wordsim_pairs"] == 2
    err = capsys.readouterr().err
    assert "nan" not in err
    assert "analogies: nothing to score: none of the 1 questions" in err
    assert "WordSim-353: nothing to score: the cosines or the scores" in err
    assert "(1 malformed row skipped)" in err
    results = w2v.evaluate(vectors, vocab, None, (wordsim[0][:1], 0))
    assert results["wordsim_spearman"] is None and "analogy_accuracy" not in results
    assert "only 1 of the 1 pairs have both words" in capsys.readouterr().err


def test_metrics_stay_valid_json_when_nothing_is_scored(
    tmp_path, capsys, corpus_txt, analogy_file, wordsim_file
):
    out = tmp_path / "out"
    argv = ["--data", corpus_txt, "--vocab-size", 2, "--negatives", 1,
            "--epochs", 1, "--embedding-dim", 4, "--analogies", analogy_file,
            "--wordsim", wordsim_file, "--output-dir", out,
            "--log-dir", tmp_path / "logs"]  # fmt: skip
    assert w2v.main([str(a) for a in argv]) == 0
    (run_dir,) = (out / "word2vec").iterdir()

    def refuse(constant):
        raise ValueError(f"metrics.json holds {constant}: not JSON")

    text = (run_dir / "metrics.json").read_text()
    results = json.loads(text, parse_constant=refuse)["results"]
    assert results["analogy_accuracy"] is None and results["analogy_coverage"] == 0
    assert results["wordsim_spearman"] is None and results["wordsim_pairs"] == 0
    captured = capsys.readouterr()
    assert "nan" not in captured.err and "nan" not in captured.out
    assert "analogy accuracy nothing to score (coverage 0.0000)" in captured.out


def test_nearest_words_leave_out_the_word_and_unk():
    vocab = ["UNK", "a", "b", "c"]
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    near = w2v.nearest_words(vectors, vocab, "a", 2)
    assert [w for w, _ in near] == ["c", "b"]
    assert near[0][1] == pytest.approx(1 / math.sqrt(1.01))
    # More than there are: every other known word once, never "a" or UNK.
    near = w2v.nearest_words(vectors, vocab, "a", 100)
    assert [w for w, _ in near] == ["c", "b"]
    vectors[0] = vectors[1]  # UNK as close as can be: still left out
    assert [w for w, _ in w2v.nearest_words(vectors, vocab, "b", 100)] == ["c", "a"]


def test_counts_in_messages_agree_with_their_nouns():
    assert w2v.plural(1, "word") == "1 word"
    assert w2v.plural(0, "word") == "0 words"
    assert w2v.plural(33, "malformed line") == "33 malformed lines"


# Pictures and the projector --------------------------------------------------------


def test_tsne_with_fewer_words_than_the_default_perplexity(tmp_path, assert_png):
    args = w2v.parse_args(["--output-dir", str(tmp_path)])
    w2v.start(args)
    vectors = np.random.default_rng(0).normal(size=(10, 8))
    words = [f"w{i}" for i in range(10)]
    perplexity = w2v.plot_tsne(vectors, words, tmp_path / "tsne.png", args)
    assert perplexity == 9.0
    assert_png(tmp_path / "tsne.png")


def test_projector_files_let_tensorboard_show_the_words(tmp_path):
    run_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    run_dir.mkdir()
    log_dir.mkdir()
    vectors = np.arange(12, dtype="float32").reshape(3, 4)
    w2v.save_embeddings(run_dir, log_dir, vectors, ["UNK", "king", "queen"])
    config = (log_dir / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "embedding/.ATTRIBUTES/VARIABLE_VALUE"' in config
    assert 'metadata_path: "metadata.tsv"' in config
    assert (log_dir / "metadata.tsv").read_text() == "UNK\nking\nqueen\n"
    reader = w2v.tf.train.load_checkpoint(str(log_dir))
    saved = reader.get_tensor("embedding/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(saved, vectors)
    rows = (run_dir / "vectors.tsv").read_text().splitlines()
    assert rows[1] == "4.000000\t5.000000\t6.000000\t7.000000"
    assert (run_dir / "metadata.tsv").read_text().splitlines() == [
        "UNK",
        "king",
        "queen",
    ]


# Inference on a saved run -----------------------------------------------------------


def saved_run(tmp_path):
    """A completed run made by hand: king and queen point the same way."""
    run_dir = tmp_path / "output" / "word2vec" / "20260101-000000_00"
    run_dir.mkdir(parents=True)
    model = w2v.build_model(5, 2, 0.025, 10)
    vectors = np.array([[0, 1], [1, 0], [0.9, 0.1], [-1, 0], [0.5, 0.5]])
    model.get_layer("target_embedding").set_weights([vectors])
    model.optimizer.build(model.trainable_variables)  # as after training
    w2v.save_model(model, run_dir / "model.keras")
    (run_dir / "metadata.tsv").write_text("UNK\nking\nqueen\nbeggar\nprince\n")
    (run_dir / "metrics.json").write_text("{}")
    return run_dir


def test_nearest_prints_a_saved_runs_neighbours_on_stdout(tmp_path, capsys):
    run_dir = saved_run(tmp_path)
    argv = ["--output-dir", str(tmp_path / "output"), "--num-nearest", "3"]
    assert w2v.main(["--nearest", "King", *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == ["queen", "prince", "beggar"]
    assert out[0] == f"queen\t{0.9 / math.hypot(0.9, 0.1):.4f}"
    assert w2v.main(["--nearest", "unicorn", "--model", str(run_dir)]) == 2
    assert capsys.readouterr().err.strip().endswith("(4 words)")


def test_nearest_lists_at_most_the_other_known_words(tmp_path, capsys):
    run_dir = saved_run(tmp_path)
    argv = ["--nearest", "king", "--num-nearest", "100000", "--model", str(run_dir)]
    assert w2v.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == ["queen", "prince", "beggar"]
    assert not any("inf" in line for line in out)


def test_nearest_on_a_run_that_is_not_word2vecs_is_one_line(tmp_path, capsys):
    run_dir = tmp_path / "other_run"
    run_dir.mkdir()
    keras, layers = w2v.keras, w2v.layers
    chars = keras.Sequential(
        [keras.Input((None,), dtype="int32"), layers.Embedding(9, 4, name="chars")]
    )
    chars.save(run_dir / "model.keras")  # another lesson's run: no metadata.tsv
    argv = ["--nearest", "king", "--model", str(run_dir)]
    assert w2v.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: --model {run_dir}: no metadata.tsv there; give a run folder "
        "of word2vec.py"
    ]
    (run_dir / "metadata.tsv").write_text("UNK\nking\n")
    assert w2v.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        f"error: {run_dir}: not a word2vec run (its model has no target_embedding "
        "layer); give a run of word2vec.py with --model"
    )
    # A word2vec model beside another run's words: the counts disagree.
    run_dir = saved_run(tmp_path)
    (run_dir / "metadata.tsv").write_text("UNK\nking\nqueen\n")
    assert w2v.main(["--nearest", "king", "--model", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "metadata.tsv lists 3 words but the model has 5 vectors" in err


# Data resolution and bad input ------------------------------------------------------


def test_download_path_with_get_file_replaced(
    tmp_path, monkeypatch, corpus_zip, analogy_file, capsys
):
    """No --data: text8.zip is fetched into data/word2vec/; the analogies come
    down too, WordSim-353 fails, and the run (NCE this time) trains and says
    what it skipped."""
    monkeypatch.setattr(w2v, "ROOT", tmp_path / "repo")
    fetched = []

    def fake_get_file(fname, origin, cache_dir, cache_subdir, file_hash=None):
        fetched.append((fname, origin, file_hash))
        if fname == "wordsim353.tsv":
            raise ConnectionError("offline")
        source = corpus_zip if fname == "text8.zip" else analogy_file
        target = Path(cache_dir) / cache_subdir / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        return str(target)

    monkeypatch.setattr(w2v.keras.utils, "get_file", fake_get_file)
    out_dir = tmp_path / "out"
    argv = ["--quick", "--loss", "nce", "--output-dir", str(out_dir)]
    assert w2v.main([*argv, "--log-dir", str(tmp_path / "l")]) == 0
    assert [f[1] for f in fetched] == [
        w2v.TEXT8_URL, w2v.ANALOGIES_URL, w2v.WORDSIM_URL,
    ]  # fmt: skip
    assert fetched[2][2] == w2v.WORDSIM_SHA256
    assert (tmp_path / "repo" / "data" / "word2vec" / "text8.zip").exists()
    captured = capsys.readouterr()
    assert "wordsim353.tsv" in captured.err and "--wordsim" in captured.err
    assert f"cannot download {w2v.WORDSIM_URL} (ConnectionError: offline)" in (
        captured.err
    )
    assert "skipped: WordSim-353" in captured.out
    (run_dir,) = (out_dir / "word2vec").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["settings"]["loss"] == "nce"
    results = metrics["results"]
    assert results["wordsim_spearman"] is None
    assert 0 <= results["analogy_accuracy"] <= 1


def test_offline_without_data_names_the_address_path_and_flag(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(w2v, "ROOT", tmp_path)

    def offline(*args, cache_dir, cache_subdir, **kwargs):
        (Path(cache_dir) / cache_subdir).mkdir(parents=True)  # as get_file does
        raise ConnectionError("offline")

    monkeypatch.setattr(w2v.keras.utils, "get_file", offline)
    assert w2v.main(["--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert w2v.TEXT8_URL in err and "--data" in err
    assert "(ConnectionError: offline)" in err  # the reason, not just its type
    assert str(tmp_path / "data" / "word2vec" / "text8.zip") in err
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "data" / "word2vec").exists()  # no empty folder


def bad_run(tmp_path, capsys, *argv):
    out, logs = tmp_path / "out", tmp_path / "logs"
    code = w2v.main(["--quick", "--output-dir", str(out), "--log-dir", str(logs)]
                    + [str(a) for a in argv])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert not out.exists() and not logs.exists(), "an error wrote a run folder"
    return code, err[-1]


def test_too_many_negatives_is_one_line_before_training(tmp_path, capsys, corpus_txt):
    code, err = bad_run(tmp_path, capsys, "--data", corpus_txt, "--negatives", 40)
    assert code == 2
    assert err == (
        "error: --negatives 40 is more than the vocabulary of 33 words allows; "
        "lower --negatives"
    )
    argv = ["--data", corpus_txt, "--vocab-size", 1]  # no room for a noise word
    code, err = bad_run(tmp_path, capsys, *argv)
    assert code == 2
    assert err == (
        "error: --negatives 5 is more than the vocabulary of 1 word allows; "
        "raise --vocab-size"
    )


def write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return path


def test_a_zip_is_read_only_when_it_holds_one_file(tmp_path):
    # Folders, macOS's __MACOSX/ copies and hidden files do not count.
    path = write_zip(tmp_path / "mac.zip", {
        "corpus/": "", "corpus/.DS_Store": "junk", "__MACOSX/corpus/._text": "junk",
        "corpus/text": "the cat sat",
    })  # fmt: skip
    assert w2v.read_words(path) == ["the", "cat", "sat"]
    # A README beside the text, or Brown's 500 files: which one? Never a guess.
    path = write_zip(tmp_path / "two.zip", {"README.txt": "hi", "corpus.txt": "a b"})
    with pytest.raises(w2v.UsageError) as err:
        w2v.read_words(path)
    assert str(err.value) == (
        f"{path}: the zip holds 2 files (README.txt, corpus.txt); pass one text "
        "file, or a zip holding one"
    )
    path = write_zip(tmp_path / "many.zip", {f"brown/c{i}": "w" for i in range(5)})
    names = r"brown/c0, brown/c1, brown/c2, \.\.\."
    with pytest.raises(w2v.UsageError, match=rf"holds 5 files \({names}\); pass one"):
        w2v.read_words(path)
    path = write_zip(tmp_path / "none.zip", {"corpus/": ""})
    with pytest.raises(w2v.UsageError, match="none.zip: the zip holds no file; pass"):
        w2v.read_words(path)
    path = write_zip(tmp_path / "latin1.zip", {"text": "caf\xe9".encode("latin-1")})
    with pytest.raises(w2v.UsageError, match=r"latin1.zip: text: not UTF-8 text"):
        w2v.read_words(path)


def test_a_damaged_zip_says_so(tmp_path, capsys, corpus_zip, analogy_file):
    raw = corpus_zip.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(raw[: len(raw) // 2])  # a download cut short
    code, err = bad_run(tmp_path, capsys, "--data", cut, "--analogies", analogy_file)
    assert code == 2
    assert err == (
        f"error: {cut}: a damaged zip (BadZipFile: File is not a zip file); "
        "download it again, or pass another file"
    )
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF  # a bad byte inside the compressed text
    (tmp_path / "flipped.zip").write_bytes(flipped)
    with pytest.raises(w2v.UsageError, match="flipped.zip: a damaged zip"):
        w2v.read_words(tmp_path / "flipped.zip")


def test_evaluation_files_with_a_bad_byte_say_where(tmp_path, wordsim_file):
    raw = wordsim_file.read_bytes().replace(b"paris", b"par\xefs")  # line 5
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes(raw)
    offset = raw.index(b"\xef")
    with pytest.raises(w2v.UsageError) as err:
        w2v.read_wordsim(bad)
    assert str(err.value) == (
        f"{bad}: not UTF-8 text (a bad byte at {offset}, on line 5); pass "
        "wordsim353.tsv (UTF-8 text, word1<TAB>word2<TAB>score)"
    )
    bad.write_bytes(b": family\nman king woman queen\nman king woman qu\xe9en\n")
    where = r"not UTF-8 text \(a bad byte at 47, on line 3\); pass questions-words"
    with pytest.raises(w2v.UsageError, match=where):
        w2v.read_analogies(bad)


def test_a_few_malformed_records_are_skipped_and_counted(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text(": s\na b c d\na b c\nb c d e\n\ne f g h\n")
    assert w2v.read_analogies(path) == ([tuple("abcd"), tuple("bcde"),
                                         tuple("efgh")], 1)  # fmt: skip
    path.write_text("# c\nKing\tqueen\t8.5\tx\nman\twoman\nof\tthe\tnan\na\tb\t1\n")
    assert w2v.read_wordsim(path) == ([("king", "queen", 8.5), ("a", "b", 1.0)], 2)


@pytest.mark.parametrize(
    ("flag_args", "message"),
    [
        (["--data", "missing.txt"], "--data missing.txt: no such file"),
        (["--data", "{empty}"], "no words in it"),
        (["--data", "{binary}"], "not UTF-8 text (a bad byte at 0, on line 1)"),
        (["--data", "/dev/null"], "--data /dev/null: not a regular file"),
        (["--data", "{folder}"], "folder: a folder, not a file"),
        (["--data", "{corpus}", "--analogies", "nope.txt"], "--analogies nope.txt"),
        (["--data", "{corpus}", "--analogies", "{folder}"], "a folder, not a file"),
        (["--data", "{corpus}", "--wordsim", "/dev/null"], "not a regular file"),
        (["--data", "{corpus}", "--analogies", "{empty}"],
         "empty.txt: no analogy questions and 1 malformed line, the first on line 1; "
         "pass questions-words.txt (UTF-8 text, lines of four words a b c d)"),
        (["--data", "{corpus}", "--analogies", "{binary}"],
         "garbage.bin: not UTF-8 text (a bad byte at 0, on line 1)"),
        # UTF-8, but not questions: the wrong file, even with a few lines of four.
        (["--data", "{corpus}", "--analogies", "{mostly_bad}"],
         "mostly_bad.txt: only 2 analogy questions and 3 malformed lines, the first "
         "on line 2"),
        (["--data", "{corpus}", "--analogies", "{wordsim}"],  # one line of four
         "only 1 analogy question and 8 malformed lines, the first on line 1"),
        (["--data", "{corpus}", "--wordsim", "{empty}"], "no word pairs"),
        (["--data", "{corpus}", "--wordsim", "{analogies}"],
         "no word pairs and 35 malformed lines, the first on line 1"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path, capsys, corpus_txt, analogy_file, wordsim_file, flag_args, message
):
    empty = tmp_path / "empty.txt"
    empty.write_text("  ,, ;\n")
    binary = tmp_path / "garbage.bin"
    binary.write_bytes(bytes([0xFF, 0xFE, 0x00, 0x81] * 64))
    (tmp_path / "folder").mkdir()
    mostly_bad = tmp_path / "mostly_bad.txt"
    mostly_bad.write_bytes(b"athens greece paris france\n\x00\x01\n\x02 \x03\n"
                           b"rome italy berlin germany\n\x7f\n")  # fmt: skip
    names = dict(empty=empty, corpus=corpus_txt, binary=binary, mostly_bad=mostly_bad,
                 folder=tmp_path / "folder", wordsim=wordsim_file,
                 analogies=analogy_file)  # fmt: skip
    argv = [a.format(**names) for a in flag_args]
    if "--data" in argv:  # both evaluation files given: nothing to download
        argv += [] if "--analogies" in argv else ["--analogies", str(analogy_file)]
        argv += [] if "--wordsim" in argv else ["--wordsim", str(wordsim_file)]
    code, err = bad_run(tmp_path, capsys, *argv)
    assert code == 2 and err.startswith("error: ") and message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window", "0"], "--window must be at least 1, got 0"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--negatives", "-1"], "--negatives must be at least 1, got -1"),
        (["--embedding-dim", "1"], "--embedding-dim must be at least 2, got 1"),
        (["--tsne-words", "1"], "--tsne-words must be at least 2, got 1"),
        (["--learning-rate", "0"], "--learning-rate must be a positive number, "
                                   "got 0.0"),
        (["--learning-rate", "inf"], "--learning-rate must be a positive number, "
                                     "got inf"),
        (["--sample", "nan"], "--sample must be a number 0 or more, got nan"),
        (["--nearest", "king", "--num-nearest", "0"],
         "--num-nearest must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_settings_out_of_range_are_one_line_before_anything(
    tmp_path, capsys, argv, message
):
    # --quick shrinks the run only after the checks: --epochs 0 is still wrong.
    out, logs = tmp_path / "out", tmp_path / "logs"
    folders = ["--output-dir", str(out), "--log-dir", str(logs)]
    assert w2v.main(["--quick", *argv, *folders]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"  # no usage block
    assert not out.exists() and not logs.exists()


# A run as a user would ---------------------------------------------------------------


def test_quick_run_as_a_user_would(
    run_script, corpus_zip, analogy_file, wordsim_file, event_tags, assert_png
):
    result = run_script(
        "word2vec", "--quick", "--data", corpus_zip,
        "--analogies", analogy_file, "--wordsim", wordsim_file,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir, log_dir = result.run_dir, result.log_dir
    assert_png(run_dir / "tsne.png")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("analogy_accuracy", "analogy_coverage", "wordsim_spearman"):
        assert math.isfinite(metrics["results"][key]), key
    assert metrics["results"]["words_per_second"] > 0
    assert metrics["throughput"]["value"] > 0 and metrics["settings"]["quick"]
    model = w2v.keras.models.load_model(run_dir / "model.keras")
    scores = model.predict([np.array([1, 2]), np.array([[3, 4, 5], [6, 7, 8]])])
    assert scores.shape == (2, 3) and np.isfinite(scores).all()
    vocab = (run_dir / "metadata.tsv").read_text().splitlines()
    assert vocab[0] == "UNK" and len(vocab) == 34
    vectors = np.loadtxt(run_dir / "vectors.tsv", delimiter="\t")
    assert vectors.shape == (34, 32)
    tags = event_tags(log_dir)
    assert {"loss", "epoch_loss", "words_per_second"} <= tags["scalars"]
    assert "nearest_words" in tags["text"] and "tsne" in tags["images"]
    assert (log_dir / "projector_config.pbtxt").exists()
    assert "king: " in result.stdout
    # The suggested --nearest command names a word this run knows.
    suggested = result.stdout.split("nearest words: python word2vec.py --nearest ")
    assert suggested[1].split()[0] in vocab


def test_interrupted_run_resumes_from_its_last_epoch(
    tmp_path, monkeypatch, capsys, corpus_txt, analogy_file, wordsim_file
):
    folders = ["--output-dir", str(tmp_path / "out"), "--log-dir", str(tmp_path / "l")]
    argv = ["--data", corpus_txt, "--epochs", 2, "--vocab-size", 50,
            "--embedding-dim", 8, "--batch-size", 256, "--tsne-words", 20,
            "--analogies", analogy_file, "--wordsim", wordsim_file]  # fmt: skip
    report = w2v.probe_report

    def interrupted(*args):
        raise KeyboardInterrupt  # Ctrl-C just after epoch 1's checkpoint

    monkeypatch.setattr(w2v, "probe_report", interrupted)
    assert w2v.main([*map(str, argv), *folders]) == 130
    assert "--resume" in capsys.readouterr().err
    (run_dir,) = (tmp_path / "out" / "word2vec").iterdir()
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 1
    assert not (run_dir / "metrics.json").exists()

    monkeypatch.setattr(w2v, "probe_report", report)
    assert w2v.main(["--resume", *folders]) == 0  # the saved settings come back
    assert "resuming" in capsys.readouterr().err
    assert json.loads((run_dir / "state.json").read_text())["epoch"] == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["settings"]["embedding_dim"] == 8
    assert [p.name for p in (tmp_path / "out" / "word2vec").iterdir()] == [run_dir.name]
