"""Dataset sources: find the original files, verify every checksum, publish them atomically.

Sources are tried in order: a local mirror folder (a param, for air-gapped machines), the
Debian package's copy of Fashion-MNIST (checked against Debian's published MD5s), then the
official URLs. File names, URLs and MD5s
are torchvision's own published values (its FashionMNIST, CIFAR10 and CIFAR100 loaders), so
they are not copied by hand. A checksum mismatch stops with an error naming the file and the
expected checksum, and nothing is left in the output folder.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.integrity import DataError, file_digest

if TYPE_CHECKING:   # for annotations only: the download code stays free of the config (and of what it imports)
    from pipeline.config import DataConfig

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")   # package dataset-fashion-mnist
# Debian re-gzipped the upstream files without the file-name header field (each .gz is 23-24
# bytes smaller, the length of its name), so their MD5s differ from the upstream ones. These are
# the MD5s Debian publishes for them: the package's md5sums, dataset-fashion-mnist
# 0.0~git20200523.55506a9-1 (/var/lib/dpkg/info/dataset-fashion-mnist.md5sums).
DEBIAN_FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "cf8536b0aa1a6ac5fa3f23001093305c",
    "train-labels-idx1-ubyte.gz": "10bea18fdb374794d4bb42e356e600c9",
    "t10k-images-idx3-ubyte.gz": "f78720b4224f21cce2f2ccf2d7a94c9a",
    "t10k-labels-idx1-ubyte.gz": "0d30e22e447f3c33dab9ed536400ac01",
}


class ChecksumError(DataError):
    """A file whose checksum differs from the published one."""


@dataclass(frozen=True)
class RemoteFile:
    name: str          # file name, as published
    checksum: str      # hex digest
    algorithm: str     # "md5" (published by the dataset authors) or "sha256" (your own data)
    urls: tuple[str, ...] = ()


def _torchvision_files(dataset: str) -> list[RemoteFile]:
    from torchvision import datasets as tvd  # torchvision holds the published names and MD5s

    if dataset == "fashion_mnist":
        cls = tvd.FashionMNIST
        return [RemoteFile(name, md5, "md5", tuple(m + name for m in cls.mirrors)) for name, md5 in cls.resources]
    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[dataset]
    return [RemoteFile(cls.filename, cls.tgz_md5, "md5", (cls.url,))]


def dataset_files(cfg: DataConfig) -> list[RemoteFile]:
    if cfg.dataset == "npz":
        return [RemoteFile(Path(cfg.npz_path).name, cfg.npz_sha256.lower(), "sha256")]
    return _torchvision_files(cfg.dataset)


def verify(path: Path, expected: RemoteFile) -> None:
    actual = file_digest(path, expected.algorithm)
    if actual != expected.checksum:
        raise ChecksumError(
            f"{path}: {expected.algorithm} is {actual}, expected {expected.checksum} "
            f"(the published checksum of {expected.name}); the file is corrupt or not the original")


def verify_downloaded(cfg: DataConfig, raw: Path) -> None:
    """Check the download stage's files again before they are read: DVC does not notice a file
    corrupted in place that kept its size and mtime. Each file must have its published checksum
    (or, for Fashion-MNIST, Debian's)."""
    for file in dataset_files(cfg):
        path = Path(raw) / file.name
        if not path.is_file():
            raise DataError(f"{path}: missing; delete {raw} and run the study again (the download stage "
                            "fetches and verifies it)")
        accepted = {file.checksum, DEBIAN_FASHION_MNIST_MD5.get(file.name) if cfg.dataset == "fashion_mnist" else None}
        actual = file_digest(path, file.algorithm)
        if actual not in accepted:
            raise ChecksumError(f"{path}: {file.algorithm} is {actual}, expected {file.checksum}: corrupt since it "
                                f"was downloaded; delete {raw} and run the study again (the download stage "
                                "fetches and verifies it)")


def candidate_folders(cfg: DataConfig) -> list[tuple[Path, dict[str, str]]]:
    """Local folders to search, in order, each with the MD5s that hold there instead of the
    published ones (only the Debian copy has its own)."""
    folders: list[tuple[Path, dict[str, str]]] = []
    if cfg.mirror:
        folders.append((Path(cfg.mirror), {}))
    if cfg.dataset == "npz":
        folders.append((Path(cfg.npz_path).parent, {}))
    if cfg.dataset == "fashion_mnist":
        folders.append((DEBIAN_FASHION_MNIST, DEBIAN_FASHION_MNIST_MD5))
    return folders


def _fetch(file: RemoteFile, folders: list[tuple[Path, dict[str, str]]], dest: Path) -> tuple[str, RemoteFile]:
    """Copy or download one file into `dest` (a folder); return where it came from and the
    checksum it must have there."""
    for folder, own_md5 in folders:
        src = folder / file.name
        if src.is_file():
            shutil.copyfile(src, dest / file.name)
            expected = replace(file, checksum=own_md5[file.name]) if file.name in own_md5 else file
            return str(src), expected
    if not file.urls:
        looked = ", ".join(str(f) for f, _ in folders) or "(no folder)"
        raise FileNotFoundError(f"{file.name}: not found in {looked}, and it has no download URL")
    from torchvision.datasets.utils import download_url

    errors = []
    for url in file.urls:
        try:
            download_url(url, str(dest), filename=file.name)   # checksum verified below, once for every source
            return url, file
        except Exception as err:   # noqa: BLE001 -- try the next official mirror, report all at the end
            errors.append(f"{url}: {err}")
    looked = ", ".join(str(f) for f, _ in folders) or "none; set data.mirror to a folder holding it"
    raise FileNotFoundError(f"{file.name}: no local copy (folders searched: {looked}) and every download "
                            "failed: " + "; ".join(errors))


def download(cfg: DataConfig, out_dir: Path) -> dict[str, str]:
    """Put the verified original files of `cfg.dataset` into `out_dir`; return file -> source.

    Files are gathered in a temporary sibling folder and renamed into place only when every
    checksum matches, so an error leaves `out_dir` absent rather than half written.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    files = dataset_files(cfg)
    folders = candidate_folders(cfg)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    tmp.chmod(0o755)   # mkdtemp makes it private; the published folder should read like any other
    try:
        origin = {}
        for file in files:
            origin[file.name], expected = _fetch(file, folders, tmp)
            verify(tmp / file.name, expected)
            print(f"verified {file.name} ({expected.algorithm} {expected.checksum}) from {origin[file.name]}",
                  flush=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
        return origin
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
