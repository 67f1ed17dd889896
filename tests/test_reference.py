"""Tests of the CVXPY + Clarabel references (laimco_jax.reference) and of the paper's SCA loop.

* The paper's SCA (solve_cvxpy_sca) never beats the exact global optimum (solve_exact, certified
  OPTIMAL) beyond solver tolerance (1e-7 (q + s)), on the paper presets and 22 seeded random feasible
  instances; its iterates are feasible for (P1), its objective history is non-increasing (Section
  V-B), and where it stops by its own test it falls short by < 1e-3 relative (observed: < 1.2e-6;
  where 50 iterations are not enough, by up to 6e-3).
* The SCA's building blocks match the paper: u(p) of (47) is the derivative of pθ/r(p), and the
  tangent ζ^(k)(p) of (46) is an upper bound of the upload energy (pθ/r(p) is concave).
* solve_cvxpy_exact honours the schemes (pinned power / clocks / ratios, split 0 / split L), reports
  infeasibility with the closed-form reason codes, and its multipliers match finite differences of
  its own optimum.
* API: ReferenceResult, the ImportError message without CVXPY, scalar-only inputs.

Float64 throughout (x64 switched on inside this module only).
"""

from __future__ import annotations

import math
import sys

import jax
import numpy as np
import pytest

from laimco_jax.params import make_problem
from laimco_jax.solvers import InfeasibleReason, Status, solve_exact
from laimco_jax.system import OperatingPoint, evaluate

pytest.importorskip("cvxpy")
from laimco_jax import reference  # noqa: E402
from laimco_jax.reference import ReferenceResult, solve_cvxpy_exact, solve_cvxpy_sca  # noqa: E402

#: Rows of every batched solve_exact call (tests/test_solver_exact.py pads to the same size, so the
#: two modules share one compilation of solve_exact).
BATCH = 640
# The SCA's tolerance, as a fraction of q + s: each (P3.k) is solved to Clarabel's default tolerances
# (1e-8 absolute on (ρq + ρ̃s)/(q+s) and on the budget shares), so a final iterate may exceed a budget by
# ~1e-9 relative and the optimum by ~1e-8 (q + s) — 1e-5 of a small optimum (observed: 5.7e-9 (q + s)).
SCA_TOL = 1e-7


@pytest.fixture(autouse=True, scope="module")
def float64():
    with jax.enable_x64(True):
        yield


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[idx] if np.ndim(x) else np.asarray(x), tree)


def _arrays(problem):
    return jax.tree_util.tree_map(lambda x: np.atleast_1d(np.asarray(x, np.float64)), problem)


def _solve_exact_rows(problems):
    """solve_exact on a list of scalar problems, as one padded batch of BATCH rows."""
    stacked = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *[_arrays(p) for p in problems])
    n = len(problems)
    solution = solve_exact(_take(stacked, np.arange(BATCH) % n), "proposed")
    return [_take(solution, i) for i in range(n)]


