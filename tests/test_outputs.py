"""Outputs on a full disk or in an unwritable folder: a clear error naming the path, no leftover
temporary file, the previous version intact. A small tmpfs is mounted by the test (root only)."""
import os
import subprocess

import pytest
import torch

from pipeline.outputs import MiB, OutputError, ResumeState, check_writable, write_json

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs."""
    folder = tmp_path / "disk"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def fill(folder, leave_bytes: int = 0) -> None:
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave_bytes, 0))


def test_a_checkpoint_on_a_full_disk_names_the_path_and_keeps_the_last_one(small_disk):
    checkpoint = ResumeState(small_disk / "ckpt" / "last.pt", "fp")
    checkpoint.save({"epoch": 1, "w": torch.zeros(1000)})
    fill(small_disk, leave_bytes=4096)
    with pytest.raises(OutputError, match=r"last\.pt: could not be written .*MiB free there\); the previous "
                                          r"version is unchanged"):
        checkpoint.save({"epoch": 2, "w": torch.zeros(200_000)})   # 800 kB
    assert [p.name for p in (small_disk / "ckpt").iterdir()] == ["last.pt"]   # no .tmp left filling the disk
    assert checkpoint.load()["epoch"] == 1


def test_a_metrics_file_on_a_full_disk(small_disk):
    fill(small_disk)
    with pytest.raises(OutputError, match=r"m\.json: could not be written \(No space left on device"):
        write_json(small_disk / "m.json", {"x": "y" * 100_000})
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_room_and_permission_are_checked_before_any_work(small_disk, tmp_path):
    with pytest.raises(OutputError, match=r"disk: \d MiB free, .*need about 5 MiB; free some space"):
        check_writable(small_disk / "model.pt", need_bytes=5 * MiB)
    check_writable(small_disk / "sub" / "model.pt", need_bytes=MiB)   # creates the folder
    assert (small_disk / "sub").is_dir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(OutputError, match=r"disk: not writable, so .*model\.pt cannot be written"):
        check_writable(small_disk / "model.pt")
