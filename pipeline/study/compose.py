"""Compose params.yaml from conf/ with Hydra, exactly as `dvc exp run -S study=NAME` does.

    python -m pipeline.study.compose cifar10 params.yaml
"""
from __future__ import annotations

import sys
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def list_studies() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "study").glob("*.yaml"))


def compose(study: str, output: Path) -> None:
    from dvc.utils.hydra import compose_and_dump

    if study not in list_studies():
        raise ValueError(f"unknown study {study!r}; valid studies: {', '.join(list_studies())} (conf/study/)")
    compose_and_dump(str(output), str(CONF_DIR), None, "config", "", [f"study={study}"])


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        compose(sys.argv[1], Path(sys.argv[2]))
    except ValueError as err:
        sys.exit(f"error: {err}")
