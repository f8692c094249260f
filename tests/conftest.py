"""Shared fixtures: tiny datasets in the real formats, and readers of what a
run writes (TensorBoard event files, PNG pictures)."""

import gzip
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


# Running the scripts ---------------------------------------------------------


@pytest.fixture
def run_script(tmp_path):
    """Run a lesson as a user would: a subprocess, from another folder, with
    its output and log folders under tmp_path."""
    output_root, log_root = tmp_path / "output", tmp_path / "logs"

    def run(script, *args, timeout=300):
        cmd = [sys.executable, str(ROOT / f"{script}.py")]
        cmd += ["--output-dir", str(output_root), "--log-dir", str(log_root)]
        cmd += [str(arg) for arg in args]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
        result = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
        runs = sorted((output_root / script).glob("*_*"))
        result.output_root, result.log_root = output_root, log_root
        result.run_dir = runs[-1] if runs else None
        result.log_dir = log_root / script / runs[-1].name if runs else None
        return result

    return run


@pytest.fixture
def event_tags():
    """Read every TensorBoard event file under a folder and return the tag
    names by kind: scalars, text and images (plus whether a graph is there)."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # summary_iterator's deprecation notice

    def read(log_dir):
        tags = {"scalars": set(), "text": set(), "images": set(), "graph": False}
        for path in Path(log_dir).rglob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                if event.graph_def:
                    tags["graph"] = True
                for value in event.summary.value:
                    plugin = value.metadata.plugin_data.plugin_name
                    if plugin.startswith("graph"):
                        tags["graph"] = True  # a traced tf.function
                    elif value.HasField("simple_value") or plugin == "scalars":
                        tags["scalars"].add(value.tag)
                    elif plugin == "text":
                        tags["text"].add(value.tag)
                    elif plugin == "images" or value.HasField("image"):
                        tags["images"].add(value.tag)
        return tags

    return read


@pytest.fixture
def assert_png():
    """Check that a file is a PNG that decodes to a picture of some size."""
    from PIL import Image

    def check(path):
        path = Path(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        with Image.open(path) as image:
            image.load()
            assert image.width > 50 and image.height > 50, f"{path} is tiny"

    return check


# Fashion-MNIST: IDX files, gzip-compressed ------------------------------------


def _write_idx(path, array):
    """Write a uint8 array as an IDX file (magic 0x0000 08 <ndim>), gzipped."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 + array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())
    return Path(path)


@pytest.fixture
def write_idx():
    return _write_idx


def _fashion_split(rng, count):
    """Images whose class shows as a bright band of rows at a class's height,
    so a model reading rows can learn it quickly."""
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(count, 28, 28))
    for image, label in zip(images, labels, strict=True):
        image[2 + 2 * label : 5 + 2 * label, 4:24] = 220
    return images.astype(np.uint8), labels.astype(np.uint8)


@pytest.fixture
def fashion_dir(tmp_path):
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 200), ("t10k", 50)):
        images, labels = _fashion_split(rng, count)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


# Tatoeba English-French pairs -------------------------------------------------

PAIRS = [
    ("Go.", "Va !"),
    ("Go.", "Marche."),
    ("Hi.", "Salut !"),
    ("Hi.", "Salut."),
    ("Run!", "Cours !"),
    ("Run!", "Courez !"),
    ("Wow!", "Ça alors !"),
    ("Fire!", "Au feu !"),
    ("Help!", "À l'aide !"),
    ("Jump.", "Saute."),
    ("Stop!", "Ça suffit !"),
    ("Stop!", "Arrête-toi !"),
    ("Wait!", "Attends !"),
    ("Wait!", "Attendez !"),
    ("Go on.", "Poursuis."),
    ("Hello!", "Bonjour !"),
    ("I see.", "Je comprends."),
    ("I try.", "J'essaye."),
    ("I won!", "J'ai gagné !"),
    ("Oh no!", "Oh non !"),
    ("Attack!", "Attaque !"),
    ("Cheers!", "Santé !"),
    ("Get up.", "Lève-toi."),
    ("Go now.", "Va, maintenant."),
    ("Got it!", "Compris !"),
    ("Hop in.", "Monte."),
    ("Hug me.", "Serre-moi dans tes bras !"),
    ("I fell.", "Je suis tombé."),
    ("I know.", "Je sais."),
    ("I left.", "Je suis parti."),
    ("I lied.", "J'ai menti."),
    ("I lost.", "J'ai perdu."),
    ("I'm 19.", "J'ai 19 ans."),
    ("I'm OK.", "Je vais bien."),
    ("Listen.", "Écoutez !"),
    ("No way!", "En aucun cas."),
    ("Really?", "Vrai ?"),
    ("Thanks.", "Merci !"),
    ("We try.", "On essaye."),
    ("We won.", "Nous avons gagné."),
    ("Ask Tom.", "Demande à Tom."),
    ("Be calm.", "Sois calme !"),
    ("Be fair.", "Sois juste !"),
    ("Be kind.", "Sois gentil."),
    ("Be nice.", "Sois gentille !"),
    ("Beat it.", "Dégage !"),
    ("Call me.", "Appelle-moi !"),
    ("Come in.", "Entrez !"),
    ("Come on!", "Allez !"),
    ("Drop it!", "Laisse tomber !"),
    ("Get Tom.", "Va chercher Tom."),
    ("Get out!", "Sors !"),
    ("Go away!", "Pars !"),
    ("Go home.", "Rentre à la maison."),
    ("Goodbye!", "Au revoir !"),
    ("Hang on!", "Tiens bon !"),
    ("He came.", "Il est venu."),
    ("He runs.", "Il court."),
    ("Help me.", "Aide-moi."),
    ("Hold it!", "Ne bouge plus !"),
]


