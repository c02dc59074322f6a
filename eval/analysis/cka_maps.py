"""Layer × layer linear CKA maps (`eval.cka`: unbiased HSIC, accumulated over minibatches).

- **student path vs English**: the CLIP text tower reading the student's spliced translation of
  a test caption (the run's CLIP, argmax splice as in evaluation) against the teacher's text
  tower reading the human English translation of the same caption. The two token sequences
  differ, so positions do not correspond and token-level CKA is undefined; every sentence is
  one sample, pooled two ways: `mean` over its real positions (SOT … EOT) and `eot` — the
  position the tower pools at (the run's EOT finder for the student, `gumbel` taken without
  noise as `argmax`; the EOT token for the reference).
- **tower before/after**: when the run trained a CLIP tower (`--freeze none|text|image`), that
  tower against the stage-0 teacher's on the same inputs (test images; English references),
  pooled where the tower pools (class token / EOT) and by the mean. A frozen tower gets no map:
  the result says it did not move and gives the largest parameter change measured against the
  teacher (0 when the checkpoint is the one the run started from).

A cell is None when CKA is undefined: a representation that does not vary across the samples
(a collapsed student writing the same sentence for every caption) has no HSIC with itself.
"""
from __future__ import annotations

import torch
from matplotlib.figure import Figure

from eval.analysis.layers import at_positions, block_states, layer_names, masked_mean
from eval.analysis.plots import Plot, heatmap
from eval.cka import LinearCKA
from models.eot import EOTFinder

POOLINGS = ("mean", "eot")
FROZEN = {"image": ("both", "image"), "text": ("both", "text")}


def cka_batches(n: int, size: int) -> list[slice]:
    """Batches of `size` samples; a last batch of fewer than 4 (the unbiased HSIC needs 4) joins
    the one before it."""
    starts = list(range(0, n, max(size, 4)))
    if len(starts) > 1 and n - starts[-1] < 4:
        starts.pop()
    return [slice(s, e) for s, e in zip(starts, starts[1:] + [n])]


class CKAGrid:
    """One `LinearCKA` per (row layer, column layer) pair."""

    def __init__(self, rows: list[str], cols: list[str]):
        self.rows, self.cols = rows, cols
        self.cells = [[LinearCKA() for _ in cols] for _ in rows]

    def update(self, row_states: list[torch.Tensor], col_states: list[torch.Tensor]) -> None:
        for i, a in enumerate(row_states):
            for j, b in enumerate(col_states):
                self.cells[i][j].update(a, b)

    def compute(self) -> dict:
        matrix, undefined = [], 0
        for row in self.cells:
            values = []
            for cell in row:
                try:
                    values.append(cell.compute())
                except ValueError:  # no estimated variance on one side
                    values.append(None)
                    undefined += 1
            matrix.append(values)
        out = {"rows": self.rows, "cols": self.cols, "matrix": matrix, "samples": self.cells[0][0].samples,
               "batches": self.cells[0][0].batches}
        if undefined:
            out["undefined_cells"] = undefined
            out["undefined_reason"] = ("a representation has no estimated variance across the samples "
                                       "(e.g. the same translation for every caption)")
        return out


def student_eot(system, decoded) -> torch.Tensor:
    """`[B]` position where the run's EOT finder pools the student's sequence (gumbel → argmax)."""
    finder = EOTFinder("argmax" if system.eot_finder == "gumbel" else system.eot_finder)
    tower = system.tower
    return finder.select(embeddings=decoded.embeddings, eot_embedding=tower.token_embedding.weight[tower.eot_id],
                         **decoded.eot_evidence())


