"""benchmarks/gpu_wheels.py: which packages travel to an offline GPU machine as wheels."""
import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location("gpu_wheels", REPO / "benchmarks/gpu_wheels.py")
gpu_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_wheels)


def test_the_locked_packages_the_target_lacks_travel(tmp_path):
    lock, have = tmp_path / "requirements.lock", tmp_path / "have.txt"
    lock.write_text("dvc==3.67.1\nTorch==2.14.1\nruamel.yaml==0.19.1\nzc.lockfile==4.0\n")
    have.write_text("# a pip list --format=freeze of the target\ntorch==2.11.0\nruamel_yaml\n\n")
    # names compare as pip normalises them (case, -, _ and .), whatever version the target has
    assert gpu_wheels.missing_pins(lock, gpu_wheels.read_names(have)) == ["dvc==3.67.1", "zc.lockfile==4.0"]


def test_the_gpu_machine_keeps_its_own_torch():
    have = gpu_wheels.read_names(REPO / "benchmarks/gpu_machine_packages.txt")
    travelling = {pin.split("==")[0].lower() for pin in gpu_wheels.missing_pins(REPO / "requirements.lock", have)}
    assert {"torch", "torchvision", "numpy", "triton"} <= have
    assert {"dvc", "mlflow", "hydra-core"} <= travelling and not travelling & {"torch", "torchvision", "numpy", "ray"}
