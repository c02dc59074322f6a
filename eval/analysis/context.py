"""What every analysis reads from a run, loaded once: the exported system (`RUN/model`), the
dataset it was trained on (`config["data_path"]`), the test sentences, the training rows that
fit the attribute probes, and the stage-0 teacher CLIP the run started from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from data_prep.errors import InputError
from eval.report.collect import Run


@dataclass
class AnalysisContext:
    run: Run
    system: object  # models.grounded.GroundedSystem, in eval mode
    dsd: object  # datasets.DatasetDict
    scans: dict  # split -> data_prep.collate.ScanResult (validation, test; train = the probe-fit rows)
    sentences: list[dict]  # test sentences (eval.system_eval.test_sentences), at most `limit`
    limit: int
    batch_size: int
    device: torch.device
    teacher_path: Path | None
    notes: list[str] = field(default_factory=list)
    _teacher: object = None

    @property
    def translated(self) -> list[dict]:
        """The test sentences that have a human English translation."""
        return [s for s in self.sentences if s["has_translation"]]

    def teacher(self):
        """The stage-0 CLIP (open_clip model) the run started from; the run's own CLIP when the
        checkpoint is unavailable (then `teacher_path` is None and a note says so)."""
        if self._teacher is None:
            if self.teacher_path is None:
                self._teacher = self.system.clip
            else:
                from models.clip_loading import load_clip

                self._teacher = load_clip(self.system.clip_name, pretrained=self.teacher_path,
                                          device=self.device)[0].eval()
        return self._teacher


def teacher_checkpoint(run: Run) -> tuple[Path | None, str | None]:
    """The stage-0 CLIP weights file of a run: `clip_weights` (config.json or eval/scores.json),
    else `clip_pretrained`; (None, reason) when none is recorded or the file is gone."""
    candidates = [run.config.get("clip_weights"), (run.scores or {}).get("clip_weights"),
                  run.config.get("clip_pretrained")]
    recorded = [str(c) for c in candidates if c]
    for c in recorded:
        if Path(c).is_file():
            return Path(c), None
    if not recorded:
        return None, "the run records no stage-0 CLIP weights (clip_weights / clip_pretrained)"
    return None, f"the stage-0 CLIP checkpoint {recorded[0]} is gone"


def load_context(run: Run, *, limit: int, batch_size: int, device: str | None) -> AnalysisContext:
    """Load everything the analyses of `run` need (see the module docstring)."""
    from data_prep.collate import scan_usable
    from data_prep.load import load_dataset_dir
    from eval.report.images import dataset_dir
    from eval.system_eval import test_sentences
    from translate.translator import load_run_system

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    system, _ = load_run_system(run.path, device=dev)  # files, schema, damage and finite weights checked
    directory = dataset_dir(run)
    if directory is None:
        raise InputError(f"{run.path}/config.json names no data_path: the analysis needs the run's dataset")
    try:
        dsd = load_dataset_dir(directory)
    except (FileNotFoundError, ValueError, OSError) as err:
        raise InputError(f"dataset of run {run.path} unavailable: {str(err).splitlines()[0]}") from None
    for split in ("train", "validation", "test"):
        if split not in dsd or len(dsd[split]) == 0:
            raise InputError(f"dataset {directory} has no {split!r} rows")
    scans = {split: scan_usable(dsd[split], need_english=1, show_progress=False) for split in ("validation", "test")}
    # the attribute probes fit on (at most `limit` rows of) the training split: scan only those
    scans["train"] = scan_usable(dsd["train"].select(range(min(limit, len(dsd["train"])))), need_english=1,
                                 show_progress=False)
    sentences = test_sentences(dsd["test"], scans["test"].usable)
    notes = []
    if len(sentences) > limit:
        notes.append(f"analysed the first {limit} of {len(sentences)} test sentences (--limit)")
        sentences = sentences[:limit]
    teacher_path, why = teacher_checkpoint(run)
    if why is not None:
        notes.append(f"{why}: the run's own CLIP stands in for the stage-0 teacher")
    return AnalysisContext(run, system, dsd, scans, sentences, limit, batch_size, dev,
                           teacher_path, notes)
