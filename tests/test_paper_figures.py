"""The data behind the paper's figures (issue 13): what is drawn where a part is absent."""

import numpy as np
import pandas as pd
import pytest

from laimco_jax.experiments import paper


def test_fig6_reports_no_ratio_for_an_absent_part():
    """Split 0 has no device part (ρ is not drawn); BERT's split L has no server part (ρ̃ is not drawn);
    BART's split L keeps its decoder on the server (ρ̃ is drawn)."""
    points = paper.figure_points(paper.FigureGrids(points=2))
    table = paper.solve_points(points[points.figure == "fig6"], ("proposed", "on-device", "on-server"))
    proposed = table[table.scheme == "proposed"].set_index(["model", "split"])
    assert proposed.feasible.all()
    for model, last, server_at_last in (("bert-base", 12, False), ("bart-base", 6, True)):
        assert np.isnan(proposed.loc[(model, 0), ["rho", "f_device_hz"]].astype(float)).all()
        assert np.isfinite(proposed.loc[(model, 0), ["rho_server", "f_server_hz"]].astype(float)).all()
        assert np.isfinite(proposed.loc[(model, last), "rho"])
        assert np.isfinite(proposed.loc[(model, last), "rho_server"]) == server_at_last
        inner = proposed.loc[model].loc[1:last - 1]
        assert np.isfinite(inner[["rho", "rho_server"]].to_numpy()).all()
    # the schemes that move the whole model to one side have no other part at any split
    assert table[table.scheme == "on-server"].rho.isna().all()
    on_device = table[(table.scheme == "on-device") & (table.model == "bert-base")]
    assert on_device.rho_server.isna().all() and on_device.rho.notna().any()


def _bisect_largest_feasible_bits(problem, steps=40):
    """The largest θ with a point of solve_exact (proposed), by bisection on its status, elementwise."""
    import dataclasses

    import jax.numpy as jnp

    from laimco_jax.solvers import found_point, solve_exact

    low = jnp.zeros_like(problem.budget.delay_s)
    high = jnp.full_like(low, 1e9)
    for _ in range(steps):
        mid = jnp.sqrt(jnp.maximum(low, 1.0) * high)  # geometric: the answers span decades
        model = dataclasses.replace(problem.model, embedding_bits=mid)
        feasible = found_point(solve_exact(dataclasses.replace(problem, model=model)).status)
        low, high = jnp.where(feasible, mid, low), jnp.where(feasible, high, mid)
    return np.asarray(low), np.asarray(high)


def test_largest_upload_bits_is_where_solve_exact_turns_infeasible():
    """Against a bisection on solve_exact's verdicts, at budgets where the power cap binds and where it does not."""
    budgets = pd.DataFrame(dict(model="bert-base", split=4, upload_bits=np.nan,
                                budget_delay_s=[0.21, 0.05, 0.8, 0.35, 0.02],
                                budget_energy_j=[0.0011, 0.1, 0.0011, 0.015, 1.0]))
    problem = paper.points_problem(budgets)
    expected = np.asarray(paper.largest_upload_bits(problem))
    low, high = _bisect_largest_feasible_bits(problem)
    np.testing.assert_allclose(low, expected, rtol=1e-6)
    np.testing.assert_allclose(high, expected, rtol=1e-6)
    assert paper.panel_upload_bits("bert-base") == pytest.approx(expected[0], rel=1e-14) and expected[0] < 786432  # the paper's θ does not fit E0 = 0.0011 J


def test_random_pruning_panels_are_drawn_at_the_largest_feasible_upload():
    points = paper.figure_points(paper.FigureGrids(points=5), models=("bert-base",))
    paper_bits = points[points.figure == "fig4"].assign(budget_energy_j=0.0011, figure="fig4 at 786,432 bits")
    table = paper.solve_points(pd.concat([points, paper_bits]), ("proposed",) + paper.BENCHMARKS)
    for figure, axis, edge in (("fig4d", "budget_delay_s", 0.21), ("fig5d", "budget_energy_j", 0.0011)):
        rows = table[(table.figure == figure) & (table.scheme == "proposed")]
        assert len(rows) == 5 and rows.panel.str.contains("θ = 205,420 bits").all()
        assert (rows.feasible == (rows[axis] >= edge)).all()  # feasible exactly from the panel's budget pair on
    assert not table[table.figure == "fig4 at 786,432 bits"].feasible.any()  # every scheme is infeasible at E0 = 0.0011 J with 786,432 bits
