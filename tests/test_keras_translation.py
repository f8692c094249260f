"""keras_translation.py: parsing, splits, vocabularies and shapes, masking,
decoding (greedy and beam), bad input, and a --quick run as a user would."""

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest

import keras_translation as kt

# Parsing ------------------------------------------------------------------------


def test_parse_pairs_two_and_three_columns_and_bad_lines():
    lines = [
        "Go.\tVa !",
        "Hi.\tSalut !\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123",
        "",
        "   ",
        "no tab here",
        "\tempty English",
        "Empty French.\t ",
        "Run!\tCours !\r\n",
    ]
    pairs, skipped = kt.parse_pairs(lines)
    assert pairs == [("Go.", "Va !"), ("Hi.", "Salut !"), ("Run!", "Cours !")]
    assert skipped == 3  # blank lines are passed over, not counted


def test_two_and_three_column_files_and_the_zip_read_the_same(
    fra_pairs_2col, fra_pairs_3col, tmp_path
):
    two = kt.load_pairs(fra_pairs_2col, 1000)
    three = kt.load_pairs(fra_pairs_3col, 1000)
    assert two == three and len(two) == 60
    assert two[0] == ("Go.", "Va !") and two[-1] == ("Hold it!", "Ne bouge plus !")
    archive = tmp_path / "fra-eng.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("__MACOSX/fra-eng/._fra.txt", b"\x00\x05junk")
        zf.writestr("fra-eng/fra.txt", fra_pairs_2col.read_text(encoding="utf-8"))
    assert kt.load_pairs(archive, 5) == two[:5]


def test_malformed_lines_are_counted_once(tmp_path, capsys):
    path = tmp_path / "fra.txt"
    path.write_text("Go.\tVa !\nbroken\n\nHi.\tSalut !\nalso broken\n", "utf-8")
    assert kt.load_pairs(path, 10) == [("Go.", "Va !"), ("Hi.", "Salut !")]
    assert capsys.readouterr().err.count("skipped 2 malformed lines") == 1


# Splits -------------------------------------------------------------------------


def test_no_english_sentence_is_in_two_splits(fra_pairs_2col):
    pairs = kt.load_pairs(fra_pairs_2col, 1000)
    train, val, test = kt.split_pairs(pairs, 10, 0.2, seed=42)
    assert len(test) == 10
    assert sorted(train + val + test) == sorted(
        p for p in pairs if p in train + val + test
    )
    english = [{s for s, _ in split} for split in (train, val, test)]
    assert not english[0] & english[1]
    assert not english[0] & english[2]
    assert not english[1] & english[2]
    # The same seed draws the same split; another seed another.
    assert kt.split_pairs(pairs, 10, 0.2, seed=42) == (train, val, test)
    assert kt.split_pairs(pairs, 10, 0.2, seed=7)[2] != test


def test_test_pairs_come_from_the_first_lines(monkeypatch):
    pairs = [(f"e{i}", f"f{i}") for i in range(100)]
    monkeypatch.setattr(kt, "TEST_POOL", 20)
    train, val, test = kt.split_pairs(pairs, 5, 0.25, seed=0)
    assert len(test) == 5 and all(int(s[1:]) < 20 for s, _ in test)
    assert len(val) == round(0.25 * 95) and len(train) == 95 - len(val)


# Vocabularies, encoding and shapes ----------------------------------------------


def test_vocab_encoding_and_decoding():
    chars = kt.make_vocab(["Va !", "Salut !"])
    assert chars == [" ", "!", "S", "V", "a", "l", "t", "u"]
    assert kt.encode_target(["Va !"], chars) == [[1, 6, 7, 3, 4, 2]]
    assert kt.encode_source(["Va?"], chars) == [[1, 6, 5]]  # reversed; "?" unknown
    assert kt.decode_target([6, 7, 3, 4, 2, 7, 7], chars) == "Va !"
    assert kt.decode_target([6, 7, 0, 7], chars) == "Va"
    assert kt.pad([[3, 4], [5]]).tolist() == [[3, 4], [5, 0]]
    assert kt.pad([[3, 4, 5]], length=2).tolist() == [[3, 4]]


