"""What every result records about where it came from: code version, machine, software."""
from __future__ import annotations

import os
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
PIPELINE_OUTPUTS = ("dvc.lock", "metrics", "records", "plots", "reports")


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


def gpu_driver() -> str:
    """The NVIDIA driver's version, from nvidia-smi ("unknown" without it)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.splitlines()[0].strip() if out.strip() else "unknown"


def machine_fingerprint() -> dict:
    """What latency depends on besides the code and the settings: the processors, their count and
    the software that drives them. Equal on two machines of the same kind; a new CPU model, GPU,
    driver or torch version changes it (the latency stage depends on it, stages/machine.py)."""
    info = {"cpu": cpu_name(), "logical_cpus": os.cpu_count() or 0, "torch_default_threads": torch.get_num_threads(),
            "torch": torch.__version__, "gpus": []}
    if torch.cuda.is_available():
        info.update(gpus=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                    gpu_driver=gpu_driver(), cuda=str(torch.version.cuda), cudnn=str(torch.backends.cudnn.version()))
    return info


def device_tag(device: torch.device) -> str:
    """How a number measured on `device` is labelled: "gpu" or "cpu" (a latency cell's device, tag prefixes)."""
    return "gpu" if device.type == "cuda" else "cpu"


def device_settings(device: torch.device) -> dict[str, str]:
    """What decides a number measured on `device`: its name and, on CUDA, the library versions and the
    cuDNN/TF32 switches in force (cudnn.benchmark picks conv algorithms by timing them)."""
    info = {"device_name": device_name(device), "threads": str(torch.get_num_threads())}
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        info.update(cuda=str(torch.version.cuda), cudnn=str(torch.backends.cudnn.version()),
                    capability=f"{major}.{minor}", cudnn_benchmark=str(torch.backends.cudnn.benchmark),
                    cudnn_allow_tf32=str(torch.backends.cudnn.allow_tf32),
                    matmul_allow_tf32=str(torch.backends.cuda.matmul.allow_tf32))
    return info


def software() -> dict[str, str]:
    """The code and software behind a result, whatever device it ran on."""
    return {"git_commit": git_commit(), "torch": torch.__version__, "python": platform.python_version(),
            "host_cpu": cpu_name()}


def environment(device: torch.device) -> dict[str, str]:
    """Provenance of a run on one device (MLflow tags, metrics JSON)."""
    return {**software(), "cuda": "none", "cudnn": "none", **device_settings(device)}
