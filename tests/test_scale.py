"""Scaling options of train.py: presets, mixed precision (fp32 n-dim loss), gradient accumulation,
activation checkpointing, and the shipped accelerate config files (2 CPU processes reproduce the
1-process losses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import training
from training.config import parse_config
from models.clip_loading import load_clip
from models.decoding import splice_decode
from models.ndim_loss import NDimContrastiveLoss
from models.splice import Splice, project_tokens
from models.student import build_scratch_student, enable_activation_checkpointing
from models.text_tower import DistributionTextTower
from two_processes import accelerate_launch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scale-cache")


def tiny(cache: Path, out: Path, *extra: str) -> list[str]:
    """Micro models on a 60-image world, no stage 0 (a seeded random CLIP), no evaluation, no token-CE-only
    baseline run; the n-dim loss on (`--contrastive-weight 1`), no pivot or self-training, as tests/tiny_run.py."""
    return ["--clip", "groundmt-micro", "--student-preset", "micro", "--synthetic-images", "60", "--teacher-steps", "0",
            "--steps", "4", "--batch-size", "8", "--k-english", "1", "--m-source", "1", "--log-every", "1",
            "--eval-every", "1000", "--checkpoint-every", "1000", "--no-evaluate", "--no-compare-ce", "--quiet",
            "--threads", "1", "--contrastive-weight", "1", "--no-pivot", "--self-train-rounds", "0",
            "--cache-dir", str(cache), "--out", str(out), *extra]


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "PYTHONPATH": str(ROOT)}


def losses(run: Path, key: str = "loss") -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {r["step"]: r[key] for r in records if "split" not in r}


# --- presets -------------------------------------------------------------------------------------------

def test_thesis_preset_values_and_precedence(tmp_path):
    def values(cfg):
        return (cfg.run.preset, cfg.teacher.clip, cfg.optim.batch_size, cfg.optim.mixed_precision,
                cfg.student.target_vocab)

    cfg = parse_config(["--preset", "thesis"])
    assert (cfg.teacher.clip, cfg.student.student_preset, cfg.student.target_vocab, cfg.optim.batch_size,
            cfg.optim.mixed_precision, cfg.teacher.teacher_steps) == ("ViT-B-32", "thesis", "full", 256, "bf16", 0)
    assert parse_config([]).teacher.clip == "groundmt-tiny" and parse_config([]).run.preset == "embedded"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"preset": "thesis", "batch-size": 64}))
    # preset from the file, the file over the preset
    assert values(parse_config(["--config", str(config)]))[:3] == ("thesis", "ViT-B-32", 64)
    cfg = parse_config(["--config", str(config), "--batch-size", "8", "--mixed-precision", "no"])
    assert values(cfg)[2:] == (8, "no", "full")  # the command line wins
    cfg = parse_config(["--config", str(config), "--preset", "embedded"])  # CLI preset over the file's
    assert values(cfg)[:3] == ("embedded", "groundmt-tiny", 64)


@pytest.mark.parametrize("argv, message", [
    (["--grad-accum", "0"], "--grad-accum must be at least 1"),
    (["--config", "/nonexistent/c.yaml"], "/nonexistent/c.yaml"),
    (["--preset", "huge"], "invalid choice"),
])
def test_bad_scale_options_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        parse_config(argv)
    assert err.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused only without CUDA")
def test_fp16_without_cuda_is_refused(capsys):
    with pytest.raises(SystemExit) as err:
        parse_config(["--mixed-precision", "fp16"])
    assert err.value.code == 2 and "fp16 needs CUDA" in capsys.readouterr().err


# --- mixed precision -------------------------------------------------------------------------------------

@pytest.mark.parametrize("similarity, labels", [("v4", "diagonal"), ("v0", "diagonal"), ("gram", "diagonal"),
                                                ("v4", "regions"), ("v4", "exact"), ("v4", "sigmoid")])
def test_ndim_loss_on_bf16_features_is_fp32(similarity, labels):
    """bf16 features (what a bf16 tower hands on) are promoted: the loss is the fp32 loss of the rounded
    features, finite, within bf16 rounding of the fp32 loss, with finite bf16 gradients."""
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(16, 64, generator=g)
    feats = [shared + 1.5 * torch.randn(16, 64, generator=g) for _ in range(4)]
    loss_fn = NDimContrastiveLoss(similarity, labels, n_axes=4)
    fp32 = loss_fn(feats).loss
    leaves = [f.bfloat16().requires_grad_() for f in feats]
    bf16 = loss_fn(leaves).loss
    assert bf16.dtype == torch.float32 and torch.isfinite(bf16)
    assert bf16.item() == loss_fn([f.bfloat16().float() for f in feats]).loss.item()
    assert abs(bf16.item() - fp32.item()) <= 2e-3 * abs(fp32.item())
    bf16.backward()
    assert all(leaf.grad.dtype == torch.bfloat16 and torch.isfinite(leaf.grad).all() for leaf in leaves)


def test_splice_under_bf16_autocast_is_finite_and_close():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 6, 32, generator=g, requires_grad=True)
    weight, embedding = 0.3 * torch.randn(5000, 32, generator=g), torch.randn(5000, 16, generator=g)
    for kind in ("soft", "gumbel"):
        torch.manual_seed(1)
        (ref,), ref_tokens, _ = project_tokens(hidden, weight, None, (embedding,), kind=kind, eot_id=3)
        torch.manual_seed(1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            (out,), tokens, eot_prob = project_tokens(hidden, weight, None, (embedding,), kind=kind, eot_id=3)
        assert torch.isfinite(out).all() and torch.isfinite(eot_prob).all()
        assert (tokens == ref_tokens).float().mean() >= 0.9  # bf16 logits may flip near-ties only
        if kind == "soft":
            assert (out.float() - ref).norm() <= 2e-2 * ref.norm()
        out.float().square().sum().backward()
        assert torch.isfinite(hidden.grad).all()
        hidden.grad = None


def test_bf16_training_keeps_the_loss_in_fp32(cache, tmp_path):
    """--mixed-precision bf16 autocasts the models but not the n-dim loss: with region labels on 5 axes under
    bf16 autocast this first loss was 286.5 instead of 4.27."""
    args = ["--labels", "regions", "--steps", "1", "--dropout", "0", "--k-english", "2", "--m-source", "2",
            "--batch-size", "16"]
    assert training.main(tiny(cache, tmp_path / "fp32", *args)) == 0
    # accelerate's state is a per-process singleton: another precision needs another process
    done = subprocess.run([sys.executable, str(ROOT / "train.py"),
                           *tiny(cache, tmp_path / "bf16", *args, "--mixed-precision", "bf16")],
                          env=env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    fp32, bf16 = losses(tmp_path / "fp32", "loss/contrastive")[1], losses(tmp_path / "bf16", "loss/contrastive")[1]
    assert abs(bf16 - fp32) <= 0.05 * fp32
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["mixed_precision"] == "bf16"


# --- gradient accumulation, activation checkpointing ---------------------------------------------------------

def test_grad_accum_steps_the_optimizer_once_per_step(cache, tmp_path):
    run = tmp_path / "run"
    assert training.main(tiny(cache, run, "--grad-accum", "3", "--steps", "2", "--activation-checkpointing",
                           "--decoding", "parallel-bos")) == 0
    assert sorted(losses(run)) == [1, 2]
    state = torch.load(next((run / "checkpoints").glob("step_*")) / "optimizer.bin", weights_only=False)
    assert {int(s["step"]) for s in state["state"].values()} == {2}  # AdamW stepped twice, after 6 batches
    log = (run / "train.log").read_text()
    assert "activation checkpointing: student encoder and decoder" in log
    assert "RANDOMLY INITIALISED" in log  # --teacher-steps 0 without weights is said loudly


@pytest.mark.parametrize("mode", ["teacher-forced", "free-running"])
def test_activation_checkpointing_changes_no_value_or_gradient(mode):
    """Same features and gradients with and without; free-running keeps its decoder (and KV cache) as is."""
    clip, _, tokenizer = load_clip("groundmt-micro")
    tower = DistributionTextTower(clip)
    source = torch.randint(3, 100, (3, 7), generator=torch.Generator().manual_seed(0))
    labels = tokenizer(["a red circle", "two blue squares and a circle", "green"])[:, 1:]

    def run(checkpointing: bool):
        torch.manual_seed(0)
        student = build_scratch_student(100, "micro", max_length=16, dropout=0.0).train()
        if checkpointing:
            enable_activation_checkpointing(student, mode)
        out = splice_decode(student, Splice("soft"), tower, source, mode=mode, labels=labels if mode == "teacher-forced"
                     else None, embedding=tower.token_embedding.weight)
        features = tower.encode_embeddings(out.embeddings, eot="ids", **out.eot_evidence())
        features.square().sum().backward()
        return features.detach(), [p.grad.clone() for p in student.parameters() if p.grad is not None]

    (f0, g0), (f1, g1) = run(False), run(True)
    torch.testing.assert_close(f1, f0)
    assert len(g0) == len(g1)
    for a, b in zip(g0, g1):
        torch.testing.assert_close(b, a)


# --- accelerate config files ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ddp_2proc_cpu", "ddp_1node_Ngpu", "fsdp", "deepspeed_zero2"])
def test_shipped_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    expected = {"ddp_2proc_cpu": "MULTI_GPU", "ddp_1node_Ngpu": "MULTI_GPU", "fsdp": "FSDP",
                "deepspeed_zero2": "DEEPSPEED"}[name]
    assert config.distributed_type.value == expected and config.num_machines == 1


def trained_weights(run: Path) -> dict[str, torch.Tensor]:
    """The exported system's weights (the student's, RUN/model/student, and CLIP's), without the
    attention key biases: a key bias adds the same amount to every score of a query, which softmax
    ignores, so its gradient is rounding noise — and Adam scales noise up to steps of about the learning
    rate, different in every process layout (measured: 4e-5 apart after 4 steps, every other weight at
    most 1.1e-6)."""
    student = load_file(run / "model" / "student" / "model.safetensors")
    clip = torch.load(run / "model" / "clip" / "open_clip_model.pt", weights_only=True)["state_dict"]
    weights = {**{f"student.{k}": v for k, v in student.items() if not k.endswith("k_proj.bias")},
               **{f"clip.{k}": v for k, v in clip.items()}}
    for name in [k for k in weights if k.endswith("in_proj_bias")]:  # open_clip packs the q, k, v biases
        q, _, v = weights.pop(name).chunk(3)
        weights[name + "[q,v]"] = torch.cat([q, v])
    return weights


@pytest.mark.slow
@pytest.mark.parametrize("freeze", ["both", "none"])
def test_two_cpu_processes_from_the_config_file_reproduce_one_process(cache, tmp_path, freeze):
    """The gathered n-way loss is the whole batch's on every rank, and DDP averages the gradients, so 2
    processes follow the 1-process run: the same losses and the same trained weights — with `--freeze none`
    the CLIP towers' too (they run inside the DDP-wrapped system). Deterministic settings (soft splice, no
    dropout, no token CE: a per-rank mean over rows with a translation would weight the ranks unequally)."""
    args = ["--splice", "soft", "--dropout", "0", "--token-ce-weight", "0", "--steps", "4", "--freeze", freeze]
    assert training.main(tiny(cache, tmp_path / "one", *args)) == 0
    done = accelerate_launch(["--config_file", str(CONFIGS / "ddp_2proc_cpu.yaml"), str(ROOT / "train.py"),
                              *tiny(cache, tmp_path / "two", *args)], env=env(), cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(one) == sorted(two) == [1, 2, 3, 4]
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=1e-5), step  # measured: at most 2.2e-7 over 8 steps
    lr = {s: r for s, r in losses(tmp_path / "two", "lr").items()}
    assert lr == pytest.approx(losses(tmp_path / "one", "lr"))  # the schedule steps once per step, not per process
    weights, weights_two = trained_weights(tmp_path / "one"), trained_weights(tmp_path / "two")
    assert weights.keys() == weights_two.keys()
    for name, weight in weights.items():  # measured: at most 1.5e-7 (--freeze both), 1.1e-6 (--freeze none)
        torch.testing.assert_close(weights_two[name], weight, rtol=0, atol=5e-6, msg=name)
    torch.manual_seed(0)  # the run's CLIP before stage 1: --teacher-steps 0 seeds a random one with --seed
    start = load_clip("groundmt-micro")[0].state_dict()
    moved = {tower: max(float((weights[f"clip.{k}"] - v).abs().max()) for k, v in start.items()
                        if f"clip.{k}" in weights and k.startswith("visual.") == (tower == "image"))
             for tower in ("image", "text")}
    if freeze == "none":
        assert min(moved.values()) > 1e-4, moved  # both towers trained (~1e-3): the comparison above covers them
    else:
        assert max(moved.values()) == 0, moved


@pytest.mark.parametrize("engine", ["FSDP", "DEEPSPEED"])
def test_fsdp_and_deepspeed_configs_are_refused_with_one_line(engine, tmp_path):
    """What accelerate launch --config_file fsdp.yaml / deepspeed_zero2.yaml sets: refused before any work."""
    done = subprocess.run([sys.executable, str(ROOT / "train.py"), "--out", str(tmp_path / "run"),
                           "--cache-dir", str(tmp_path / "cache")],
                          env={**env(), f"ACCELERATE_USE_{engine}": "true"}, cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert last.startswith("error: the accelerate config asks for") and engine in last
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # not even the data was built
