"""The data contract: schema round trip, build report, validator, loader errors, source tokenizer."""
import io
import json
import shutil
import subprocess
import sys
import unicodedata

import datasets
import numpy as np
import pytest

from data_prep import FEATURES, load_dataset_dir
from data_prep.__main__ import main as data_prep_main
from data_prep.check import check_dataset
from data_prep.errors import InputError
from data_prep.source_tokenizer import source_tokenizer_for, train_source_tokenizer
from models.student import load_marian_tokenizer
from data_prep.synthetic.build import build_synthetic, make_sample
from data_prep.synthetic.render import render


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn") / "es"
    build_synthetic(out, lang="es", images=40, seed=2, parallel_fraction=0.5, eval_parallel_fraction=0.5,
                    show_progress=False)
    return out


def test_schema_round_trip(built):
    dsd = load_dataset_dir(built)
    assert set(dsd) == {"train", "validation", "test"}
    for ds in dsd.values():
        assert ds.features == FEATURES
    row = dsd["train"][0]
    index = int(row["image_id"].rsplit("-", 1)[1])
    expected = render(make_sample(index, seed=2, captions_per_image=2, parallel_fraction=0.5, image_size=64).scene)
    assert np.array_equal(np.asarray(row["image"].convert("RGB")), np.asarray(expected))
    assert len(row["parallel"]) == len(row["source"])
    assert row["provenance"].startswith("synthetic/train/")


def test_build_report(built):
    report = json.loads((built / "build_report.json").read_text())
    assert report["kept"] == {"train": 32, "validation": 4, "test": 4}
    assert report["dropped_total"] == 0
    assert report["captions"]["train"]["source"] == 64


def test_validator_passes_clean_dataset(built):
    result = check_dataset(built)
    assert result.ok, result.errors


def test_validator_catches_planted_problems(built, tmp_path):
    dsd = datasets.load_from_disk(str(built))
    raw = dsd["train"].cast_column("image", datasets.Image(decode=False))

    def plant(row, idx):
        if idx == 3:
            row["image"] = {"bytes": b"\x89PNG\r\n\x1a\n-corrupted-", "path": None}
        if idx == 5:
            row["english"] = [row["english"][0], ""]
        return row

    bad = raw.map(plant, with_indices=True).cast_column("image", datasets.Image())
    dsd["train"] = bad
    dsd.save_to_disk(str(tmp_path / "bad"))
    result = check_dataset(tmp_path / "bad")
    assert not result.ok
    assert any("[3]" in e and "unreadable image" in e for e in result.errors)
    assert any("[5]" in e and "empty english caption" in e for e in result.errors)
    assert len(result.errors) == 2


def test_validator_catches_split_overlap(built, tmp_path):
    dsd = datasets.load_from_disk(str(built))
    dsd["test"] = datasets.concatenate_datasets([dsd["test"], dsd["train"].select([0])])
    dsd.save_to_disk(str(tmp_path / "overlap"))
    result = check_dataset(tmp_path / "overlap")
    assert any("several splits" in e for e in result.errors)


def test_writer_drops_are_counted(tmp_path):
    from PIL import Image

    from data_prep import BuildReport, write_dataset

    img = Image.new("RGB", (8, 8), "red")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    records = [
        dict(image=img, image_id="a", lang="es", source=["uno", "  "], english=["one"], parallel=["", ""], provenance="t"),
        dict(image=b"not an image", image_id="b", lang="es", source=["dos"], english=[], parallel=[""], provenance="t"),
        dict(image=tmp_path / "missing.png", image_id="c", lang="es", source=["tres"], english=[], parallel=[""], provenance="t"),
        dict(image=buf.getvalue(), image_id="d", lang="es", source=[" "], english=["x"], parallel=["x"], provenance="t"),
    ]
    report = BuildReport("unit")
    dsd = write_dataset({"train": records, "test": [dict(records[0])]}, tmp_path / "out", report, show_progress=False)
    dropped = report.to_dict()["dropped"]
    assert dropped["train"] == {"empty source caption": 2, "unreadable image": 1, "missing image file": 1,
                                "no source caption": 1, "image also in test split": 1}
    assert len(dsd["train"]) == 0 and dsd["test"][0]["source"] == ["uno"]
    assert check_dataset(tmp_path / "out").ok


