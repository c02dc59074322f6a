"""Two CPU processes (gloo) give the single-process loss and gradients on the concatenated batch.

Convention (models.distributed): the mean over ranks of each rank's loss is the single-process
loss; a rank's raw feature gradient is world_size × the single-process gradient of its rows
(DDP's gradient averaging divides it back), and parameter gradients averaged over ranks are the
single-process ones.
"""
import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models.ndim_loss import NDimContrastiveLoss

WORLD = 2
N, B_LOCAL, DIM = 3, 3, 6
CONFIGS = [
    dict(similarity="v4"),
    dict(similarity="v1", chunk_bytes=512),
    dict(similarity="gram"),
    dict(similarity="pairwise"),
    dict(similarity="v7", labels="exact"),
    dict(similarity="v0", labels="smoothed", smoothing=0.2, axis_weights=[1.0, 2.0, 3.0]),
    dict(similarity="v4", labels="sigmoid"),
    dict(similarity="v5", labels="regions", n_axes=N, mask_regions=["1+1+1"], learn_region_weights=True,
         region_weights={"3": 1.0, "2+1": 0.5}),
    dict(similarity="v1", labels="regions", n_axes=N, region_targets="diagonal", chunk_bytes=512),
]


def all_features():
    g = torch.Generator().manual_seed(0)
    return [torch.randn(WORLD * B_LOCAL, DIM, generator=g, dtype=torch.float64) for _ in range(N)]


def run_configs(feats, rank=0):
    """Per config: (loss, feature grads of this rank's rows, parameter grads)."""
    rows = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL) if dist.is_initialized() else slice(None)
    results = []
    for config in CONFIGS:
        loss_fn = NDimContrastiveLoss(**config).double()
        leaves = [f[rows].clone().requires_grad_() for f in feats]
        out = loss_fn(leaves)
        out.loss.backward()
        params = {name: p.grad.clone() for name, p in loss_fn.named_parameters()}
        results.append((out.loss.detach(), [x.grad for x in leaves], params))
    return results


def _worker(rank, port, out_dir):
    torch.set_num_threads(1)
    store = dist.TCPStore("127.0.0.1", port, WORLD, is_master=False, timeout=timedelta(minutes=5))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD)
    try:
        torch.save(run_configs(all_features(), rank), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def per_rank(tmp_path_factory):
    """The two ranks meet at a TCP store this process serves on a port the OS assigns when it binds
    (port 0), held until they are done: no port is guessed free and then lost to another process."""
    out_dir = str(tmp_path_factory.mktemp("ranks"))
    store = dist.TCPStore("127.0.0.1", 0, WORLD, is_master=True, wait_for_workers=False)
    mp.start_processes(_worker, args=(store.port, out_dir), nprocs=WORLD, join=True, start_method="spawn")
    del store
    return [torch.load(os.path.join(out_dir, f"rank{r}.pt")) for r in range(WORLD)]


@pytest.mark.parametrize("number", range(len(CONFIGS)), ids=[
    "-".join(str(v) for k, v in c.items() if k in ("similarity", "labels")) for c in CONFIGS])
def test_two_processes_equal_one_on_the_concatenated_batch(per_rank, number):
    loss, feature_grads, param_grads = run_configs(all_features())[number]
    rank_results = [r[number] for r in per_rank]
    torch.testing.assert_close(torch.stack([r[0] for r in rank_results]).mean(), loss)
    for axis in range(N):
        gathered = torch.cat([r[1][axis] for r in rank_results]) / WORLD
        torch.testing.assert_close(gathered, feature_grads[axis])
    for name, grad in param_grads.items():
        torch.testing.assert_close(torch.stack([r[2][name] for r in rank_results]).mean(0), grad)


def test_single_process_is_a_passthrough():
    assert not dist.is_initialized()
    from models.distributed import gather_with_grad
    x = torch.randn(N, B_LOCAL, DIM)
    gathered, offset = gather_with_grad(x)
    assert gathered is x and offset == 0
