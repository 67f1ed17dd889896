"""Fig. 6's modelling assumptions (issue 13): the best split against the raw-input size and the server's
FLOPs per cycle, checked against independent per-split solves."""

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from laimco_jax import make_problem
from laimco_jax.experiments import paper
from laimco_jax.params import BUDGET_PRESETS
from laimco_jax.solvers import found_point, solve_exact


def _whole_model_on_device(model, overrides):
    """Overrides that put all of ``model`` (at split L: BART's decoder too) on the device, from its profile."""
    fields = paper.MODEL_SPECS[model].profile_fields(paper.MODEL_SPECS[model].num_layers)
    return {**overrides, "model.params_device": fields["params_device"] + fields["params_server"],
            "model.params_server": 0.0, "model.flops_device": fields["flops_device"] + fields["flops_server"],
            "model.flops_server": 0.0, "model.embedding_bits": 0.0}


def _solve_log10(model, split, overrides):
    solution = solve_exact(make_problem("paper", model, split=split, overrides=overrides).astype(jnp.float64))
    return float(solution.log10_distortion_bound) if bool(found_point(solution.status)) else np.inf


def _argmin_split(model, overrides):
    """The best split by one solve_exact per split (no batching, no tables), the whole model on the device
    at L + 1 where split L leaves a server part (BART): the smallest k within paper.SPLIT_TIE_LOG10 of the
    least log10 D̂."""
    last = paper.MODEL_SPECS[model].num_layers
    values = [_solve_log10(model, k, overrides) for k in range(last + 1)]
    if paper.MODEL_SPECS[model].splits[last]["params_server"] > 0:
        values.append(_solve_log10(model, last, _whole_model_on_device(model, overrides)))
    values = np.array(values)
    return int(np.flatnonzero(values <= values.min() + paper.SPLIT_TIE_LOG10)[0]), values


@pytest.mark.parametrize("model", ["bert-base", "bart-base"])
def test_best_split_by_assumption_is_the_argmin_of_independent_solves(model):
    grids = paper.AssumptionGrids(input_bits_points=2, flops_per_cycle_server=(16.0, 32.0))
    best = paper.best_split_by_assumption(paper.solve_with_on_device_end(paper.assumption_points(grids, [model])))
    assert len(best) == 3 + 2  # 4,096 and fp32 (the grid's ends) plus fp16; two c̃
    budget = {f"budget.{key}": value for key, value in BUDGET_PRESETS[model].items()}
    for row in best.itertuples():
        k, values = _argmin_split(model, {**budget, f"{paper.POINT_FIELDS[row.assumption]}": row.value})
        assert row.best_split == k, row
        assert row.log10_best == pytest.approx(values.min(), abs=1e-9)
        assert row.interior == (0 < k < len(values) - 1)


def test_slow_server_example_is_the_argmin_of_independent_solves():
    example = paper.slow_server_example()
    slow = paper.SLOW_SERVER_EXAMPLE
    k, values = _argmin_split(slow["model"], {"budget.delay_s": slow["delay_s"], "budget.energy_j": slow["energy_j"],
                                              "system.flops_per_cycle_server": slow["flops_per_cycle_server"]})
    assert paper.best_split_of(example)["best_split"] == k
    np.testing.assert_allclose(example.sort_values("split").log10_distortion_bound, values, atol=1e-9)


def test_best_split_of_takes_the_smallest_tied_split_and_skips_infeasible_ones():
    curve = pd.DataFrame(dict(split=[0, 1, 2, 3], feasible=[False, True, True, True],
                              log10_distortion_bound=[-9.0, -2.0, -3.0, -3.0 - paper.SPLIT_TIE_LOG10 / 2]))
    assert paper.best_split_of(curve) == dict(best_split=2, log10_best=-3.0 - paper.SPLIT_TIE_LOG10 / 2)
    assert paper.best_split_of(curve.assign(feasible=False))["best_split"] == -1


@pytest.mark.parametrize("model, end", [("bert-base", 12), ("bart-base", 7), ("bart-base-published", 7)])
def test_on_device_end_is_the_whole_model_on_the_device(model, end):
    """BERT's split L is on-device already; BART's on-device end (L + 1) also moves the decoder, and its
    table row matches a solve of the whole model put on the device by hand."""
    assert paper.on_device_split(model) == end
    budget = BUDGET_PRESETS[model]
    points = paper.split_points(model, budget["delay_s"], budget["energy_j"])
    rows = paper.solve_on_device_end(points)
    assert len(rows) == (end > paper.MODEL_SPECS[model].num_layers)
    for row in rows.itertuples():
        expected = _solve_log10(model, end - 1, _whole_model_on_device(
            model, {"budget.delay_s": budget["delay_s"], "budget.energy_j": budget["energy_j"]}))
        assert row.split == end and row.scheme == "on-device" and np.isnan(row.rho_server)
        assert row.log10_distortion_bound == pytest.approx(expected, abs=1e-9)