def test_dataset_shapes_and_the_teacher_forcing_shift():
    source = [[2, 3], [4, 5, 6], [7]]
    target = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 2]]
    ds = kt.make_dataset(source, target, batch_size=8, shuffle=False, seed=0)
    batches = list(ds)
    rows = {}
    for (src, dec_in), dec_out in batches:
        assert src.shape[0] == dec_in.shape[0] == dec_out.shape[0]
        assert dec_in.shape == dec_out.shape  # (batch, target_len - 1)
        for s, i, o in zip(src.numpy(), dec_in.numpy(), dec_out.numpy(), strict=True):
            rows[tuple(s[s > 0])] = (i.tolist(), o.tolist())
    assert rows[(2, 3)] == ([1, 5, 6, 0], [5, 6, 2, 0])
    assert rows[(7,)] == ([1, 8, 9, 10], [8, 9, 10, 2])


def test_model_shapes_and_padding_left_out_of_loss_and_accuracy():
    model = kt.build_model(10, 12, embedding_dim=4, units=8, lr=1e-3)
    source = np.array([[2, 3, 4], [5, 6, 0]])
    dec_in = np.array([[1, 5, 6], [1, 7, 0]])
    dec_out = np.array([[5, 6, 2], [7, 2, 0]])
    assert model([source, dec_in]).shape == (2, 3, 12)  # (batch, time, vocab)
    names = [layer.name for layer in model.layers]
    assert {"encoder_lstm", "decoder_lstm", "decoder_output"} <= set(names)
    short = model.evaluate([source, dec_in], dec_out, verbose=0, return_dict=True)
    # Five more padding steps: the loss and accuracy must not move.
    wide = [np.pad(a, ((0, 0), (0, 5))) for a in (source, dec_in, dec_out)]
    longer = model.evaluate(wide[:2], wide[2], verbose=0, return_dict=True)
    assert longer["loss"] == pytest.approx(short["loss"], rel=1e-5)
    assert longer["char_accuracy"] == pytest.approx(short["char_accuracy"])
    five = [pytest.approx(k / 5) for k in range(6)]  # 5 real characters
    assert short["char_accuracy"] in five


# Decoding -----------------------------------------------------------------------

TINY = [
    ("Go.", "Va !"),
    ("Hi.", "Salut !"),
    ("Run!", "Cours !"),
    ("Wow!", "Ça alors !"),
    ("Fire!", "Au feu !"),
    ("Help!", "À l'aide !"),
    ("Jump.", "Saute."),
    ("Stop!", "Arrête !"),
]


@pytest.fixture(scope="module")
def tiny_run():
    """A model trained to a low loss on eight pairs, with its settings."""
    kt.keras.utils.set_random_seed(0)
    src_chars = kt.make_vocab([s for s, _ in TINY])
    tgt_chars = kt.make_vocab([t for _, t in TINY])
    source = kt.pad(kt.encode_source([s for s, _ in TINY], src_chars))
    target = kt.pad(kt.encode_target([t for _, t in TINY], tgt_chars))
    model = kt.build_model(len(src_chars) + 2, len(tgt_chars) + 3, 16, 64, 1e-2)
    repeat = (40, 1)  # 40 steps an epoch: fewer epochs, less per-epoch overhead
    x = [np.tile(source, repeat), np.tile(target[:, :-1], repeat)]
    model.fit(x, np.tile(target[:, 1:], repeat), batch_size=8, epochs=4, verbose=0)
    settings = {
        "source_chars": src_chars,
        "target_chars": tgt_chars,
        "max_target_length": 14,
    }
    return model, settings


def test_decoding_gives_distinct_outputs_mostly_the_targets(tiny_run):
    model, settings = tiny_run
    outputs = kt.translate(model, [s for s, _ in TINY], settings)
    assert len(set(outputs)) == len(TINY)
    correct = sum(o == t for o, (_, t) in zip(outputs, TINY, strict=True))
    assert correct >= 6, outputs


def test_beam_of_width_one_equals_greedy(tiny_run):
    model, settings = tiny_run
    encode, step = kt.make_translator(model)
    source = kt.pad(kt.encode_source([s for s, _ in TINY], settings["source_chars"]))
    greedy = kt.greedy_decode(encode, step, source, 14)
    beam = kt.beam_decode(encode, step, source, 14, beam_width=1)
    texts = [kt.decode_target(r, settings["target_chars"]) for r in greedy]
    assert texts == [kt.decode_target(r, settings["target_chars"]) for r in beam]
    wide = kt.translate(model, [s for s, _ in TINY], settings, beam_width=3)
    assert sum(o == t for o, (_, t) in zip(wide, TINY, strict=True)) >= 6


# Bad input: one line, exit 2, nothing written ----------------------------------


