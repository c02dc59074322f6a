"""The target vocabularies and the exported student: CLIP-BPE decoding against open_clip's own,
the exported tokenizer's source side against the Marian (SentencePiece) tokenizer, the encoder
shift round trip, and — on trained tiny runs, a scratch student with a CLIP-BPE shortlist and a
pretrained student with a vocabulary bridge — `python -m translate export` loaded by plain
transformers (`MarianMTModel` + `AutoTokenizer`, offline) translating every test sentence exactly
as `python -m translate text` does."""
from __future__ import annotations

import json
import random

import open_clip
import pytest
import torch
from torch_threads import one_thread  # noqa: F401
from transformers import MarianConfig, MarianMTModel

import training
from data_prep.load import load_dataset_dir
from data_prep.schema import normalize_text
from data_prep.source_tokenizer import train_source_tokenizer
from models.export import import_student, with_source_offset
from models.student import CLIP_VOCAB_SIZE, build_scratch_student
from models.target_vocab import ClipShortlist, ClipVocab
from models.tiny_configs import marian_preset
from plain_transformers import transformers_translations
from tiny_run import tiny
from translate.__main__ import main

pytestmark = pytest.mark.usefixtures("one_thread")
SPANISH = ["un círculo rojo pequeño", "dos cuadrados azules grandes", "tres triángulos verdes",
           "una cruz amarilla junto a un círculo", "el cuadrado está arriba a la izquierda"]


@pytest.fixture(scope="module")
def clip_tokenizer():
    return open_clip.get_tokenizer("groundmt-micro")


@pytest.fixture(scope="module")
def source_tokenizer(tmp_path_factory):
    return train_source_tokenizer(SPANISH * 20, tmp_path_factory.mktemp("spm"), vocab_size=80)


def test_clip_decoding_equals_open_clip_on_random_ids(clip_tokenizer):
    """Any id row (partial UTF-8 bytes, whitespace tokens, specials anywhere): open_clip's decode of
    the non-special ids, stripped — the oracle of every CLIP-BPE decoding and of the export."""
    rng = random.Random(0)
    rows = [[rng.randrange(CLIP_VOCAB_SIZE) for _ in range(rng.randrange(0, 9))] for _ in range(3000)]
    special = {0, 49406, 49407}
    expected = [clip_tokenizer.decode([i for i in row if i not in special]).strip() for row in rows]
    assert ClipVocab(clip_tokenizer).decode(rows) == expected
    shortlist = ClipShortlist(clip_tokenizer, sorted({i for row in rows[:200] for i in row}))
    student_rows = [shortlist.to_student(torch.tensor(row, dtype=torch.long)).tolist() for row in rows[:200]]
    assert shortlist.decode(student_rows) == expected[:200]


def test_labels_of_each_clip_vocabulary(clip_tokenizer):
    texts = ["two red circles", "a zigzag", ""]
    full = ClipVocab(clip_tokenizer).labels(texts, 8)
    clip_ids = clip_tokenizer(texts)[:, 1:9]
    assert torch.equal(full[0, :4], clip_ids[0, :4]) and (full[0, 4:] == -100).all()  # 3 words + EOT
    shortlist = ClipShortlist.from_texts(clip_tokenizer, ["two red circles"])
    short = shortlist.labels(texts, 8)
    assert torch.equal(shortlist.clip_ids[short[0, :4]], clip_ids[0, :4])
    assert (short[1, :-1][clip_ids[1, :-1] != 0] == -100).sum() >= 1  # 'zigzag' is outside the shortlist: not scored


def test_exported_tokenizer_encodes_the_source_as_marian_does(clip_tokenizer, source_tokenizer):
    """Oracle: the project's SentencePiece MarianTokenizer, on the training sentences and 3,000 random
    strings (odd spacing, tabs, NBSP, ideographic space, NFKC-folded letters, literal special tokens,
    truncation at 512 tokens), one at a time and padded in batches."""
    rng = random.Random(1)
    alphabet = list("abcdefghijklmnopqrstuvwxyzáéíóúñü ¿?¡!.,;:'\"-()0123456789 \t\u00a0\u3000Åﬁ") + ["</s>", "<pad>"]
    texts = SPANISH + ["  hola   mundo  ", "", "ｕｎ círculo", "x" * 2000, "un círculo <unk> rojo"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30))) for _ in range(3000)]
    for vocab in (ClipVocab(clip_tokenizer), ClipShortlist.from_texts(clip_tokenizer, ["a red circle"])):
        exported = vocab.tokenizer(source_tokenizer)
        offset = vocab.source_offset
        for text in texts:
            ours = exported(text, truncation=True)["input_ids"]
            assert [i - offset for i in ours] == source_tokenizer(text, truncation=True)["input_ids"], repr(text)
        batch = texts[:64]
        ours = exported(batch, padding=True, truncation=True, return_tensors="pt")
        theirs = source_tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
        assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
        assert torch.equal(ours["input_ids"] - offset, theirs["input_ids"])
        rows = [[1, 2, 3, len(vocab) - 1], [len(vocab) - 1, 0]]  # target ids decode as the vocabulary does
        assert exported.batch_decode(rows, skip_special_tokens=True) == vocab.decode(rows)


