"""Test images of a run, looked up by image_id in the dataset directory it was trained on
(config["data_path"], written by train.py; split = the split it was scored on)."""
from __future__ import annotations

from pathlib import Path

from eval.report.collect import Run


def dataset_dir(run: Run) -> Path | None:
    """The run's dataset directory; a relative path is tried as given, then inside the run."""
    d = run.config.get("data_path")
    if not d:
        return None
    p = Path(d)
    return p if p.is_absolute() or p.exists() else run.path / p


def eval_split(run: Run) -> str:
    return str((run.scores or {}).get("split") or run.config.get("eval_split") or "test")


def lookup_images(run: Run, image_ids: list[str]) -> tuple[dict[str, object], str | None]:
    """({image_id: PIL image} for the ids found, note or None). Never raises for a missing or
    unreadable dataset: the report then shows the examples without images and says why."""
    from data_prep.load import load_dataset_dir

    wanted = {str(i) for i in image_ids if i is not None}
    if not wanted:
        return {}, None
    directory = dataset_dir(run)
    if directory is None:
        return {}, f"{run.name}: config.json names no data.dir, so examples are shown without images"
    try:
        dsd = load_dataset_dir(directory)
    except (FileNotFoundError, ValueError, OSError) as err:
        first = str(err).splitlines()[0]
        return {}, f"{run.name}: dataset {directory} unavailable ({first}); examples without images"
    split = eval_split(run)
    if split not in dsd:
        return {}, f"{run.name}: dataset {directory} has no split {split!r}; examples without images"
    ds = dsd[split]
    rows = {str(i): k for k, i in enumerate(ds["image_id"]) if str(i) in wanted}
    found = {i: ds[k]["image"] for i, k in rows.items()}
    missing = wanted - set(found)
    note = (f"{run.name}: {len(missing)} example image(s) not found in {directory} split {split!r}"
            if missing else None)
    return found, note
