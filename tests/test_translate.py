"""translate: the Translator API against GroundedSystem and CLIP oracles, `translate text` on argv,
--file and stdin, `translate corpus` outputs and their consistency, resume after an interruption,
and a captions file full of bad lines. One tiny run directory is trained once per session."""
from __future__ import annotations

import csv
import io
import json
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from torch_threads import one_thread  # noqa: F401

from data_prep.schema import normalize_text
from eval.retrieval import clip_embeddings, grounding_scores
from models.clip_loading import load_clip
from models.grounded import GroundedSystem
from translate import Translator
from translate import corpus as corpus_mod
from translate.__main__ import main
from translate.flags import Filters, finalize, record_flags

pytestmark = pytest.mark.usefixtures("one_thread")
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def corpus_args(run: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["corpus", "--run", str(run), "--data-dir", str(data), "--split", "test", "--out", str(out),
            "--batch-size", "4", "--quiet", *extra]


@pytest.fixture(scope="session")
def full_corpus(run, data, test_split, tmp_path_factory) -> Path:
    """An uninterrupted corpus of the test split: threshold at the median grounding, dedupe, TMX."""
    out = tmp_path_factory.mktemp("corpus-full")
    assert main(corpus_args(run, data, out, "--tmx", "--dedupe")) == 0
    grounding = sorted(json.loads(line)["grounding"] for line in (out / "corpus.jsonl").read_text().splitlines())
    threshold = str(grounding[len(grounding) // 2])
    assert main(corpus_args(run, data, out, "--tmx", "--dedupe", "--min-grounding", threshold)) == 0
    return out


def jsonl(path: Path) -> list[dict]:
    return corpus_mod.read_jsonl(path)


# -- Translator -----------------------------------------------------------------------------------
def test_translator_equals_grounded_system_and_clip_oracles(run, translator, test_split):
    sources = [s for row in test_split["source"] for s in row][:8]
    system = GroundedSystem.load(run / "model")
    for num_beams in (1, 2):
        assert translator.translate(sources, num_beams=num_beams, batch_size=3) == \
            system.translate(sources, num_beams=num_beams)
    images = [im for im, row in zip(test_split["image"], test_split["source"]) for _ in row][:8]
    hyps = translator.translate(sources)
    clip, preprocess, tokenizer = load_clip(system.clip_name, pretrained=run / "model" / "clip" / "open_clip_model.pt")
    img, txt = clip_embeddings(clip, preprocess, tokenizer, images=images, texts=hyps)
    torch.testing.assert_close(torch.tensor(translator.grounding(images, hyps)), grounding_scores(img, txt))
    torch.testing.assert_close(torch.tensor(translator.source_image_scores(images, sources)),
                               grounding_scores(img, system.student_features(sources)))
    assert translator.translate(["", "  "]) == ["", ""]
    with pytest.raises(ValueError, match="aligned"):
        translator.grounding(images[:2], hyps[:3])


def test_missing_model_names_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="accelerate launch train.py --out RUN"):
        Translator.from_run(tmp_path)
    assert main(["text", "--run", str(tmp_path), "hola"]) == 2


def test_help_for_both_subcommands(capsys):
    for command in ("text", "corpus"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0 and "--run" in capsys.readouterr().out


# -- translate text --------------------------------------------------------------------------------
def test_text_cli_prints_one_line_per_input(run, translator, tmp_path, capsys, monkeypatch):
    sentences = ["una casa roja", "", unicodedata.normalize("NFD", "  un triángulo azul ")]
    expected = translator.translate(sentences)
    assert expected == translator.translate([normalize_text(s) for s in sentences]) and expected[1] == ""

    assert main(["text", "--run", str(run), *sentences]) == 0
    assert capsys.readouterr().out.split("\n") == [*expected, ""]

    file = tmp_path / "in.es"
    file.write_text("\r\n".join(sentences) + "\r\n", encoding="utf-8")
    assert main(["text", "--run", str(run), "--file", str(file), "--num-beams", "2", "--batch-size", "2"]) == 0
    assert capsys.readouterr().out.split("\n") == [*translator.translate(sentences, num_beams=2), ""]

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("\n".join(sentences).encode("utf-8"))))
    out = tmp_path / "out.en"
    assert main(["text", "--run", str(run), "-", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").split("\n") == [*expected, ""]

    file.write_bytes(b"una casa\ncami\xf3n rojo\n")
    assert main(["text", "--run", str(run), "--file", str(file)]) == 2
    assert "in.es:2: not valid UTF-8" in capsys.readouterr().err


# -- translate corpus ------------------------------------------------------------------------------
def test_corpus_outputs_are_consistent(full_corpus, translator, test_split):
    out = full_corpus
    for name in ("corpus.jsonl", "corpus.es", "corpus.en", "corpus.tsv", "corpus.tmx", "summary.json", "summary.md",
                 "grounding_hist.png", "length_ratio_hist.png", "input_report.jsonl"):
        assert (out / name).is_file(), name
    records = jsonl(out / "corpus.jsonl")
    sources = [normalize_text(s) for row in test_split["source"] for s in row]
    assert [r["source"] for r in records] == sources
    assert [r["translation"] for r in records] == translator.translate(sources)
    assert len({r["id"] for r in records}) == len(records)

    summary = json.loads((out / "summary.json").read_text())
    threshold = summary["thresholds"]["min_grounding"]
    assert threshold is not None and summary["thresholds"]["dedupe"] is True
    low = [r for r in records if r["grounding"] < threshold]
    assert low and all("low_grounding" in r["flags"] for r in low)
    aligned = [r for r in records if r["aligned_line"] is not None]
    assert [r["aligned_line"] for r in aligned] == list(range(1, len(aligned) + 1))
    assert all(not r["flags"] for r in aligned) and len(aligned) == summary["aligned_pairs"] == len(records) - len(low)
    assert summary["flags"]["low_grounding"] == len(low) and summary["records"] == len(records)

    src_lines = (out / "corpus.es").read_text(encoding="utf-8").splitlines()
    en_lines = (out / "corpus.en").read_text(encoding="utf-8").splitlines()
    assert src_lines == [r["source"] for r in aligned] and en_lines == [r["translation"] for r in aligned]
    with (out / "corpus.tsv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [(r["id"], r["source"], r["translation"]) for r in rows] == \
        [(r["id"], r["source"], r["translation"]) for r in aligned]

    tmx = ET.parse(out / "corpus.tmx").getroot()
    assert tmx.get("version") == "1.4" and tmx.find("header").get("srclang") == "es"
    tus = tmx.findall("body/tu")
    assert [tu.get("tuid") for tu in tus] == [r["id"] for r in aligned]
    assert [[seg.text for seg in tu.iter("seg")] for tu in tus] == [[r["source"], r["translation"]] for r in aligned]
    assert [[tuv.get(XML_LANG) for tuv in tu.findall("tuv")] for tu in tus] == [["es", "en"]] * len(tus)


def test_corpus_resumes_after_an_interruption(full_corpus, run, data, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    real = corpus_mod.translate_batch
    calls = []

    def interrupted(*args, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kw)

    threshold = str(json.loads((full_corpus / "summary.json").read_text())["thresholds"]["min_grounding"])
    args = corpus_args(run, data, out, "--tmx", "--dedupe", "--min-grounding", threshold)
    monkeypatch.setattr(corpus_mod, "translate_batch", interrupted)
    assert main(args) == 130
    assert json.loads((out / "progress.json").read_text())["records"] == 8 == len(jsonl(out / "corpus.jsonl"))
    with (out / "corpus.jsonl").open("a") as f:  # a batch cut off mid-write by a kill
        f.write('{"id": "syn0-000058#0", "source": "hay un')
    monkeypatch.setattr(corpus_mod, "translate_batch", real)
    assert main(args) == 0
    assert jsonl(out / "corpus.jsonl") == jsonl(full_corpus / "corpus.jsonl")
    assert json.loads((out / "summary.json").read_text())["resumed_records"] == 8
    for name in ("corpus.es", "corpus.en", "corpus.tsv", "corpus.tmx"):
        assert (out / name).read_text() == (full_corpus / name).read_text(), name

    assert main(args) == 0  # a complete corpus: nothing translated again, nothing duplicated
    assert jsonl(out / "corpus.jsonl") == jsonl(full_corpus / "corpus.jsonl")
    assert main(corpus_args(run, data, out, "--split", "validation")) == 2


@pytest.fixture()
def captions_dir(test_split, tmp_path) -> Path:
    """Three images on disk and a JSONL + CSV captions file with good and bad lines."""
    images = tmp_path / "images"
    images.mkdir()
    for k, im in enumerate(test_split["image"][:3]):
        im.save(images / f"im{k}.png")
    (images / "broken.png").write_bytes(b"not an image")
    return images


def write_jsonl_captions(path: Path) -> None:
    lines = [json.dumps({"file_name": "im0.png", "caption": "una cruz negra"}, ensure_ascii=False).encode(),
             json.dumps({"file_name": "missing.png", "caption": "un círculo"}, ensure_ascii=False).encode(),
             json.dumps({"file_name": "im1.png", "caption": "  "}).encode(),
             '{"file_name": "im1.png", "caption": "un cami\xf3n rojo"}'.encode("latin-1"),
             b'{"file_name": "im2.png", "caption": ',
             json.dumps({"file_name": "broken.png", "caption": "una estrella"}).encode(),
             b"",
             json.dumps({"file_name": "im2.png", "caption": "dos estrellas\u0301 verdes", "image_id": "x2",
                         "lang": "es"}, ensure_ascii=False).encode(),
             json.dumps({"file_name": "im0.png", "caption": "una cruz negra"}, ensure_ascii=False).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")


def test_bad_captions_give_a_line_report_and_a_corpus_of_the_good_lines(run, translator, captions_dir, tmp_path,
                                                                        capsys):
    captions = tmp_path / "captions.jsonl"
    write_jsonl_captions(captions)
    out = tmp_path / "out"
    assert main(["corpus", "--run", str(run), "--images", str(captions_dir), "--captions", str(captions),
                 "--out", str(out), "--dedupe", "--tmx", "--quiet"]) == 0
    report = jsonl(out / "input_report.jsonl")
    assert [(r["line"], r["reason"], r["action"]) for r in report] == [
        (2, "missing image", "skipped"), (3, "empty caption", "flagged"), (4, "not valid UTF-8", "skipped"),
        (5, "not valid JSON (Expecting value)", "skipped"), (6, "unreadable image (UnidentifiedImageError)", "skipped")]
    err = capsys.readouterr().err
    assert "line 4: not valid UTF-8 (skipped)" in err and "line 2: missing image" in err
    records = jsonl(out / "corpus.jsonl")
    assert [r["id"] for r in records] == ["im0#0", "im1#0", "x2#0", "im0#1"]
    assert [r["provenance"] for r in records] == [f"captions.jsonl:{n}" for n in (1, 3, 8, 9)]
    assert records[2]["source"] == unicodedata.normalize("NFC", "dos estrellas\u0301 verdes")
    assert records[1]["flags"] == ["empty", "untranslated"] and records[1]["grounding"] is None
    assert records[3]["flags"] == ["duplicate"]
    assert [r["translation"] for r in records] == translator.translate([r["source"] for r in records])
    assert (out / "corpus.es").read_text(encoding="utf-8").splitlines() == [records[0]["source"], records[2]["source"]]
    assert len(ET.parse(out / "corpus.tmx").getroot().findall("body/tu")) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_inputs"] == {"missing image": 1, "not valid UTF-8": 1,
                                         "not valid JSON (Expecting value)": 1,
                                         "unreadable image (UnidentifiedImageError)": 1}
    assert summary["flags"] == {"duplicate": 1, "empty": 1, "untranslated": 1}


def test_captions_that_are_not_strings_or_not_unicode_are_counted_skips(run, translator, captions_dir, tmp_path):
    """A caption given as a JSON list, a number or an object, a lone surrogate, and a CSV quote
    never closed are skipped lines with their reason (the tokenizer never sees them, nothing is
    translated as a Python repr); the other lines, those after the broken quote included, are
    translated as `Translator.translate` translates them."""
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps(x) + "\n" for x in (
        {"file_name": "im0.png", "caption": ["una", "cruz"]}, {"file_name": "im0.png", "caption": 5},
        {"file_name": "im1.png", "caption": {"es": "x"}}, {"file_name": "im1.png", "caption": "un \ud800 gato"},
        {"file_name": 7, "caption": "un perro"}, {"file_name": "im2.png", "caption": "dos estrellas"})))
    out = tmp_path / "out"
    assert main(["corpus", "--run", str(run), "--images", str(captions_dir), "--captions", str(captions),
                 "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped_inputs"] == {'field "caption": expected a string, found a JSON array': 1,
                                         'field "caption": expected a string, found a JSON number': 1,
                                         'field "caption": expected a string, found a JSON object': 1,
                                         "text that is not valid Unicode (a lone surrogate)": 1,
                                         'field "file_name": expected a string, found a JSON number': 1}
    records = jsonl(out / "corpus.jsonl")
    assert [r["source"] for r in records] == ["dos estrellas"]
    assert [r["translation"] for r in records] == translator.translate(["dos estrellas"])
    table = tmp_path / "captions.csv"
    table.write_text('file_name,caption\nim0.png,"una cruz\nim1.png,un círculo\nim2.png,dos estrellas\n',
                     encoding="utf-8")
    assert main(["corpus", "--run", str(run), "--images", str(captions_dir), "--captions", str(table),
                 "--out", str(tmp_path / "csv"), "--quiet"]) == 0
    assert [r["source"] for r in jsonl(tmp_path / "csv" / "corpus.jsonl")] == ["un círculo", "dos estrellas"]
    assert json.loads((tmp_path / "csv" / "summary.json").read_text())["skipped_inputs"] == {"unterminated quote": 1}


def test_csv_captions_with_mismatched_columns(run, captions_dir, tmp_path):
    captions = tmp_path / "captions.csv"
    captions.write_bytes("file_name,caption,lang\n"
                         "im0.png,\"una <cruz>, \"\"negra\"\" & roja\",es\n"
                         "im1.png,un círculo\n"
                         "im2.png,tres,es,extra\n".encode()
                         + "im1.png,cami\xf3n,es\n".encode("latin-1")
                         + b"im2.png,\"dos estrellas\nverdes\",es\n")
    out = tmp_path / "out"
    assert main(["corpus", "--run", str(run), "--images", str(captions_dir), "--captions", str(captions),
                 "--out", str(out), "--quiet", "--tmx"]) == 0
    report = jsonl(out / "input_report.jsonl")
    assert [(r["line"], r["reason"]) for r in report] == [
        (3, "expected 3 columns, found 2"), (4, "expected 3 columns, found 4"), (5, "not valid UTF-8")]
    records = jsonl(out / "corpus.jsonl")
    good = 'una <cruz>, "negra" & roja'
    assert [r["source"] for r in records] == [good, "dos estrellas\nverdes"]
    assert records[1]["flags"] == ["control_characters"] and records[1]["aligned_line"] is None
    assert (out / "corpus.es").read_text(encoding="utf-8") == good + "\n"
    tus = ET.parse(out / "corpus.tmx").getroot().findall("body/tu")  # escaped on the way in, intact on the way out
    assert [[seg.text for seg in tu.iter("seg")] for tu in tus] == [[good, records[0]["translation"]]]


def test_long_input_is_warned_once_and_flagged_truncated(run, translator, captions_dir, tmp_path, capfd):
    """An input longer than the source tokenizer's limit: `translate text` warns once naming the
    lines; `translate corpus` flags the record `truncated` and leaves it out of the aligned files."""
    long = "una casa roja " * 800  # 10,400 characters, thousands of tokens
    assert translator.truncated([long, "una casa", ""]) == [True, False, False]
    assert main(["text", "--run", str(run), long, "dos perros", long]) == 0
    out, err = capfd.readouterr()
    assert len(out.splitlines()) == 3 and err.splitlines() == [
        f"warning: 2 input(s) longer than the model reads ({translator.source_limit} tokens) were cut there and "
        "translated only in part: input line(s) 1, 3"]
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"file_name": f"im{k}.png", "caption": c}) + "\n"
                                for k, c in enumerate(["una cruz negra", long])))
    assert main(["corpus", "--run", str(run), "--images", str(captions_dir), "--captions", str(captions),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    records = jsonl(tmp_path / "out" / "corpus.jsonl")
    assert [r["flags"] for r in records] == [[], ["truncated"]] and records[1]["aligned_line"] is None
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["flags"] == {"truncated": 1}


def test_captions_with_line_separators_and_escaping_names(run, captions_dir, tmp_path, monkeypatch):
    """A caption holding U+2028 / NEL (which json.dumps leaves raw in corpus.jsonl) survives a resume;
    file names that leave --images are counted skips, the good lines still become a corpus."""
    (tmp_path / "secret.png").write_bytes((captions_dir / "im0.png").read_bytes())
    lines = [{"file_name": "im0.png", "caption": "una cruz\u2028negra"},
             {"file_name": "../secret.png", "caption": "x"},
             {"file_name": str(tmp_path / "secret.png"), "caption": "y"},
             {"file_name": "im1.png", "caption": "un\x85sol"},
             {"file_name": "im2.png", "caption": "tres estrellas"}]
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    args = ["corpus", "--run", str(run), "--images", str(captions_dir), "--captions", str(captions), "--quiet",
            "--batch-size", "1", "--out"]
    assert main([*args, str(tmp_path / "full")]) == 0
    calls = []

    def interrupted(*a, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **kw)

    real = corpus_mod.translate_batch
    monkeypatch.setattr(corpus_mod, "translate_batch", interrupted)
    assert main([*args, str(tmp_path / "resumed")]) == 130
    monkeypatch.setattr(corpus_mod, "translate_batch", real)
    assert main([*args, str(tmp_path / "resumed")]) == 0
    full = (tmp_path / "full" / "corpus.jsonl").read_text(encoding="utf-8")
    assert (tmp_path / "resumed" / "corpus.jsonl").read_text(encoding="utf-8") == full and "\u2028" in full
    records = corpus_mod.read_records(tmp_path / "full" / "corpus.jsonl")
    assert [r["source"] for r in records] == ["una cruz\u2028negra", "un\x85sol", "tres estrellas"]
    assert [r["flags"] for r in records] == [["control_characters"], ["control_characters"], []]
    report = jsonl(tmp_path / "full" / "input_report.jsonl")
    assert [(r["line"], r["reason"]) for r in report] == [(2, "path outside the image folder"),
                                                          (3, "path outside the image folder")]


# -- flags -----------------------------------------------------------------------------------------
def test_flags_and_filters():
    assert record_flags("una casa", "a house", True) == []
    assert record_flags("", "", True) == ["empty", "untranslated"]
    assert record_flags("Hola", "hola", False) == ["untranslated", "unreadable_image"]
    assert record_flags("a\tb", "x\u2028y", True) == ["control_characters"]

    def rec(source, grounding, flags=()):
        return {"source": source, "grounding": grounding, "flags": list(flags)}

    records = [rec("a", 0.1), rec("a", 0.5), rec("a", 0.6), rec("b", 0.7, ["untranslated"]), rec("b", 0.8)]
    out = finalize(records, Filters(min_grounding=0.3, dedupe=True))
    assert [r["flags"] for r in out] == [["low_grounding"], [], ["duplicate"], ["untranslated"], []]
    assert [r["aligned_line"] for r in out] == [None, 1, None, None, 2]
    again = finalize(out, Filters())  # option flags are recomputed, not accumulated
    assert [r["flags"] for r in again] == [[], ["duplicate"], ["duplicate"], ["untranslated"], []]
    assert [r["aligned_line"] for r in again] == [1, 2, 3, None, 4]
