"""Training a GroundMT student (the library behind `train.py`).

`options` (every option, grouped) → `config` (parsing, rules, resolution) → `data` (dataset,
targets) → `stage0` (the CLIP teacher) → `build` (system, objective, optimizer) → `batches` (what
each batch reads) → `task` (one batch's losses) → `self_training` (pseudo targets judged by images)
→ `trainer` (stage 1: the loop, validation, checkpoints, export) → `runs` (a run and its baseline).
"""
from training.runs import main, train

__all__ = ["main", "train"]
