"""The embedded worlds of train.py: the long-tail world by default, with its English-only teacher
pool (4x its pictures, no source caption, none of the world's pictures), the shapes world by a
flag, and `--teacher-data DIR` for any dataset of English-captioned pictures."""
import json
from pathlib import Path

import pytest
from PIL import Image

import training
from data_prep.load import load_dataset_dir
from tiny_run import tiny

SMALL = ["--world-images", "40", "--steps", "2", "--no-evaluate", "--teacher-steps", "2"]


def without_data_flag(argv: list[str]) -> list[str]:
    """tiny()'s arguments with its `--data synthetic` taken out: the run takes the default world."""
    i = argv.index("--data")
    return argv[:i] + argv[i + 2:]


@pytest.mark.slow
def test_the_default_run_builds_the_long_tail_world_and_its_teacher_pool(cache, tmp_path):
    out = tmp_path / "run"
    assert training.main(without_data_flag(tiny(cache, out, *SMALL))) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"] == "longtail" and config["world_images"] == 40 and config["parallel_fraction"] == 0.05
    world = load_dataset_dir(config["data_path"])
    assert (Path(config["data_path"]) / "concepts.json").is_file() and "source_concepts" in world["train"].features
    pool_dir = Path(config["cache_dir"]) / "data" / "longtail-pool-160-seed0"
    pool = load_dataset_dir(pool_dir)
    assert sum(len(pool[s]) for s in pool) == 160
    assert all(not any(s.strip() for s in row) for row in pool["train"]["source"])
    world_ids = {i for split in world.values() for i in split["image_id"]}
    assert world_ids.isdisjoint(i for split in pool.values() for i in split["image_id"])
    log = (out / "train.log").read_text()
    assert f"teacher data {pool_dir}" in log


@pytest.mark.slow
def test_teacher_data_pretrains_stage_0_on_an_english_only_picture_folder(cache, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rows = []
    for i, (name, colour) in enumerate([("a red square", "red"), ("a blue square", "blue")] * 10):
        Image.new("RGB", (16, 16), colour).save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "english": [name]})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = tmp_path / "pool"
    from data_prep.__main__ import main as data_prep_main
    assert data_prep_main(["imagefolder", "--lang", "es", "--data-dir", str(folder), "--out", str(pool), "--quiet"]) == 0
    out = tmp_path / "run"
    assert training.main(tiny(cache, out, *SMALL, "--teacher-data", str(pool))) == 0
    log = (out / "train.log").read_text()
    assert f"teacher data {pool}" in log and "rows usable" in log
    with pytest.raises(SystemExit) as refused:  # refused at parsing: real weights need no teacher data
        training.main(tiny(cache, tmp_path / "bad", *SMALL, "--teacher-data", str(pool), "--clip-pretrained", "x.pt"))
    assert refused.value.code == 2
