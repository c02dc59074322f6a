"""`tiny(cache, out, *extra)`: train.py arguments for a tiny run (micro CLIP and student, 60 pictures
of the shapes world, 8 steps, no token-CE-only baseline run) — shared by the tests that train one; later flags in
`extra` override these (with `--data-dir` in `extra`, no `--world-images`, which sizes only an embedded
world and is refused beside a dataset). The run takes the grounded path of the n-dim loss (`--contrastive-weight 1`,
no pivot, no self-training), which most of these tests exercise; the default recipe has its own tests."""
from __future__ import annotations

from pathlib import Path


def tiny(cache: Path, out: Path, *extra: str) -> list[str]:
    world = [] if "--data-dir" in extra else ["--world-images", "60"]
    return ["--data", "synthetic", "--clip", "groundmt-micro", "--student-preset", "micro", *world,
            "--teacher-steps", "3", "--teacher-batch-size", "8", "--steps", "8", "--batch-size", "8",
            "--k-english", "1", "--m-source", "1", "--log-every", "1", "--eval-every", "4",
            "--checkpoint-every", "4", "--eval-bootstrap", "20", "--quiet", "--threads", "1", "--no-compare-ce",
            "--contrastive-weight", "1", "--no-pivot", "--self-train-rounds", "0",
            "--cache-dir", str(cache), "--out", str(out), *extra]