def call(tmp_path, *args):
    out, logs = tmp_path / "out", tmp_path / "logs"
    return kt.main(["--output-dir", str(out), "--log-dir", str(logs), *args])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "missing.txt"], "--data missing.txt: no such file"),
        (["--units", "0"], "--units must be at least 1"),
        (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
        (["--beam-width", "0"], "--beam-width must be at least 1"),
        (["--translate", "Hi."], "no completed run in"),
        (["--translate", "Hi.", "--model", "nowhere"], "no model.keras there"),
    ],
)
def test_bad_usage(tmp_path, capsys, args, message):
    assert call(tmp_path, *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_unusable_or_too_small_data(tmp_path, capsys, fra_pairs_2col):
    empty = tmp_path / "empty.txt"
    empty.write_text("no tabs\nat all\n", encoding="utf-8")
    assert call(tmp_path, "--data", str(empty)) == 2
    assert "no English<TAB>French pairs" in capsys.readouterr().err
    assert call(tmp_path, "--data", str(fra_pairs_2col)) == 2
    assert "lower --test-size (at most 30)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "logs").exists()


def test_offline_without_data_names_address_path_and_flag(
    tmp_path, capsys, monkeypatch
):
    def offline(*args, cache_dir, cache_subdir, **kwargs):
        (Path(cache_dir) / cache_subdir).mkdir(parents=True)  # as get_file does
        raise Exception("URL fetch failure")

    monkeypatch.setattr(kt, "ROOT", tmp_path)
    monkeypatch.setattr(kt.keras.utils, "get_file", offline)
    assert call(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert kt.DATA_URL in err and str(tmp_path / "data" / "fra.txt") in err
    assert "--data" in err
    assert list((tmp_path / "data").iterdir()) == []  # no empty folder left


def test_the_download_is_extracted_once_and_found_again(
    tmp_path, monkeypatch, fra_pairs_2col
):
    """Keras' get_file extracts fra-eng.zip to <subdir>/fra-eng_extracted/ and
    returns that folder; the next run finds fra.txt there, with no download."""
    fetched = []

    def fake_get_file(fname, origin, extract, cache_dir, cache_subdir):
        fetched.append((fname, origin))
        extracted = Path(cache_dir) / cache_subdir / "fra-eng_extracted"
        (extracted / "fra-eng").mkdir(parents=True)
        (extracted / "fra-eng" / "fra.txt").write_bytes(fra_pairs_2col.read_bytes())
        return str(extracted)

    monkeypatch.setattr(kt, "ROOT", tmp_path)
    monkeypatch.setattr(kt.keras.utils, "get_file", fake_get_file)
    args = kt.parse_args([])
    first = kt.resolve_data(args)
    expected = tmp_path / "data" / "fra-eng" / "fra-eng_extracted" / "fra-eng"
    assert first == expected / "fra.txt"
    assert fetched == [("fra-eng.zip", kt.DATA_URL)]
    assert kt.resolve_data(args) == first and len(fetched) == 1


# A run as a user would ----------------------------------------------------------


def test_quick_run_then_translate_in_a_fresh_process(
    run_script, fra_pairs_3col, event_tags, assert_png
):
    args = ["--data", fra_pairs_3col, "--test-size", "10", "--batch-size", "8"]
    result = run_script("keras_translation", "--quick", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = result.run_dir
    assert_png(run_dir / "learning_curves.png")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("chrf", "bleu", "exact_match", "val_char_accuracy"):
        assert math.isfinite(metrics["results"][key]), key
    assert metrics["settings"]["quick"] is True
    rows = (run_dir / "translations.tsv").read_text("utf-8").splitlines()
    assert rows[0] == "input\treference\toutput" and len(rows) == 11
    settings = json.loads((run_dir / "settings.json").read_text("utf-8"))
    model = kt.keras.models.load_model(run_dir / "model.keras")
    probe = [np.array([[2, 3, 4]]), np.array([[1, 5]])]
    assert model(probe).shape == (1, 2, len(settings["target_chars"]) + 3)
    tags = event_tags(result.log_dir)
    assert {"epoch_loss", "epoch_char_accuracy"} <= tags["scalars"]
    assert "test_translations" in tags["text"]

    translated = run_script(
        "keras_translation", "--translate", "Go.", "--model", run_dir
    )
    assert translated.returncode == 0, translated.stderr[-3000:]
    assert len(translated.stdout.splitlines()) == 1
    assert "translating with" in translated.stderr