def test_source_offset_round_trip_keeps_every_weight_and_output(source_tokenizer):
    torch.manual_seed(0)
    student = build_scratch_student(len(source_tokenizer), "micro", decoder_vocab_size=40, decoder_start_token_id=38,
                                    sot_id=38, eot_id=39, pad_id=0).eval()
    shifted = with_source_offset(student, 40)
    assert shifted.config.vocab_size == len(source_tokenizer) + 40
    assert shifted.lm_head.weight is shifted.model.decoder.embed_tokens.weight  # the tie survives
    ids = source_tokenizer(SPANISH, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = student.generate(**ids, max_length=8)
        assert torch.equal(shifted.generate(input_ids=ids["input_ids"] + 40, attention_mask=ids["attention_mask"],
                                            max_length=8), expected)
    back = with_source_offset(shifted, -40)
    assert back.state_dict().keys() == student.state_dict().keys()
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in student.state_dict().items())
    with pytest.raises(ValueError, match="zero rows"):
        with_source_offset(student, -3)


def _test_sentences(test_split) -> list[str]:
    sentences = [s for row in test_split["source"] for s in row if s.strip()]
    assert sentences == [normalize_text(s) for s in sentences]  # what translate text reads, unchanged
    return sentences


TRAINED = ("--steps", "100", "--lr", "1e-2", "--ce-batch-size", "32", "--parallel-fraction", "1", "--grounding-weight", "0", "--checkpoint-every", "100", "--no-evaluate")


def opus_style_student(directory, sentences: list[str]):
    """A micro MarianMT with one SentencePiece vocabulary over Spanish and English (as opus-mt
    models share theirs), written by save_pretrained: what `--student DIR` reads."""
    tokenizer = train_source_tokenizer(sentences, directory, vocab_size=300)
    torch.manual_seed(0)
    MarianMTModel(MarianConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                               eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
                               **marian_preset("micro"))).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def trained_runs(cache, tmp_path_factory) -> dict:
    """Tiny runs trained long enough (token CE on every caption's human translation, 100 steps) that
    the test sentences get different translations, so that the comparison below sees what each
    source says."""
    root = tmp_path_factory.mktemp("export-runs")
    runs = {"shortlist": root / "scratch", "bridge": root / "bridged"}
    assert training.main(tiny(cache, runs["shortlist"], *TRAINED)) == 0
    data = load_dataset_dir(json.loads((runs["shortlist"] / "config.json").read_text())["data_path"])["train"]
    student = opus_style_student(root / "opus-style", [t for column in ("source", "english") for row in data[column]
                                                       for t in row])
    assert training.main(tiny(cache, runs["bridge"], *TRAINED, "--student", str(student))) == 0
    return runs


@pytest.mark.parametrize("kind", ["shortlist", "bridge"])
def test_export_translates_exactly_as_translate_text(kind, trained_runs, test_split, tmp_path, capsys):
    run_dir = trained_runs[kind]
    assert json.loads((run_dir / "model" / "target_vocab.json").read_text())["kind"] == kind
    sentences = _test_sentences(test_split)
    (tmp_path / "test.src").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    out = tmp_path / "export"
    assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    if kind == "shortlist":
        assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    for num_beams in (1, 2):
        assert main(["text", "--run", str(run_dir), "--file", str(tmp_path / "test.src"),
                     "--num-beams", str(num_beams)]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert printed == transformers_translations(out, sentences, num_beams)
    assert len(set(printed)) > len(sentences) // 2  # the sentences' translations differ: the test sees the source
    assert main(["export", "--run", str(run_dir), "--out", str(out)]) == 2  # never into a non-empty folder
    assert "is not empty" in capsys.readouterr().err


def test_saved_student_is_the_export_and_loads_back(run):
    """RUN/model/student is itself the standard directory; the system loads it into its training layout."""
    from models.grounded import GroundedSystem

    system = GroundedSystem.load(run / "model")
    exported = MarianMTModel.from_pretrained(str(run / "model" / "student"))
    offset = system.vocab.source_offset
    assert exported.config.vocab_size == system.student.config.vocab_size + offset
    loaded = import_student(run / "model" / "student", system.vocab)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in system.student.state_dict().items())


def test_export_refuses_bad_input_in_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "holds no trained model" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert main(["export", "--run", str(tmp_path), "--out", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --out {tmp_path / 'file'} is a file, expected a folder"