def test_missing_dataset_names_builder(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m data_prep synthetic"):
        load_dataset_dir(tmp_path / "nowhere")


def test_a_truncated_arrow_file_is_named(built, tmp_path, capsys):
    """load_dataset_dir and `python -m data_prep check` name the damaged file, not just the folder."""
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    arrow = next((copy / "validation").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"{arrow}: damaged dataset file"):
        load_dataset_dir(copy)
    assert data_prep_main(["check", str(copy)]) == 1
    assert f"{arrow} is damaged" in capsys.readouterr().out


def test_source_tokenizer_round_trip_and_cache(built):
    dsd = load_dataset_dir(built)
    sentences = [s for row in dsd["train"]["source"] for s in row]
    tok = source_tokenizer_for(built, sentences, vocab_size=500)
    assert (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id) == (0, 1, 2)
    batch = tok(sentences, padding=True)
    decoded = tok.batch_decode(batch["input_ids"], skip_special_tokens=True)
    assert decoded == sentences
    assert all(ids[-1] in (tok.eos_token_id, tok.pad_token_id) for ids in batch["input_ids"])
    cached = list((built / "tokenizers").iterdir())
    assert len(cached) == 1
    again = source_tokenizer_for(built, sentences, vocab_size=500)
    assert again.get_vocab() == tok.get_vocab()
    assert load_marian_tokenizer(cached[0]).get_vocab() == tok.get_vocab()


def test_unspaced_scripts_get_short_pieces(tmp_path):
    """Chinese has no spaces to bound a piece: without a cap a small corpus turns whole captions
    into single pieces. Pieces stay within 3 characters and still round-trip."""
    from data_prep.source_tokenizer import piece_length_for, train_source_tokenizer
    from data_prep.synthetic.build import build_synthetic

    zh = build_synthetic(tmp_path / "zh", lang="zh", images=200, show_progress=False)
    sentences = [s for row in zh["train"]["source"] for s in row]
    assert piece_length_for(sentences) == 3
    assert piece_length_for(["un círculo rojo", "dos cuadrados"]) == 16
    tok = train_source_tokenizer(sentences, tmp_path / "tok", vocab_size=1000)
    pieces = [p for s in sentences for p in tok.tokenize(s)]
    assert max(len(p.lstrip("\u2581")) for p in pieces) <= 3
    # SentencePiece's nmt_nfkc normalisation (model input only; data stays NFC) folds '，' to ','
    decoded = tok.batch_decode(tok(sentences, padding=True)["input_ids"], skip_special_tokens=True)
    assert decoded == [unicodedata.normalize("NFKC", s) for s in sentences]


def test_cli_build_and_check(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "data_prep", "synthetic", "--lang", "zh", "--images", "12", "--out", str(out), "--quiet"]
    build = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "build summary" in build.stdout
    check = subprocess.run([sys.executable, "-m", "data_prep", "check", str(out)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 errors" in check.stdout


def test_a_script_with_more_characters_than_the_vocabulary_still_gets_a_tokenizer(tmp_path):
    """More distinct characters than `vocab_size` (the Chinese long-tail world: 1,029 against the
    default 1,000) once ended in a SentencePiece error; the vocabulary grows to hold every
    character, and every caption round-trips without an unknown piece."""
    chars = [chr(0x4E00 + i) for i in range(300)]
    sentences = ["".join(chars[(7 * i + j) % 300] for j in range(12)) for i in range(400)]
    tokenizer = train_source_tokenizer(sentences, tmp_path / "spm", vocab_size=100)
    assert len(tokenizer) >= 300
    for s in sentences[:50]:
        ids = tokenizer(s)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == s
