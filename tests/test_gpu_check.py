"""benchmarks/gpu_check.sh: every part runs at toy size on the CPU (--cpu-dry-run), and a failing or
overrunning part costs only its own figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from bench_train_step import PARTS  # noqa: E402


@pytest.mark.benchmark
def test_cpu_dry_run_runs_every_part(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-dry-run", "--out", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] is True
    assert {name: part["status"] for name, part in result["parts"].items()} == dict.fromkeys(gpu_check.PARTS, "ok")
    assert all(v == "ok" for v in result["parts"]["environment"]["result"]["imports"].values())

    thesis = result["parts"]["thesis_run"]["result"]
    assert thesis["steps_done"] == 3 and thesis["worker"]["rc"] == 0 and thesis["steps_per_s"] > 0
    assert thesis["config"]["preset"] == "thesis" and thesis["config"]["target_vocab"] == "full"
    assert thesis["config"]["mixed_precision"] == "bf16"
    assert all(r["loss"] == r["loss"] for r in thesis["records"])  # not NaN

    cell = result["parts"]["train_step_cost"]["result"]["cells"][0]
    assert set(cell["times_s"]) == set(PARTS) and all(t >= 0 for t in cell["times_s"].values())
    assert cell["B"] == 4 and 0 < cell["ndim_loss_share"] < 1 and cell["peak_step_bytes"] > 0
    assert cell["config"]["target_vocab"] == "full" and cell["config"]["preset"] == "thesis"
    assert (tmp_path / "bench_train_step_gpu_check.png").is_file()  # the plot lands beside the JSON ($OUT)

    lsa = result["parts"]["lsa"]["result"]
    assert {r["method"] for r in lsa["grid"]} == {"scipy_bare", "exact", "sinkhorn", "hybrid"}
    assert all(r["f1"] == 1.0 for r in lsa["grid"] if r["method"] in ("exact", "hybrid"))  # both always optimal
    assert "size=16" in lsa["targets"]["exact_at_N1_within_1.2x_of_a_bare_scipy_call"]
    ndim = result["parts"]["ndim"]["result"]
    assert [(r["n"], r["B"]) for r in ndim["grid"]] == [(3, 4)] and ndim["grid"][0]["fibre"]["median_s"] > 0
    assert result["parts"]["splice"]["result"]["variants"]["gumbel"]["peak_step_memory_mib"] > 0
    assert result["parts"]["cuda_tests"]["result"]["tests"] == {  # on a CPU the CUDA test skips
        "test_methods_run_on_cuda": "skipped", "test_auto_is_exact_on_cpu_and_hybrid_for_large_cuda_batches": "passed"}
    assert "thesis_run" in result["summary"] and "step_thesis_B4" in result["summary"]


def test_a_failing_part_keeps_the_others(tmp_path, monkeypatch):
    ok = [sys.executable, "-c", f"import json; json.dump({{'grid': []}}, open({str(tmp_path / 'w' / 'ndim.json')!r}, 'w'))"]
    fail = [sys.executable, "-c", "raise SystemExit('boom')"]
    slow = [sys.executable, "-c", "import time; time.sleep(60)"]
    monkeypatch.setattr(gpu_check, "commands", lambda dry, work, out_dir: {"lsa": fail, "ndim": ok, "splice": slow})
    monkeypatch.setattr(gpu_check.tempfile, "mkdtemp", lambda prefix: str((tmp_path / "w").mkdir() or tmp_path / "w"))
    monkeypatch.setitem(gpu_check.BUDGET_S, "splice", 2)
    out = tmp_path / "check.json"
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--cpu-dry-run", "--out", str(out), "--parts", "lsa", "ndim",
                                      "splice"])
    gpu_check.main()
    parts = json.loads(out.read_text())["parts"]
    assert parts["lsa"]["status"] == "error" and "boom" in parts["lsa"]["output_tail"]
    assert parts["ndim"]["status"] == "ok" and parts["ndim"]["result"] == {"grid": []}
    assert parts["splice"]["status"] == "timed out" and parts["splice"]["seconds"] < 30