def english_inputs(tokenizer, texts: list[str], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids [B, S], mask of SOT … EOT [B, S], EOT position [B]) of English texts for an open_clip text tower."""
    ids = tokenizer(texts).to(device)
    eot = ids.argmax(-1)
    mask = torch.arange(ids.shape[1], device=device)[None, :] <= eot[:, None]
    return ids, mask, eot


@torch.no_grad()
def student_vs_english(ctx) -> dict:
    """CKA maps (mean and EOT pooling) of the student's CLIP-read translation vs the teacher's
    English text tower on the human translation, over the translated test sentences."""
    system, teacher = ctx.system, ctx.teacher()
    items = ctx.translated
    if len(items) < 4:
        return {"skipped": f"needs at least 4 test sentences with a human translation, found {len(items)}"}
    rows, cols = layer_names(system.tower.transformer), layer_names(teacher.transformer)
    grids = {p: CKAGrid(rows, cols) for p in POOLINGS}
    for part in cka_batches(len(items), ctx.batch_size):
        batch = items[part]
        enc = {k: v.to(ctx.device) for k, v in system.tokenize_source([s["source"] for s in batch]).items()}
        decoded = system.splice_decode(enc["source_ids"], enc["source_mask"])
        with block_states(system.tower.transformer) as student:
            system.encode_decoded(decoded)
        s_mask = decoded.candidates.clone()
        s_mask[:, 0] = True  # SOT … EOT
        s_eot = student_eot(system, decoded)
        ids, t_mask, t_eot = english_inputs(system.clip_tokenizer, [s["references"][0] for s in batch], ctx.device)
        with block_states(teacher.transformer) as english:
            teacher.encode_text(ids)
        grids["mean"].update([masked_mean(h, s_mask) for h in student], [masked_mean(h, t_mask) for h in english])
        grids["eot"].update([at_positions(h, s_eot) for h in student], [at_positions(h, t_eot) for h in english])
    return {p: grids[p].compute() for p in POOLINGS}


def _max_change(run_tower: torch.nn.Module, teacher_tower: torch.nn.Module) -> float:
    before = dict(teacher_tower.named_parameters())
    return max(float((p.detach() - before[n].detach()).abs().max()) for n, p in run_tower.named_parameters())


def _text_tower(clip) -> torch.nn.Module:
    """The text-side modules of an open_clip CLIP as one module (for parameter comparison)."""
    return torch.nn.ModuleDict({n: m for n, m in clip.named_children() if n != "visual"})


@torch.no_grad()
def tower_change(ctx, kind: str) -> dict:
    """CKA of the run's `kind` ("image"/"text") tower against the stage-0 teacher's, when trained."""
    system, freeze = ctx.system, ctx.run.config.get("freeze", "both")
    run_clip = system.clip
    if freeze in FROZEN[kind]:
        out = {"skipped": f"the {kind} tower was frozen (--freeze {freeze}): it did not move"}
        if ctx.teacher_path is not None:
            teacher = ctx.teacher()
            if kind == "image":
                out["max_abs_parameter_change"] = _max_change(run_clip.visual, teacher.visual)
            else:
                out["max_abs_parameter_change"] = _max_change(_text_tower(run_clip), _text_tower(teacher))
        return out
    if ctx.teacher_path is None:
        return {"skipped": f"the {kind} tower was trained, but the stage-0 checkpoint is unavailable "
                           "(no 'before' to compare with)"}
    teacher = ctx.teacher()
    if kind == "image":
        first = {}
        for s in ctx.sentences:
            first.setdefault(s["row"], s)
        inputs = list(first)
        run_t, teacher_t = run_clip.visual.transformer, teacher.visual.transformer
    else:
        inputs = [s["references"][0] for s in ctx.translated]
        run_t, teacher_t = run_clip.transformer, teacher.transformer
    if len(inputs) < 4:
        return {"skipped": f"needs at least 4 test {kind} inputs, found {len(inputs)}"}
    names = layer_names(run_t)
    grids = {p: CKAGrid(names, layer_names(teacher_t)) for p in POOLINGS}
    for part in cka_batches(len(inputs), ctx.batch_size):
        if kind == "image":
            images = ctx.dsd["test"].select(inputs[part])["image"]
            x = torch.stack([system.preprocess(im.convert("RGB")) for im in images]).to(ctx.device)
            states = []
            for model in (run_clip, teacher):
                with block_states(model.visual.transformer) as h:
                    model.encode_image(x)
                states.append(h)
            tok = run_clip.visual.pool_type == "tok"  # the class token is position 0
            pooled = {"mean": [[masked_mean(s, torch.ones(s.shape[:2], dtype=torch.bool, device=s.device))
                                for s in h] for h in states],
                      "eot": [[s[:, 0] if tok else s.mean(1) for s in h] for h in states]}
        else:
            ids, mask, eot = english_inputs(system.clip_tokenizer, inputs[part], ctx.device)
            states = []
            for model in (run_clip, teacher):
                with block_states(model.transformer) as h:
                    model.encode_text(ids)
                states.append(h)
            pooled = {"mean": [[masked_mean(s, mask) for s in h] for h in states],
                      "eot": [[at_positions(s, eot) for s in h] for h in states]}
        for p in POOLINGS:
            grids[p].update(*pooled[p])
    out = {p: grids[p].compute() for p in POOLINGS}
    out["pooled_at"] = ("class token" if run_clip.visual.pool_type == "tok" else "mean of tokens") \
        if kind == "image" else "EOT"
    return out


def analyse(ctx) -> tuple[dict, list[Plot]]:
    """The CKA part: results and heatmaps."""
    result = {"student_vs_english": student_vs_english(ctx),
              "image_tower": tower_change(ctx, "image"), "text_tower": tower_change(ctx, "text")}
    plots = []
    maps = (("student_vs_english", "student path (CLIP reads the translation)", "teacher English tower (reference)"),
            ("image_tower", "image tower after training", "image tower of the stage-0 teacher"),
            ("text_tower", "text tower after training", "text tower of the stage-0 teacher"))
    for key, ylabel, xlabel in maps:
        entry = result[key]
        if "skipped" in entry:
            continue
        fig = Figure(figsize=(9.5, 4.2))
        axes = fig.subplots(1, 2)
        for ax, pooling in zip(axes, POOLINGS):
            grid = entry[pooling]
            image = heatmap(ax, grid["matrix"], grid["rows"], grid["cols"])
            label = "mean over positions" if pooling == "mean" else (
                "EOT position" if key != "image_tower" else entry["pooled_at"])
            ax.set_title(f"{label} (n={grid['samples']})", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
        axes[0].set_ylabel(ylabel, fontsize=8)
        fig.colorbar(image, ax=list(axes), fraction=0.03, label="linear CKA (unbiased)")
        titles = {"student_vs_english": "CKA: student path vs English text tower",
                  "image_tower": "CKA: image tower before/after joint training",
                  "text_tower": "CKA: text tower before/after joint training"}
        plots.append(Plot(f"cka_{key}.png", titles[key],
                          "Linear CKA (unbiased HSIC, minibatch-accumulated) between layers; grey cells are "
                          "undefined (no variance across samples). Left: sentences pooled by the mean over "
                          "their positions; right: at the pooling position.", fig))
    return result, plots
