import subprocess

from pipeline.provenance import git_commit


def test_the_pipelines_own_outputs_do_not_make_the_code_dirty(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    (tmp_path / "metrics").mkdir()
    for name in ("dvc.lock", "metrics/a.json", "train.py"):
        (tmp_path / name).write_text("1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "c")
    monkeypatch.chdir(tmp_path)

    def commit() -> str:
        git_commit.cache_clear()
        return git_commit()
    clean = commit()
    assert len(clean) == 40
    (tmp_path / "dvc.lock").write_text("2\n")          # what dvc repro rewrites
    (tmp_path / "metrics/a.json").write_text("2\n")
    assert commit() == clean
    (tmp_path / "train.py").write_text("2\n")          # a change to the code
    assert commit() == clean + "-dirty"
    git_commit.cache_clear()