def _random_instances(seed, n):
    """Scalar problems drawn log-uniformly around the paper presets (budgets, link, workloads)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        lu = lambda lo, hi: float(math.exp(rng.uniform(math.log(lo), math.log(hi))))  # noqa: E731
        model = ("bert-base", "bart-base")[int(rng.integers(0, 2))]
        base = make_problem("paper", model)
        total = float(base.model.params_device + base.model.params_server)
        share = rng.uniform(0.05, 0.95)
        flops = float(base.model.flops_device + base.model.flops_server) * lu(0.3, 3)
        flops_share = min(0.95, max(0.05, share * lu(0.5, 2)))
        out.append(make_problem("paper", model, overrides={
            "bandwidth_hz": 5e6 * lu(0.2, 5),
            "p_max_w": 0.5 * lu(0.01, 4),
            "distance_m": lu(20, 2000),
            "f_max_device_hz": 1e9 * lu(0.3, 3),
            "f_max_server_hz": 4e9 * lu(0.3, 3),
            "params_device": float(round(total * share)),
            "params_server": total - float(round(total * share)),
            "flops_device": flops * flops_share,
            "flops_server": flops * (1 - flops_share),
            "embedding_bits": float(base.model.embedding_bits) * lu(0.01, 10),
            "delay_s": float(base.budget.delay_s) * lu(0.2, 5),
            "energy_j": float(base.budget.energy_j) * lu(0.1, 10),
        }))
    return out


@pytest.fixture(scope="module")
def sca_instances():
    """The two paper presets and 22 feasible random instances, with solve_exact's optimum of each
    (certified OPTIMAL; random instance 38 of this seed, whose optimum is 4.5e-4 (q + s), is included)."""
    candidates = [make_problem("paper", "bert-base"), make_problem("paper", "bart-base")]
    random = _random_instances(11, 60)
    candidates += random[:30] + [random[38]]
    exact = _solve_exact_rows(candidates)
    chosen = [(p, e) for p, e in zip(candidates, exact) if int(e.status) == Status.OPTIMAL]
    assert len(chosen) >= 24
    return chosen[:23] + chosen[-1:]


@pytest.fixture(scope="module")
def sca_runs(sca_instances):
    return [solve_cvxpy_sca(p) for p, _ in sca_instances]


# ----------------------------------------------------------------------------- the paper's SCA


def test_sca_never_beats_the_exact_optimum(sca_instances, sca_runs):
    shortfalls, converged = [], []
    for (problem, exact), run in zip(sca_instances, sca_runs):
        sca = run.solution
        # NOT_CONVERGED: 50 iterations were not enough (ρ or ρ̃ -> 0 converges geometrically), or a
        # (P3.k) stalled at reduced accuracy before the stopping test
        assert int(sca.status) in (Status.OPTIMAL, Status.NOT_CONVERGED)
        optimum = float(exact.retained_params)
        value = float(sca.retained_params)
        total = float(problem.model.params_device + problem.model.params_server)
        assert value <= optimum + SCA_TOL * total, (value, optimum)
        shortfalls.append((optimum - value) / optimum)
        converged.append(int(sca.status) == Status.OPTIMAL)
    shortfalls, converged = np.array(shortfalls), np.array(converged)
    assert converged.mean() >= 0.7
    # how far the paper's SCA falls short of the global optimum when it stops by its own test
    assert np.all(shortfalls[converged] < 1e-3), shortfalls


def test_sca_iterates_are_feasible_and_monotone(sca_instances, sca_runs):
    for (problem, _), run in zip(sca_instances, sca_runs):
        sca = run.solution
        s = problem.system
        terms = evaluate(s, problem.model, sca.point)
        # Clarabel's feasibility tolerance (1e-8 on the scaled subproblem) allows ~1e-7 relative
        # violations of the budgets once mapped back to physical units (seen: 1.03e-7).
        assert float(terms.delay_s) <= float(problem.budget.delay_s) * (1 + 1e-6)
        assert float(terms.energy_j) <= float(problem.budget.energy_j) * (1 + 1e-6)
        assert 0 <= float(sca.rho) <= 1 and 0 <= float(sca.rho_server) <= 1
        assert 0 < float(sca.f_device_hz) <= float(s.f_max_device_hz)
        assert 0 < float(sca.f_server_hz) <= float(s.f_max_server_hz)
        assert 0 < float(sca.p_w) <= float(s.p_max_w)
        history = sca.objective_history
        assert isinstance(history, np.ndarray) and history.dtype == np.float64
        assert history.shape == (int(sca.iterations) + 1,)
        # (P3.k) contains the previous iterate: log2 D̂ never increases (beyond solver tolerance)
        assert np.all(np.diff(history) <= 1e-6), np.diff(history)
        assert history.min() == pytest.approx(float(sca.log2_distortion_bound), abs=1e-12)
        assert int(sca.iterations) >= 1
        assert run.solves >= int(sca.iterations) and run.seconds > 0 and run.solver_seconds > 0


def test_sca_agrees_with_cvxpy_exact_form(sca_instances, sca_runs):
    """The CVXPY exact form is the same optimum as solve_exact; the SCA stays below both."""
    for (problem, exact), run in zip(sca_instances[:8], sca_runs[:8]):
        ref = solve_cvxpy_exact(problem).solution
        total = float(problem.model.params_device + problem.model.params_server)
        assert float(ref.retained_params) == pytest.approx(float(exact.retained_params), rel=1e-6)
        assert float(run.solution.retained_params) <= float(ref.retained_params) + SCA_TOL * total


def test_sca_schemes_and_start():
    problem = make_problem("paper", "bart-base")
    fixed = solve_cvxpy_sca(problem, "fixed-power").solution
    assert float(fixed.p_w) == float(problem.system.p_max_w)
    clocks = solve_cvxpy_sca(problem, "fixed-frequency").solution
    assert float(clocks.f_device_hz) == float(problem.system.f_max_device_hz)
    assert float(clocks.f_server_hz) == float(problem.system.f_max_server_hz)
    assert float(solve_cvxpy_sca(problem, "server-pruning-only").solution.rho) == 1.0
    assert float(solve_cvxpy_sca(problem, "device-pruning-only").solution.rho_server) == 1.0
    on_device = solve_cvxpy_sca(problem, "on-device").solution
    assert float(on_device.p_w) == 0.0 and float(on_device.f_server_hz) == 0.0
    on_server = solve_cvxpy_sca(problem, "on-server").solution
    assert float(on_server.f_device_hz) == 0.0
    total = float(problem.model.params_device + problem.model.params_server)
    for scheme in ("fixed-power", "fixed-frequency", "on-device", "on-server"):
        exact = solve_cvxpy_exact(problem, scheme).solution
        sca = solve_cvxpy_sca(problem, scheme).solution
        assert float(sca.retained_params) <= float(exact.retained_params) + SCA_TOL * total, scheme
    # an explicit feasible start
    s = problem.system
    start = OperatingPoint(0.01, float(s.f_max_device_hz), float(s.p_max_w), 0.01, float(s.f_max_server_hz))
    run = solve_cvxpy_sca(problem, start=start, eps=1e-9, max_iters=100)
    assert int(run.solution.status) == Status.OPTIMAL
    assert run.solution.objective_history[0] > run.solution.objective_history[-1]
    # stopping after one iteration
    one = solve_cvxpy_sca(problem, start=start, max_iters=1).solution
    assert int(one.iterations) == 1 and int(one.status) == Status.NOT_CONVERGED


def test_sca_start_uses_phase_one_when_the_simple_start_is_infeasible():
    """With E0 = 10 mJ, uploading BERT's embedding at P_max alone takes 20 mJ, so the simple start
    (ρ = ρ̃ = 1e-3, full clocks, P_max) is infeasible; phase I finds clocks and power that meet both
    budgets (the least upload energy is 3.9 mJ), and the SCA proceeds from there."""
    problem = make_problem("paper", "bert-base", overrides={"energy_j": 1e-2, "delay_s": 0.5})
    s = problem.system
    p = reference._coefficients(problem, reference.scheme_spec("proposed"))
    simple = (1e-3, float(s.f_max_device_hz), float(s.p_max_w), 1e-3, float(s.f_max_server_hz))
    assert p.energy(*simple) > p.E0  # the simple start is infeasible here
    run = solve_cvxpy_sca(problem)
    assert int(run.solution.status) == Status.OPTIMAL
    assert run.solves > int(run.solution.iterations)  # phase I ran
    exact = _solve_exact_rows([problem])[0]
    total = float(problem.model.params_device + problem.model.params_server)
    assert float(run.solution.retained_params) <= float(exact.retained_params) + SCA_TOL * total


def test_sca_infeasible_instance():
    problem = make_problem("paper", "bert-base", overrides={"delay_s": 0.01})
    sol = solve_cvxpy_sca(problem).solution
    assert int(sol.status) == Status.INFEASIBLE
    assert int(sol.infeasible_reason) == InfeasibleReason.DELAY
    assert sol.objective_history.shape == (0,) and int(sol.iterations) == 0


def test_link_energy_slope_is_eq_47():
    """u(p) of (47) is d/dp [pθ/r(p)]; the tangent ζ^(k) of (46) upper-bounds pθ/r(p) (concave)."""
    problem = make_problem("paper", "bert-base")
    c = reference._coefficients(problem, reference.scheme_spec("proposed"))
    energy = lambda p: c.bits * c.link_joules_per_bit(p)  # noqa: E731
    for pk in (1e-6, 1e-3, 0.05, 0.5, 5.0):
        h = 1e-4 * pk
        numeric = (energy(pk + h) - energy(pk - h)) / (2 * h)
        assert reference._link_energy_slope(c, pk) == pytest.approx(numeric, rel=1e-6)
        # (47) as printed, with B·[log2(1 + gp/(BN0))]²
        g_over = 1.0 / c.link_power  # g/(B N0)
        log2_term = math.log1p(g_over * pk) / math.log(2)
        printed = c.bits / (c.bandwidth * log2_term) - pk * c.bits * g_over / (
            c.bandwidth * log2_term**2 * (1 + g_over * pk) * math.log(2)
        )
        assert reference._link_energy_slope(c, pk) == pytest.approx(printed, rel=1e-12)
        grid = pk * np.geomspace(1e-3, 1e3, 61)
        zeta = energy(pk) + reference._link_energy_slope(c, pk) * (grid - pk)
        assert np.all(zeta >= np.array([energy(p) for p in grid]) * (1 - 1e-12))


# ----------------------------------------------------------------------------- the exact form


def test_exact_form_schemes_pin_their_variables():
    for model in ("bert-base", "bart-base"):
        problem = make_problem("paper", model, overrides={"energy_j": 0.03})
        s = problem.system
        sol = solve_cvxpy_exact(problem, "fixed-power").solution
        if int(sol.status) != Status.INFEASIBLE:
            assert float(sol.p_w) == float(s.p_max_w)
        sol = solve_cvxpy_exact(problem, "fixed-frequency").solution
        assert float(sol.f_device_hz) == float(s.f_max_device_hz)
        assert float(sol.f_server_hz) == float(s.f_max_server_hz)
        assert float(solve_cvxpy_exact(problem, "device-pruning-only").solution.rho_server) == 1.0
        assert float(solve_cvxpy_exact(problem, "server-pruning-only").solution.rho) == 1.0
        on_device = solve_cvxpy_exact(problem, "on-device").solution
        assert float(on_device.p_w) == 0.0 and float(on_device.f_server_hz) == 0.0
        on_server = solve_cvxpy_exact(problem, "on-server").solution
        assert float(on_server.f_device_hz) == 0.0
        values = {sch: float(solve_cvxpy_exact(problem, sch).solution.retained_params)
                  for sch in ("proposed", "fixed-power", "fixed-frequency", "device-pruning-only", "server-pruning-only")}
        for sch, v in values.items():
            assert v <= values["proposed"] * (1 + 1e-8), sch


def test_exact_form_infeasible_reasons():
    bert = make_problem("paper", "bert-base")
    cases = {
        InfeasibleReason.DELAY: {"delay_s": 0.01},
        InfeasibleReason.ENERGY: {"delay_s": 10.0, "energy_j": 1e-4},
        InfeasibleReason.JOINT: {"delay_s": 0.08, "energy_j": 4.6e-3},
    }
    for reason, overrides in cases.items():
        sol = solve_cvxpy_exact(make_problem("paper", "bert-base", overrides=overrides)).solution
        assert int(sol.status) == Status.INFEASIBLE, reason
        assert int(sol.infeasible_reason) == reason
        assert float(sol.retained_params) == 0.0 and float(sol.upper_bound) == 0.0
    assert int(solve_cvxpy_exact(bert).solution.infeasible_reason) == InfeasibleReason.NONE


def test_exact_form_multipliers_match_its_finite_differences():
    """At the paper's BERT point both budgets bind and the optimum is differentiable in T0 and E0."""
    problem = make_problem("paper", "bert-base")
    sol = solve_cvxpy_exact(problem).solution
    h = 1e-4
    for field, key in (("delay_multiplier", "delay_s"), ("energy_multiplier", "energy_j")):
        base = float(getattr(problem.budget, key))
        up = solve_cvxpy_exact(make_problem(overrides={key: base * (1 + h)})).solution
        down = solve_cvxpy_exact(make_problem(overrides={key: base * (1 - h)})).solution
        fd = (float(up.retained_params) - float(down.retained_params)) / (2 * h * base)
        assert float(getattr(sol, field)) == pytest.approx(fd, rel=2e-3), field


