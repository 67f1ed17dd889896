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


def _argmin_split(model, overrides):
    """The best split by one solve_exact per split (no batching, no tables): the smallest k within
    paper.SPLIT_TIE_LOG10 of the least log10 D̂."""
    values = []
    for k in range(paper.MODEL_SPECS[model].num_layers + 1):
        solution = solve_exact(make_problem("paper", model, split=k, overrides=overrides).astype(jnp.float64))
        values.append(float(solution.log10_distortion_bound) if bool(found_point(solution.status)) else np.inf)
    values = np.array(values)
    return int(np.flatnonzero(values <= values.min() + paper.SPLIT_TIE_LOG10)[0]), values


@pytest.mark.parametrize("model", ["bert-base", "bart-base"])
def test_best_split_by_assumption_is_the_argmin_of_independent_solves(model):
    grids = paper.AssumptionGrids(input_bits_points=2, flops_per_cycle_server=(16.0, 32.0))
    best = paper.best_split_by_assumption(paper.solve_points(paper.assumption_points(grids, [model]), ("proposed",)))
    assert len(best) == 3 + 2  # 4,096 and fp32 (the grid's ends) plus fp16; two c̃
    budget = {f"budget.{key}": value for key, value in BUDGET_PRESETS[model].items()}
    for row in best.itertuples():
        k, values = _argmin_split(model, {**budget, f"{paper.POINT_FIELDS[row.assumption]}": row.value})
        assert row.best_split == k, row
        assert row.log10_best == pytest.approx(values.min(), abs=1e-9)
        assert row.interior == (0 < k < paper.MODEL_SPECS[model].num_layers)


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
