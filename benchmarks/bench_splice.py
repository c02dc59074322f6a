"""Peak memory and time of one student + CLIP forward/backward per splice, side by side.

B=32 (`--batch-size`), S=77, V=49408 (CLIP's vocabulary), tiny transformer widths (student preset "tiny",
open_clip `groundmt-tiny` text tower stretched to a 77-token context). Variants:

- `linear`          — our linear splice (no B·S·V tensor by construction)
- `gumbel`          — our chunked straight-through Gumbel splice (recomputed per chunk)
- `soft`            — our chunked soft splice
- `gumbel-naive`    — the reference: full logits → `F.gumbel_softmax(hard=True)` → `@ E`
- `gumbel-free`     — our Gumbel splice, free-running decoding (77 autoregressive steps)

Each variant runs in a fresh process. CPU peak memory is the resident-set high-water mark of the
step alone (`/proc/self/clear_refs` resets it after the models are built); on CUDA it is
`torch.cuda.max_memory_allocated`. Children run with `MALLOC_MMAP_THRESHOLD_=65536` so freed tensors
leave the resident set at once (otherwise glibc's heap reuse makes the RSS peak depend on history). One B·S·V fp32 tensor is 32·77·49408·4 B = 464 MiB.

    python benchmarks/bench_splice.py            # writes benchmarks/results/bench_splice.json
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from peak_memory import PeakMemory, fresh_process_env, sync  # noqa: E402

VARIANTS = ("linear", "gumbel", "soft", "gumbel-naive", "gumbel-free")
S, V = 77, 49408
DEFAULT_BATCH = 32


def run_variant(variant: str, device: str, threads: int, repeats: int, B: int = DEFAULT_BATCH) -> dict:
    """Build the models, then measure one forward/backward (memory) and `repeats` more (time)."""
    sys.path.insert(0, str(ROOT))
    import open_clip
    import torch
    import torch.nn.functional as F
    from transformers.models.marian.modeling_marian import shift_tokens_right

    from models.decoding import splice_decode
    from models.splice import Splice
    from models.student import build_scratch_student
    from models.text_tower import DistributionTextTower
    from models.tiny_configs import register_tiny_clip_configs

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    register_tiny_clip_configs()
    clip = open_clip.create_model("groundmt-tiny", force_context_length=S).to(device)
    tower = DistributionTextTower(clip)
    student = build_scratch_student(1000, "tiny").to(device).train()
    tokenizer = open_clip.get_tokenizer("groundmt-tiny", context_length=S)
    source = torch.randint(3, 1000, (B, 24), device=device)
    labels = tokenizer([f"caption number {i} " * (1 + i % 12) for i in range(B)]).to(device)[:, 1:]
    embedding = tower.token_embedding.weight
    kind = variant.removesuffix("-free").removesuffix("-naive")
    mode = "free-running" if variant.endswith("-free") else "teacher-forced"
    splice = Splice.for_student(kind, student, embedding).to(device)

    def step() -> float:
        student.zero_grad(set_to_none=True)
        clip.zero_grad(set_to_none=True)
        if variant == "gumbel-naive":
            decoder_ids = shift_tokens_right(labels, 0, student.config.decoder_start_token_id)
            logits = student(input_ids=source, decoder_input_ids=decoder_ids).logits  # [B, S-1, V] at once
            y = F.gumbel_softmax(logits, tau=1.0, hard=True)
            x = torch.cat([embedding[tower.sot_id].expand(B, 1, -1), y @ embedding], 1)
            features = tower.encode_embeddings(x, eot="ids", eot_index=labels.argmax(-1) + 1)
        else:
            decoded = splice_decode(student, splice, tower, source, mode=mode, labels=labels, max_length=S, embedding=embedding)
            features = tower.encode_embeddings(decoded.embeddings, eot="ids", **decoded.eot_evidence())
        loss = F.normalize(features, dim=-1).sum()
        loss.backward()
        return loss.item()

    with PeakMemory(device) as memory:
        start = time.perf_counter()
        step()
        sync(device)
    peak = memory.peak_bytes
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return {"variant": variant, "peak_step_memory_mib": peak / 2**20, "first_step_s": first,
            "step_s": sorted(times)[len(times) // 2] if times else first, "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: stable on shared CPUs)")
    parser.add_argument("--repeats", type=int, default=2, help="timed steps after the measured first step")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="B, sequences per step")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_splice.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args.device, args.threads, args.repeats, args.batch_size)))
        return

    rows = {}
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--child", variant, "--device", args.device, "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--batch-size", str(args.batch_size)]
        # A fixed glibc mmap threshold gives every tensor above 64 KiB its own mapping, returned to
        # the OS when freed, so the RSS high-water mark tracks live tensors, not allocator history.
        env = fresh_process_env(HF_HUB_OFFLINE="1", MALLOC_MMAP_THRESHOLD_="65536")
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise SystemExit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
        rows[variant] = json.loads(done.stdout.strip().splitlines()[-1])
        r = rows[variant]
        print(f"{variant:>13}: peak {r['peak_step_memory_mib']:8.1f} MiB   step {r['step_s']:7.2f} s", flush=True)

    B = args.batch_size
    bsv_mib = B * S * V * 4 / 2**20
    ratios = {}
    if "gumbel-naive" in rows and "gumbel" in rows:
        naive, ours = rows["gumbel-naive"], rows["gumbel"]
        ratios["naive_over_chunked_gumbel_memory"] = naive["peak_step_memory_mib"] / ours["peak_step_memory_mib"]
        ratios["chunked_over_naive_gumbel_time"] = ours["step_s"] / naive["step_s"]
    if "linear" in rows and "gumbel" in rows:
        ratios["gumbel_over_linear_memory"] = rows["gumbel"]["peak_step_memory_mib"] / rows["linear"]["peak_step_memory_mib"]
        ratios["gumbel_over_linear_time"] = rows["gumbel"]["step_s"] / rows["linear"]["step_s"]
    result = {
        "shape": {"B": B, "S": S, "V": V}, "one_bsv_fp32_tensor_mib": bsv_mib,
        "device": args.device, "threads": args.threads, "machine": platform.processor() or platform.machine(),
        "student": "build_scratch_student(1000, 'tiny')", "clip": "groundmt-tiny, context 77",
        "variants": rows, "ratios": ratios,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(ratios, indent=2))
    print(f"one B·S·V fp32 tensor = {bsv_mib:.0f} MiB; wrote {args.out}")


if __name__ == "__main__":
    main()