def test_exact_form_handles_absent_parts():
    """θ = 0 (no upload), q = 0 with FLOPs, a model entirely on one side."""
    cases = [
        make_problem(overrides={"embedding_bits": 0.0}),
        make_problem(overrides={"params_device": 0.0}),
        make_problem(overrides={"flops_device": 0.0, "params_device": 0.0}),
        make_problem(overrides={"flops_server": 0.0, "params_server": 0.0, "embedding_bits": 0.0}),
    ]
    exact = _solve_exact_rows(cases)
    for problem, e in zip(cases, exact):
        sol = solve_cvxpy_exact(problem).solution
        assert int(sol.status) == Status.OPTIMAL
        assert float(sol.retained_params) == pytest.approx(float(e.retained_params), rel=1e-6)
        terms = evaluate(problem.system, problem.model, sol.point)
        assert float(terms.delay_s) <= float(problem.budget.delay_s) * (1 + 1e-8)
        assert float(terms.energy_j) <= float(problem.budget.energy_j) * (1 + 1e-8)
        for field in sol._fields:
            value = getattr(sol, field)
            if value is not None:
                assert np.all(np.isfinite(np.asarray(value))), field


# ----------------------------------------------------------------------------- API


def test_reference_result_and_timing():
    run = solve_cvxpy_exact(make_problem("paper", "bert-base"))
    assert isinstance(run, ReferenceResult)
    assert run.solves == 1 and 0 < run.solver_seconds <= run.seconds
    assert run.solution.objective_history is None


def test_batched_input_is_rejected():
    problem = _arrays(make_problem("paper", "bert-base"))
    batch = jax.tree_util.tree_map(lambda x: np.repeat(x, 2), problem)
    with pytest.raises(ValueError, match="one scalar problem"):
        solve_cvxpy_exact(batch)


def test_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cvxpy", None)
    with pytest.raises(ImportError, match=r"pip install 'laimco_jax\[baseline\]'"):
        solve_cvxpy_exact(make_problem("paper", "bert-base"))
