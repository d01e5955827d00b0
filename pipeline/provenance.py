"""What every result records about where it came from: code version, machine, software."""
from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import torch


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# what `dvc repro` itself rewrites while a study runs: not a change to the code or settings
PIPELINE_OUTPUTS = ("dvc.lock", "metrics", "plots", "reports")


@lru_cache(maxsize=1)
def git_commit() -> str:
    """HEAD's hash, with "-dirty" when tracked files other than the pipeline's own outputs differ
    from it ("unknown" outside git)."""
    commit = _git("rev-parse", "HEAD") or "unknown"
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                 *(f":(exclude){path}" for path in PIPELINE_OUTPUTS), ":(exclude,glob)**/.gitignore")
    return commit + ("-dirty" if dirty else "")


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict[str, str]:
    return {
        "git_commit": git_commit(),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda) if device.type == "cuda" else "none",
        "cudnn": str(torch.backends.cudnn.version()) if device.type == "cuda" else "none",
        "threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "host_cpu": cpu_name(),
    }
