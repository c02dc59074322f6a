"""`python -m eval analyze RUN [RUN ...] [--out DIR]`: the thesis' analyses of trained runs.

Parts (one file each; docs/analysis.md says what each computes and how to read its figures):
`cka` (`cka_maps.py`: layer × layer CKA of the student's CLIP-read path vs the teacher's English
tower; towers before/after joint training), `probes` (`probes.py`: test-time LM head, attribute
probes; labels from `labels.py`), `movement` (`movement.py`: parameter movement per layer over
checkpoints), `tokens` (`tokens.py`: the student's target tokens vs the references), `health`
(`training_health.py`: embedding health over training and on the final test features).
`analyze.py` loads a run once (`context.py`) and writes analysis.json and the PNG figures
(`plots.py`); `summary.py` turns analysis.json into headline lines (CLI and report);
`cli.py` is the subcommand. Heavy imports happen inside functions: importing this package
(as the report does) stays light.
"""
from eval.analysis.cli import add_analyze_arguments, run_analyze

__all__ = ["add_analyze_arguments", "run_analyze"]
