"""Benchmark result files name paths and commands without local paths (benchmarks/shown_paths.py)."""
import os
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from shown_paths import shown_command, shown_path  # noqa: E402

PARTS = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1)
                 .filter(lambda s: s not in (".", "..")), min_size=1, max_size=4)


@given(PARTS)
def test_a_path_under_the_repository_is_shown_relative_to_it(parts):
    assert shown_path(ROOT.joinpath(*parts)) == os.path.join(*parts)


@given(PARTS)
def test_any_other_path_is_shown_by_its_name(parts):
    path = Path("/elsewhere-than-the-repository", *parts)
    assert shown_path(path) == parts[-1]


def test_a_command_keeps_its_options_and_loses_its_local_paths():
    argv = [sys.executable, str(ROOT / "train.py"), "--steps", "3", "--out", "/scratch/runs/fp32"]
    assert shown_command(argv) == ["python", "train.py", "--steps", "3", "--out", "fp32"]


def test_a_link_inside_the_repository_is_not_followed_out_of_it(tmp_path, monkeypatch):
    import shown_paths

    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    repo.mkdir()
    elsewhere.mkdir()
    (repo / "venv").symlink_to(elsewhere)
    monkeypatch.setattr(shown_paths, "ROOT", repo)
    assert shown_path(repo / "venv" / "python") == os.path.join("venv", "python")
