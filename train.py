"""Train a GroundMT student: `accelerate launch train.py --lang es`.

What a run does, in order (the code is the package `training/`, docs/training.md explains it):

1. Options (`training.options`, `training.config`): defaults < `--preset` < `--recipe` <
   `--config FILE.yaml` < command-line flags; every value and every combination is checked before
   anything is built (one line, exit code 2).
2. Data (`training.data`): the dataset — built once into the cache for the embedded synthetic world
   or raw files — checked row by row; the options left to the data are resolved, and the resolved
   configuration is written to `RUN/config.json`.
3. Stage 0 (`training.stage0`): a CLIP that reads English — real weights (`--clip-pretrained`), or
   a tiny teacher trained on the English captions and cached.
4. Stage 1 (`training.trainer`, `training.task`): the Marian student, read by CLIP; each step's
   loss is the token cross-entropy on captions that have a (human or pseudo) translation and,
   when on, the n-dim contrastive loss over image, English captions and the student's
   translations; grounded self-training rounds add pseudo targets the images judge.
5. Export and evaluation on the test split; with `--compare-ce` (on for the embedded world) the
   same student without images (the `ce` recipe) in `RUN/baseline-ce`, and the two side by side.

`RUN/` holds config.json, metrics.jsonl, train.log, checkpoints/, targets/, model/, eval/ and
report.html. `--resume` continues from the last complete checkpoint with the same data order and
RNG state; SIGTERM / SIGINT checkpoint and stop.
"""
import sys

from training.runs import main

if __name__ == "__main__":
    sys.exit(main())
