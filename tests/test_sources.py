import gzip
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch

from pipeline.config import DataConfig
from pipeline.data import sources
from pipeline.data.loader import load_prepared
from pipeline.data.prepare import prepare
from pipeline.data.sources import ChecksumError, download
from pipeline.integrity import DataError
from conftest import write_npz


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_npz_is_verified_copied_and_prepared(tmp_path):
    sha = write_npz(tmp_path / "mine.npz", classes=4, size=8, n_train=10, n_test=5)
    cfg = DataConfig(dataset="npz", npz_path=str(tmp_path / "mine.npz"), npz_sha256=sha, val_size=8)
    origin = download(cfg, tmp_path / "raw")
    assert origin == {"mine.npz": str(tmp_path / "mine.npz")}
    manifest = prepare(cfg, tmp_path / "raw", tmp_path / "prepared")
    assert manifest["counts"] == {"train": 32, "val": 8, "test": 20}
    assert manifest["shape"] == [1, 8, 8] and manifest["classes"] == ["class0", "class1", "class2", "class3"]
    data = load_prepared(tmp_path / "prepared")
    assert data.splits["train"].x.dtype == torch.uint8 and data.splits["val"].x.shape == (8, 1, 8, 8)


def test_corrupt_file_names_file_and_expected_checksum_and_leaves_nothing(tmp_path):
    write_npz(tmp_path / "mine.npz")
    cfg = DataConfig(dataset="npz", npz_path=str(tmp_path / "mine.npz"), npz_sha256="ab" * 32)
    with pytest.raises(ChecksumError, match=r"mine\.npz: sha256 is [0-9a-f]{64}, expected (ab){32}"):
        download(cfg, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "mine.npz"]


def test_corrupt_prepared_file_is_refused(tmp_path):
    sha = write_npz(tmp_path / "mine.npz", classes=4, size=8, n_train=10, n_test=5)
    cfg = DataConfig(dataset="npz", npz_path=str(tmp_path / "mine.npz"), npz_sha256=sha, val_size=8)
    download(cfg, tmp_path / "raw")
    prepare(cfg, tmp_path / "raw", tmp_path / "prepared")
    with open(tmp_path / "prepared" / "test.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(DataError, match=r"test\.pt: sha256 differs"):
        load_prepared(tmp_path / "prepared")


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _fake_fashion_mnist(folder, n_train=30, n_test=10):
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": _idx(rng.integers(0, 255, (n_train, 28, 28))),
        "train-labels-idx1-ubyte.gz": _idx(np.arange(n_train) % 10),
        "t10k-images-idx3-ubyte.gz": _idx(rng.integers(0, 255, (n_test, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx(np.arange(n_test) % 10),
    }
    for name, blob in files.items():
        (folder / name).write_bytes(blob)
    return {name: hashlib.md5(blob).hexdigest() for name, blob in files.items()}


def test_mirror_is_searched_first_and_checked_against_published_md5(tmp_path):
    _fake_fashion_mnist(tmp_path / "mirror")
    cfg = DataConfig(dataset="fashion_mnist", mirror=str(tmp_path / "mirror"))
    with pytest.raises(ChecksumError, match=r"train-images-idx3-ubyte\.gz: md5 is .*expected 8d4fb7e6c68d591d4c3dfef9ec88bf0d"):
        download(cfg, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_fashion_mnist_idx_files_are_parsed(tmp_path, monkeypatch):
    md5s = _fake_fashion_mnist(tmp_path / "mirror", n_train=30, n_test=10)
    from torchvision.datasets import FashionMNIST
    monkeypatch.setattr(FashionMNIST, "resources", list(md5s.items()))
    cfg = DataConfig(dataset="fashion_mnist", mirror=str(tmp_path / "mirror"), val_size=5)
    download(cfg, tmp_path / "raw")
    manifest = prepare(cfg, tmp_path / "raw", tmp_path / "prepared")
    assert manifest["counts"] == {"train": 25, "val": 5, "test": 10} and manifest["shape"] == [1, 28, 28]
    assert manifest["classes"][0] == "T-shirt/top"


def _fake_cifar10_tarball(path):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name, obj):
            blob = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        for i in range(1, 6):
            add(f"data_batch_{i}", {"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]})
        add("test_batch", {"data": rng.integers(0, 255, (6, 3072), dtype=np.uint8), "labels": [4, 5, 6, 7, 8, 9]})
        add("batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    path.write_bytes(buf.getvalue())


@pytest.fixture
def served_cifar10(tmp_path, monkeypatch):
    """A fake CIFAR-10 tarball behind an HTTP server on 127.0.0.1, set as CIFAR10.url."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from torchvision.datasets import CIFAR10

    folder = tmp_path / "served"
    folder.mkdir()
    _fake_cifar10_tarball(folder / "cifar-10-python.tar.gz")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
    monkeypatch.setattr(CIFAR10, "url", url)
    yield folder / "cifar-10-python.tar.gz", url
    server.shutdown()


def test_cifar10_is_downloaded_from_its_url_verified_and_parsed(tmp_path, monkeypatch, served_cifar10):
    """The real download path (torchvision's download_url) against a URL the test serves."""
    from torchvision.datasets import CIFAR10
    served, url = served_cifar10
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(served))
    cfg = DataConfig(dataset="cifar10", val_size=4)
    origin = download(cfg, tmp_path / "raw")
    assert origin["cifar-10-python.tar.gz"] == url
    manifest = prepare(cfg, tmp_path / "raw", tmp_path / "prepared")
    assert manifest["counts"] == {"train": 16, "val": 4, "test": 6} and manifest["shape"] == [3, 32, 32]
    assert manifest["classes"] == [f"c{i}" for i in range(10)]


def test_cifar10_download_with_wrong_md5_leaves_nothing(tmp_path, served_cifar10):
    with pytest.raises(ChecksumError, match=r"expected c58f30108f718f92721af3b95e74349a"):
        download(DataConfig(dataset="cifar10"), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


@pytest.mark.skipif(not sources.DEBIAN_FASHION_MNIST.is_dir(), reason="package dataset-fashion-mnist not installed")
def test_debian_copy_matches_debians_published_md5s():
    for name, expected in sources.DEBIAN_FASHION_MNIST_MD5.items():
        assert md5(sources.DEBIAN_FASHION_MNIST / name) == expected


def test_unreachable_download_says_where_it_looked(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")   # port 9: nothing listens
    with pytest.raises(FileNotFoundError, match=r"cifar-10-python\.tar\.gz: no local copy .*set data\.mirror"):
        download(DataConfig(dataset="cifar10"), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
