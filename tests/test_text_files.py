"""data_prep.text_files: the one line reader, against sacreBLEU's own file reading and its CLI."""
import bz2
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sacrebleu.utils import smart_open

from data_prep.errors import InputError
from data_prep.text_files import numbered_lines, read_lines, read_list, read_table, surrogate_problem

SACREBLEU = str(Path(sys.executable).with_name("sacrebleu"))
# Characters str.splitlines() breaks on but sacreBLEU (and `wc -l`) does not: U+2028, U+2029, NEL,
# form feed, vertical tab, the file/group/record separators, a lone CR.
SPLITLINES_ONLY = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\r"]


def sacrebleu_lines(path: Path) -> list[str]:
    """How `sacrebleu` reads a hypothesis or reference file (sacrebleu.py: smart_open + rstrip)."""
    with smart_open(str(path)) as f:
        return [line.rstrip() for line in f]


def tricky_text(bom: bool) -> str:
    lines = [f"a cat{ch}on the mat" for ch in SPLITLINES_ONLY] + ["", "trailing spaces   ", "\tleading tab",
                                                                    f"ends with a separator{SPLITLINES_ONLY[0]}"]
    return ("\ufeff" if bom else "") + "\r\n".join(lines[:3]) + "\r\n" + "\n".join(lines[3:]) + "\n"


@pytest.mark.parametrize("bom", [False, True])
def test_read_lines_equals_sacrebleu_reading(tmp_path, bom):
    path = tmp_path / "tricky.txt"
    path.write_text(tricky_text(bom), encoding="utf-8", newline="")
    expected = sacrebleu_lines(path)
    assert len(expected) == path.read_bytes().count(b"\n") == 13  # what `wc -l` counts
    assert read_lines(path, keep_bom=True) == expected
    assert len(path.read_text(encoding="utf-8").splitlines()) > len(expected)  # the old reader's mistake
    dropped = read_lines(path)
    assert dropped[0] == expected[0].removeprefix("\ufeff") and dropped[1:] == expected[1:]


def test_endings_blank_lines_compression(tmp_path):
    text = "\ufefffirst\r\nsecond\tTAB\t\n\nlast without newline"
    expected = [(1, "first"), (2, "second\tTAB\t"), (3, ""), (4, "last without newline")]
    (tmp_path / "a.txt").write_bytes(text.encode("utf-8"))
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    (tmp_path / "a.txt.bz2").write_bytes(bz2.compress(text.encode("utf-8")))
    for name in ("a.txt", "a.txt.gz", "a.txt.bz2"):
        assert list(numbered_lines(tmp_path / name)) == expected
        assert read_lines(tmp_path / name) == ["first", "second\tTAB", "", "last without newline"]
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "one.txt").write_bytes(b"\n")
    assert read_lines(tmp_path / "empty.txt") == [] and read_lines(tmp_path / "one.txt") == [""]
    (tmp_path / "list.txt").write_bytes(b" a.jpg \n\n b.jpg\r\n")
    assert read_list(tmp_path / "list.txt") == ["a.jpg", "b.jpg"]


def test_undecodable_lines_name_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"una casa\ncami\xf3n rojo\nfin\n")
    with pytest.raises(InputError, match=r"latin1.txt:2: not valid UTF-8 \(byte 0xf3 at column 5\)"):
        read_lines(path)
    assert list(numbered_lines(path, undecodable="none")) == [(1, "una casa"), (2, None), (3, "fin")]
    (tmp_path / "broken.gz").write_bytes(gzip.compress(b"a\nb\n")[:-6])
    with pytest.raises(InputError, match="broken.gz: cannot be read"):
        read_lines(tmp_path / "broken.gz")


def test_eval_score_equals_the_sacrebleu_cli_on_tricky_files(tmp_path):
    """Two 13-line files (by `wc -l`) full of U+2028/NEL/FF/RS, CRLF and a BOM: `eval score` reads
    13 lines each and its BLEU and chrF equal the sacreBLEU CLI's on the same files."""
    hyp, ref = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp.write_text(tricky_text(bom=True), encoding="utf-8", newline="")
    ref.write_text(tricky_text(bom=False).replace("cat", "dog", 2), encoding="utf-8", newline="")
    out = tmp_path / "s.json"
    subprocess.run([sys.executable, "-m", "eval", "score", "--hyp", str(hyp), "--ref", str(ref), "--metrics",
                    "bleu,chrf", "--bootstrap", "0", "--out", str(out)], check=True, capture_output=True, text=True,
                   cwd=Path(__file__).resolve().parents[1])
    ours = json.loads(out.read_text())
    cli = subprocess.run([SACREBLEU, str(ref), "-i", str(hyp), "-m", "bleu", "chrf", "-f", "json", "-w", "6"],
                         check=True, capture_output=True, text=True)
    expected = {d["name"]: d["score"] for d in json.loads(cli.stdout)}
    assert ours["n_sentences"] == 13
    assert ours["metrics"]["bleu"]["score"] == pytest.approx(expected["BLEU"], abs=1e-6)
    assert ours["metrics"]["chrf"]["score"] == pytest.approx(expected["chrF2"], abs=1e-6)
    assert ours["sentences"][0]["hypothesis"].startswith("\ufeff")  # kept, as sacreBLEU keeps it


def test_read_table_equals_csv_on_well_formed_tables(tmp_path):
    """A table without broken quotes reads as Python's csv module reads it (a quoted line break
    included), each record at the line where it starts."""
    import csv
    import io

    text = 'file_name,caption\na.png,"una, casa"\nb.png,"dos\nlíneas"\n\nc.png,""""\n'
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    header, rows = read_table(path)
    oracle = list(csv.reader(io.StringIO(text)))
    assert [header] + [values for _, values, _ in rows] == oracle
    assert [line for line, _, _ in rows] == [2, 3, 5, 6]


def test_a_quote_never_closed_is_one_reported_line_and_the_rows_after_it_are_read(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'a,b\n"x,y\n1,2\n\xff,3\n4,5"\n6,7\n"p"q,8\n')
    header, rows = read_table(path, undecodable="none")
    assert header == ["a", "b"]
    assert rows == [(2, None, "unterminated quote"), (3, ["1", "2"], None), (4, None, "not valid UTF-8"),
                    (5, ["4", '5"'], None), (6, ["6", "7"], None),
                    (7, None, "bad quoting (',' expected after '\"')")]
    with pytest.raises(InputError, match=r"t.csv:4: not valid UTF-8"):
        read_table(path)


def test_surrogate_problem_names_the_byte_or_the_code_point():
    assert surrogate_problem("una casa") is None
    assert surrogate_problem("cami\udcf3n") == "not valid UTF-8 (byte 0xf3 at column 5)"
    assert surrogate_problem("a\ud800") == "a lone surrogate U+D800 at column 2"
