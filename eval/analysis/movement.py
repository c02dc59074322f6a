"""How far each tower and module moved, per layer, over the run's checkpoints.

Parameters are grouped by layer (`layer_group`: the image and text towers' embeddings, blocks and
heads, the student's encoder / decoder layers, its head, the splice, the vocabulary bridge). For
a group the movement between two states a, b is the relative Frobenius distance
‖a − b‖_F / ‖b‖_F over all of the group's parameters (float tensors only; buffers such as the
shortlist ids are not parameters). Two views:

- `to_final`: every kept checkpoint (`RUN/checkpoints/step_*/`, accelerate's safetensors file
  of the grounded system — recognised by its `clip.` and `student.` keys, since the file's
  index depends on what else was prepared) against the exported model (`RUN/model`);
- `from_teacher`: the CLIP groups of each checkpoint and of the exported model against the
  stage-0 teacher checkpoint the run started from. A frozen tower shows 0 here.

The untrained student is not saved in a run, so the student's movement from its initial state
is not available; the earliest kept checkpoint is the first point of its curve.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from matplotlib.figure import Figure
from safetensors import safe_open

from eval.analysis.plots import Plot, heatmap

STEP_DIR = re.compile(r"^step_(\d+)$")
_RULES = (
    (re.compile(r"^clip\.visual\.transformer\.resblocks\.(\d+)\."), "image", "block {}"),
    (re.compile(r"^clip\.visual\.(conv1|class_embedding|positional_embedding|ln_pre)\b"), "image", "embed"),
    (re.compile(r"^clip\.visual\."), "image", "head"),
    (re.compile(r"^clip\.transformer\.resblocks\.(\d+)\."), "text", "block {}"),
    (re.compile(r"^clip\.(token_embedding|positional_embedding)\b"), "text", "embed"),
    (re.compile(r"^clip\.(ln_final|text_projection)\b"), "text", "head"),
    (re.compile(r"^student\.model\.encoder\.layers\.(\d+)\."), "student encoder", "layer {}"),
    (re.compile(r"^student\.model\.encoder\."), "student encoder", "embed"),
    (re.compile(r"^student\.model\.decoder\.layers\.(\d+)\."), "student decoder", "layer {}"),
    (re.compile(r"^student\.model\.decoder\."), "student decoder", "embed"),
    (re.compile(r"^student\.model\.shared\b"), "student decoder", "embed"),
    (re.compile(r"^student\."), "student", "head"),
    (re.compile(r"^vocab\."), "bridge", "all"),  # a pretrained student's vocabulary bridge (BridgedVocab.weight)
)


def layer_group(name: str) -> str:
    """"<module>/<layer>" of a parameter name of the grounded system (blocks numbered from 1)."""
    for pattern, module, layer in _RULES:
        m = pattern.match(name)
        if m:
            number = m.group(1) if m.groups() and m.group(1).isdigit() else None
            return f"{module}/{layer.format(int(number) + 1) if number else layer}"
    head = name.split(".")[0]
    return f"{head}/all" if head != "clip" else f"clip/{name.split('.')[1]}"


def system_state_file(checkpoint: Path) -> Path | None:
    """The safetensors file of a checkpoint that holds the grounded system (`clip.*` and `student.*`)."""
    for path in sorted(checkpoint.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            keys = set(f.keys())
        if any(k.startswith("student.") for k in keys) and any(k.startswith("clip.") for k in keys):
            return path
    return None


def _load(path: Path, names: set[str]) -> dict[str, torch.Tensor]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).float() for k in f.keys() if k in names}


def relative_distances(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """{group: ‖state − reference‖_F / ‖reference‖_F} over the parameters both hold."""
    diff, norm = {}, {}
    for name, ref in reference.items():
        if name not in state:
            continue
        group = layer_group(name)
        diff[group] = diff.get(group, 0.0) + float((state[name].float() - ref.float()).square().sum())
        norm[group] = norm.get(group, 0.0) + float(ref.float().square().sum())
    return {g: (diff[g] / norm[g]) ** 0.5 if norm[g] > 0 else (0.0 if diff[g] == 0 else float("inf"))
            for g in sorted(diff, key=_group_order)}


def _group_order(group: str) -> tuple:
    module, layer = group.split("/", 1)
    modules = ["image", "text", "student encoder", "student decoder", "student"]
    number = int(layer.split()[-1]) if layer.split()[-1].isdigit() else (-1 if layer == "embed" else 10 ** 6)
    return (modules.index(module) if module in modules else len(modules), module, number, layer)


def movement(ctx) -> dict:
    """`to_final` and `from_teacher` movements (see the module docstring)."""
    final = {n: p.detach().float().cpu() for n, p in ctx.system.named_parameters()}
    teacher = None
    if ctx.teacher_path is not None:
        teacher = {f"clip.{n}": p.detach().float().cpu() for n, p in ctx.teacher().named_parameters()}
    checkpoints = sorted((int(m.group(1)), p) for p in (ctx.run.path / "checkpoints").glob("step_*")
                         if (m := STEP_DIR.match(p.name)) and p.is_dir())
    out = {"to_final": {}, "from_teacher": {}, "checkpoints": [], "notes": []}
    for step, directory in checkpoints:
        path = system_state_file(directory)
        if path is None:
            out["notes"].append(f"{directory} holds no safetensors file of the grounded system; skipped")
            continue
        state = _load(path, set(final))
        out["checkpoints"].append({"step": step, "file": str(path)})
        out["to_final"][str(step)] = relative_distances(state, final)
        if teacher is not None:
            out["from_teacher"][str(step)] = relative_distances(state, teacher)
    if teacher is not None:
        out["from_teacher"]["final"] = relative_distances(final, teacher)
    else:
        out["notes"].append("no stage-0 teacher checkpoint: movement of the CLIP towers from it is unavailable")
    if not checkpoints:
        out["notes"].append(f"{ctx.run.path / 'checkpoints'} holds no step_* checkpoint")
    return out


def analyse(ctx) -> tuple[dict, list[Plot]]:
    result = movement(ctx)
    plots = []
    for key, title, caption in (
            ("to_final", "Parameter movement: checkpoints → exported model",
             "Relative Frobenius distance ‖θ_step − θ_final‖/‖θ_final‖ per layer group, for each kept checkpoint."),
            ("from_teacher", "Parameter movement of the CLIP towers from the stage-0 teacher",
             "Relative Frobenius distance ‖θ − θ_teacher‖/‖θ_teacher‖ per layer group of the image and text "
             "towers (0: the tower was frozen).")):
        table = result[key]
        if not table:
            continue
        columns = list(table)
        groups = list(dict.fromkeys(g for col in table.values() for g in col))
        groups.sort(key=_group_order)
        matrix = [[table[c].get(g) for c in columns] for g in groups]
        top = max([v for row in matrix for v in row if v is not None] + [1e-12])
        fig = Figure(figsize=(2.5 + 0.8 * len(columns), 1.5 + 0.22 * len(groups)))
        ax = fig.add_subplot()
        image = heatmap(ax, matrix, groups, [f"step {c}" if c.isdigit() else c for c in columns], vmax=top,
                        cmap="magma", fmt="{:.3g}")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.05, label="relative distance")
        plots.append(Plot(f"movement_{key}.png", title, caption, fig))
    return result, plots