@pytest.fixture
def fra_pairs_2col(tmp_path):
    """English<TAB>French, as the fra.txt of 2019 and the Keras example."""
    path = tmp_path / "fra.txt"
    lines = [f"{english}\t{french}" for english, french in PAIRS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def fra_pairs_3col(tmp_path):
    """Newer releases add a third column: the Tatoeba attribution."""
    path = tmp_path / "fra3.txt"
    credit = "CC-BY 2.0 (France) Attribution: tatoeba.org #{n} (CM) & #{m} (Lulu)"
    lines = [
        f"{english}\t{french}\t" + credit.format(n=2877272 + i, m=1158250 + i)
        for i, (english, french) in enumerate(PAIRS)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# Tweets -----------------------------------------------------------------------


@pytest.fixture
def tweets_csv(tmp_path):
    """A CSV with the archive's columns `text,created_at`, entities and links."""
    rng = np.random.default_rng(1)
    words = (
        "great america jobs people country big win thank you today news "
        "fake media tremendous crowd wall trade deal border strong vote"
    ).split()
    rows = ["text,created_at"]
    for i in range(80):
        text = " ".join(rng.choice(words, size=rng.integers(5, 15)))
        if i % 7 == 0:
            text += " &amp; more"
        if i % 9 == 0:
            text += " https://t.co/abc" + str(i)
        if i % 5 == 0:
            text = f'"{text}, believe me!"'
        rows.append(f"{text},03-{1 + i % 28:02d}-2018 12:{i % 60:02d}:00")
    path = tmp_path / "trump.txt"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


# Word2vec: corpus and evaluation sets -----------------------------------------

COUNTRIES = [
    ("athens", "greece"),
    ("paris", "france"),
    ("rome", "italy"),
    ("berlin", "germany"),
    ("madrid", "spain"),
    ("lisbon", "portugal"),
]


def _corpus_text():
    """A few thousand words with a plain structure: capitals go with their
    countries, kings and queens with men and women."""
    rng = np.random.default_rng(2)
    filler = "the a of and in to is was it for on with as by at from".split()
    sentences = []
    for _ in range(400):
        city, country = COUNTRIES[rng.integers(len(COUNTRIES))]
        royal, person = [("king", "man"), ("queen", "woman")][rng.integers(2)]
        sentences.append(
            f"{city} is the capital of {country} "
            f"the {royal} is a {person} " + " ".join(rng.choice(filler, size=3))
        )
    return " ".join(sentences)


@pytest.fixture
def corpus_txt(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(_corpus_text(), encoding="utf-8")
    return path


@pytest.fixture
def corpus_zip(tmp_path):
    """A zip whose one member is the corpus, laid out like text8.zip."""
    path = tmp_path / "corpus.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("corpus", _corpus_text())
    return path


@pytest.fixture
def analogy_file(tmp_path):
    """The questions-words format: `: section` lines, then `a b c d`."""
    lines = [": capital-common-countries"]
    for city_a, country_a in COUNTRIES:
        for city_b, country_b in COUNTRIES:
            if city_a != city_b:
                lines.append(f"{city_a} {country_a} {city_b} {country_b}".title())
    lines += [": family", "man king woman queen", "king man queen woman"]
    lines += ["man king unicorn horn"]  # a question with a word out of vocabulary
    path = tmp_path / "questions-words.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def wordsim_file(tmp_path):
    """WordSim-353 as gensim ships it: two comment lines, then word pairs."""
    rows = [
        "# WordSim-353, a tiny stand-in",
        "# word1\tword2\tscore",
        "king\tqueen\t8.58",
        "man\twoman\t8.30",
        "paris\tfrance\t7.50",
        "rome\titaly\t7.40",
        "king\tof\t1.20",
        "the\tgreece\t0.50",
        "unicorn\thorn\t6.00",
    ]
    path = tmp_path / "wordsim353.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


# Time series ------------------------------------------------------------------


@pytest.fixture
def series_csv(tmp_path):
    """A one-column numeric CSV: a noisy seasonal series of 400 rows."""
    rng = np.random.default_rng(3)
    t = np.arange(400)
    values = 10 + 5 * np.sin(2 * np.pi * t / 25) + rng.normal(0, 0.5, size=400)
    path = tmp_path / "series.csv"
    path.write_text("value\n" + "\n".join(f"{v:.4f}" for v in values) + "\n")
    return path
