"""A description of the machine a figure was measured on (for benchmark JSON)."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    return dict(
        cpu=cpu,
        cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        memory_gib=mem,
        python=sys.version.split()[0],
        torch=torch.__version__,
        platform=platform.platform(),
    )
