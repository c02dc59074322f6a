"""`accelerate_launch(args, **run_kw)`: `accelerate launch ARGS` (two CPU processes in these tests)
whose processes meet on a port the kernel assigns when it binds, never on a guessed one.

accelerate launches torchrun on --main_process_port, 29500 unless told otherwise — one port for
every test that launches at the same time — and its `--main_process_port 0` picks a free port,
closes it and lets torchrun bind it later. Here the caller holds a listening socket on a port the
kernel chose and names it: accelerate finds it taken and launches torchrun in its standalone mode
(accelerate.utils.launch, "standalone-like mode"), whose rendezvous store binds port 0 itself.
"""
from __future__ import annotations

import socket
import subprocess
import sys


def accelerate_launch(args: list[str], **run_kw) -> subprocess.CompletedProcess:
    with socket.create_server(("127.0.0.1", 0)) as held:
        return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--main_process_port",
                               str(held.getsockname()[1]), *args], **run_kw)
