"""A task checkpoint split at layer k and pruned per half, with its tokenizer.

The device half (embeddings + blocks ``0..k-1``) keeps the fraction ρ of its
prunable weights and the server half (blocks ``k..``, and for BART the decoder)
keeps ρ̃, by :func:`laimco_jax.pruning.split_masks`. The task head runs on the
server, so it belongs to the server half and is pruned with it (with the default
``prunable=("kernel",)`` that is the QA projection ``qa_outputs``, or an untied
BART ``lm_head``; a tied BART ``lm_head`` is the token table ``shared``, which
the device half owns, as in :mod:`laimco_jax.pruning`).
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any

import jax

from laimco_jax import pruning
from laimco_jax.models import bart, bert, checkpoints
from laimco_jax.models.checkpoints import CheckpointError, load_tokenizer
from laimco_jax.params import ConfigError

#: Token-id settings of greedy decoding, read from config.json and generation_config.json.
GENERATION_KEYS = ("decoder_start_token_id", "eos_token_id", "pad_token_id", "forced_bos_token_id",
                   "forced_eos_token_id")

#: Task name -> (checkpoint head, model type, head key in the server half).
TASKS = {
    "squad": ("question_answering", "bert", "qa_outputs"),
    "summarization": ("conditional_generation", "bart", "lm_head"),
}


@dataclasses.dataclass(frozen=True, eq=False)
class SplitTaskModel:
    """A pruned split task model. ``server_params`` holds the head under ``TASKS[task][2]``."""

    task: str
    config: bert.BertConfig | bart.BartConfig
    split: int
    device_params: bert.Params
    server_params: bert.Params
    tokenizer: Any
    rho: float
    rho_server: float
    pruning: str
    seed: int
    kept_device: float
    kept_server: float
    generation: dict[str, Any]

    @property
    def head_key(self) -> str:
        return TASKS[self.task][2]

    @property
    def server_base(self) -> bert.Params:
        """The server half without the task head (what ``server_forward`` takes)."""
        return {k: v for k, v in self.server_params.items() if k != self.head_key}


def check_ratio(name: str, value: Any) -> float:
    """``value`` as a float, or ConfigError unless it is a remaining fraction in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ConfigError(f"{name}={value!r} must be a remaining fraction in (0, 1]")
    return float(value)


def check_choice(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not supported; allowed: {list(allowed)}")


def check_positive_int(name: str, value: Any, upper: int | None = None) -> int:
    """``value`` unless it is not an int in ``[1, upper]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1 or (
            upper is not None and value > upper):
        allowed = f"[1, {upper}]" if upper is not None else ">= 1"
        raise ConfigError(f"{name}={value!r} must be an int in {allowed}")
    return int(value)


def _token_ids(file: str, raw: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """The :data:`GENERATION_KEYS` set (not null) in ``raw``, the JSON of ``file``, each a token id.

    ``eos_token_id`` may also be a non-empty list of token ids.
    """
    settings = {key: raw[key] for key in GENERATION_KEYS if raw.get(key) is not None}
    for key, value in settings.items():
        ids = value if key == "eos_token_id" and isinstance(value, list) and value else [value]
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab_size for i in ids):
            also = " or a non-empty list of them" if key == "eos_token_id" else ""
            raise CheckpointError(f"{file}: {key}={value!r} must be a token id in [0, {vocab_size - 1}]{also}")
    return settings


def _generation_settings(directory: str, config) -> dict[str, Any]:
    """Greedy-decoding ids: generation_config.json over config.json, as transformers does."""
    if not isinstance(config, bart.BartConfig):
        return {}
    raw: dict[str, Any] = {}
    for name in ("config.json", "generation_config.json"):
        file = os.path.join(directory, name)
        if os.path.exists(file):
            raw |= _token_ids(file, checkpoints.read_json_object(file, CheckpointError), config.vocab_size)
    eos = raw.get("eos_token_id")
    if eos is None:
        raise CheckpointError(f"checkpoint={directory!r}: config.json/generation_config.json give no "
                              "eos_token_id, which greedy decoding needs")
    eos = tuple(eos) if isinstance(eos, list) else (eos,)
    return {
        "decoder_start_token_id": raw.get("decoder_start_token_id", config.decoder_start_token_id),
        "eos_token_id": eos,
        "pad_token_id": raw.get("pad_token_id", config.pad_token_id),
        "forced_bos_token_id": raw.get("forced_bos_token_id"),
        "forced_eos_token_id": raw.get("forced_eos_token_id"),
    }


def load_split_model(task: str, checkpoint: str | os.PathLike, *, split: int, rho: float,
                     rho_server: float, pruning_method: str = "magnitude", seed: int = 0,
                     scope: str = "global", tokenizer: str | os.PathLike | None = None
                     ) -> SplitTaskModel:
    """Load ``checkpoint`` for ``task``, split it at ``split`` and prune each half.

    ``task``: ``"squad"`` (a ``BertForQuestionAnswering`` directory) or
    ``"summarization"`` (a ``BartForConditionalGeneration`` directory). ``rho``/
    ``rho_server`` are the remaining fractions ρ, ρ̃ in (0, 1]; ``pruning_method``
    is ``"magnitude"`` or ``"random"`` (``seed`` seeds the latter).
    """
    check_choice("task", task, TASKS)
    rho, rho_server = check_ratio("rho", rho), check_ratio("rho_server", rho_server)
    check_choice("pruning", pruning_method, pruning.METHODS)
    check_choice("scope", scope, pruning.SCOPES)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed={seed!r} must be an int")
    directory = os.fspath(checkpoint)
    if not os.path.isdir(directory):
        raise ConfigError(f"checkpoint={directory!r}: no such directory")
    head = TASKS[task][0]
    config, params, head_params = checkpoints.load_task_checkpoint(directory, head)
    module = bert if isinstance(config, bert.BertConfig) else bart
    if isinstance(split, bool) or not isinstance(split, numbers.Integral):
        raise ConfigError(f"split={split!r} must be an int in [0, {config.num_layers}]")
    split = int(split)
    module.check_split(split, config.num_layers)
    device, server = module.split_params(config, params, split)
    server = server | head_params
    key = jax.random.key(seed) if pruning_method == "random" else None
    device_mask, server_mask = pruning.split_masks(device, server, rho, rho_server,
                                                   method=pruning_method, scope=scope, key=key)
    kept_device = pruning.kept_count(device_mask, device)
    kept_server = pruning.kept_count(server_mask, server)
    return SplitTaskModel(
        task=task, config=config, split=split,
        device_params=pruning.apply_mask(device, device_mask),
        server_params=pruning.apply_mask(server, server_mask),
        tokenizer=load_tokenizer(directory if tokenizer is None else tokenizer, config.vocab_size),
        rho=rho, rho_server=rho_server, pruning=pruning_method, seed=int(seed),
        kept_device=kept_device[0] / max(kept_device[1], 1),
        kept_server=kept_server[0] / max(kept_server[1], 1),
        generation=_generation_settings(directory, config),
    )
