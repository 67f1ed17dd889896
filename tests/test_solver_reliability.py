"""No solver answer lies: every OPTIMAL is optimal, every returned point meets its budgets, at every shape,
dtype and x64 setting, over the whole range of inputs that validation accepts (issue 12, items 1-3).

The references are independent of the code under test: the delay and energy of a returned point are
re-evaluated here in float64 NumPy from eqs. (2)-(11); a float32 answer is compared with the float64
solve of the same (float32-rounded) instance; the float64 optimum is checked against random feasible
points found by brute force.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from laimco_jax import make_problem
from laimco_jax.params import SYSTEM_PRESETS, ConfigError, SystemParams
from laimco_jax.solvers import SCHEMES, Status, solve_exact
from laimco_jax.solvers.instances import random_problems
from laimco_jax.solvers.sca import solve_sca
from laimco_jax.solvers.schemes import scheme_problem, scheme_spec
from laimco_jax.system import LN2


def _np(problem):
    return jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), problem)


def delay_energy(problem, rho, f, p, rho_srv, f_srv):
    """T and E of eqs. (2)-(11) in float64 NumPy (independent of laimco_jax.system)."""
    s, m = problem.system, problem.model
    if s.channel_gain is not None:
        gain = s.channel_gain
    else:
        gain = 10.0 ** (s.ref_gain_db / 10.0) * (s.distance_m / s.ref_distance_m) ** (-s.pathloss_exponent)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = s.bandwidth_hz * np.log1p(gain * p / (s.bandwidth_hz * s.noise_psd_w_per_hz)) / LN2
        upload_t = np.where(m.embedding_bits > 0, m.embedding_bits / rate, 0.0)
        dev_t = np.where(m.flops_device > 0, rho * m.flops_device / (s.flops_per_cycle_device * f), 0.0)
        srv_t = np.where(m.flops_server > 0, rho_srv * m.flops_server / (s.flops_per_cycle_server * f_srv), 0.0)
    dev_e = s.pue_device * s.power_coeff_device * rho * m.flops_device * f**2 / s.flops_per_cycle_device
    srv_e = s.pue_server * s.power_coeff_server * rho_srv * m.flops_server * f_srv**2 / s.flops_per_cycle_server
    return dev_t + upload_t + srv_t, dev_e + p * upload_t + srv_e


def check_no_lie(problem, sol, scheme, *, rtol_budget):
    """Properties every Solution must have, whatever its dtype: finite fields, budgets met by feasible points."""
    for name, value in sol._asdict().items():
        if value is not None:
            assert np.all(np.isfinite(np.asarray(value))), f"{name} is not finite"
    ref = _np(scheme_problem(problem, scheme))
    status = np.asarray(sol.status)
    delay, energy = delay_energy(ref, *(np.asarray(x, np.float64) for x in
                                        (sol.rho, sol.f_device_hz, sol.p_w, sol.rho_server, sol.f_server_hz)))
    met = (delay <= ref.budget.delay_s * (1 + rtol_budget)) & (energy <= ref.budget.energy_j * (1 + rtol_budget))
    claims_feasible = (status == Status.OPTIMAL) | (status == Status.NOT_CONVERGED)
    assert np.all(met | ~claims_feasible), "a point reported feasible misses a budget"
    assert np.all(np.asarray(sol.certificate)[status == Status.INFEASIBLE] > 0)


def wide_problems(n: int, seed: int):
    """Half around the paper's setting (spread 10), half log-uniform over the validated ranges of the
    fields that matter most (clocks, chips, channel, budgets, sizes)."""
    near = random_problems(n - n // 2, seed, spread=10.0)
    rng = np.random.default_rng(seed + 1)
    k = n // 2

    def logu(lo, hi):
        return np.exp(rng.uniform(np.log(lo), np.log(hi), k))

    base = make_problem("paper", "bert-base")
    far = base.replace(
        system=SystemParams(
            bandwidth_hz=logu(1e3, 1e9), noise_psd_w_per_hz=logu(1e-22, 1e-16), p_max_w=logu(1e-3, 1e2),
            f_max_device_hz=logu(1e7, 1e12), f_max_server_hz=logu(1e7, 1e12),
            flops_per_cycle_device=logu(1.0, 1e4), flops_per_cycle_server=logu(1.0, 1e4),
            pue_device=logu(1.0, 3.0), pue_server=logu(1.0, 3.0),
            power_coeff_device=logu(1e-32, 1e-26), power_coeff_server=logu(1e-32, 1e-26),
            channel_gain=logu(1e-14, 1e-4),
        ),
        model=base.model.replace(
            params_device=logu(1e5, 1e10), params_server=logu(1e5, 1e10), flops_device=logu(1e7, 1e14),
            flops_server=logu(1e7, 1e14), embedding_bits=logu(1e2, 1e8),
        ),
        budget=base.budget.replace(delay_s=logu(1e-3, 1e2), energy_j=logu(1e-5, 1e1)),
    )
    far = jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a, np.float64), (k,)), far)
    near = jax.tree_util.tree_map(lambda a: np.broadcast_to(np.asarray(a, np.float64), (n - k,)), near)
    near = near.replace(system=near.system.replace(**{f: None for f in SystemParams.PATHLOSS_FIELDS},
                                                   channel_gain=_gain(near.system)))
    return jax.tree_util.tree_map(lambda a, b: np.concatenate([a, b]), near, far)


def _gain(system):
    return 10.0 ** (system.ref_gain_db / 10.0) * (system.distance_m / system.ref_distance_m) ** (-system.pathloss_exponent)


def _reshape(problem, shape):
    return jax.tree_util.tree_map(lambda a: jnp.reshape(a, shape), problem)


def _take(problem, i):
    return jax.tree_util.tree_map(lambda a: a[i], problem)


# ----------------------------------------------------------------------------- issue 12, item 1


def test_float32_scalar_problem_is_solved_like_float64():
    """The reproducer: a 0-d float32 problem with x64 on gave ρ̃ = 0 with certificate 0 (OPTIMAL)."""
    problem = make_problem(overrides={"delay_s": 0.12})
    f64 = solve_exact(problem.astype(jnp.float64))
    f32 = solve_exact(problem.astype(jnp.float32))
    assert int(f64.status) == int(f32.status) == Status.OPTIMAL
    assert float(f32.rho_server) == pytest.approx(float(f64.rho_server), abs=1e-4)
    assert float(f32.retained_params) == pytest.approx(float(f64.retained_params), rel=2e-4)


SLOW_SCHEMES = [pytest.param(s, marks=pytest.mark.slow) for s in SCHEMES if s != "proposed"]


@pytest.mark.parametrize("scheme", ["proposed", *SLOW_SCHEMES])
@pytest.mark.parametrize("x64", [True, False])
def test_exact_answers_agree_across_shapes_dtypes_and_x64(scheme, x64):
    """Shapes (), (1,), (n,), (n, m) in float32 and float64, x64 on and off: no lie, and the same answers."""
    n = 6
    problems = wide_problems(n, seed=7)
    reference = solve_exact(jax.tree_util.tree_map(jnp.asarray, problems), scheme)  # float64, x64 on
    with jax.enable_x64(x64):
        for dtype in ([jnp.float32, jnp.float64] if x64 else [jnp.float32]):
            cast = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), problems)
            batched = {
                (n,): solve_exact(cast, scheme),
                (2, n // 2): solve_exact(_reshape(cast, (2, n // 2)), scheme),
            }
            singles = [solve_exact(_take(cast, i), scheme) for i in range(n)]
            ones = [solve_exact(_reshape(_take(cast, i), (1,)), scheme) for i in range(n)]
            answers = [jax.tree_util.tree_map(lambda x: np.reshape(np.asarray(x), (n,)) if x is not None else None, s)
                       for s in batched.values()]
            answers.append(jax.tree_util.tree_map(lambda *xs: np.stack([np.reshape(np.asarray(x), ()) for x in xs]), *singles))
            answers.append(jax.tree_util.tree_map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *ones))
            wide = dtype == jnp.float64
            gap_tol = 1e-9 if wide else 1.2e-4
            for sol in answers:
                check_no_lie(problems, sol, scheme, rtol_budget=0.0 if wide else 1e-6)
                status = np.asarray(sol.status)
                ref_status = np.asarray(reference.status)
                # an OPTIMAL answer is within its gap of the float64 optimum of the same instance
                total = np.asarray(problems.model.params_device + problems.model.params_server)
                opt = status == Status.OPTIMAL
                both = opt & (ref_status == Status.OPTIMAL)
                err = np.abs(np.asarray(sol.retained_params, np.float64) - np.asarray(reference.retained_params))
                assert np.all(err[both] <= (gap_tol + 1e-5) * total[both]), (scheme, dtype, err / total)
                assert np.all(ref_status[opt] == Status.OPTIMAL)
                # an infeasibility proof in any dtype is one in float64
                assert np.all(ref_status[status == Status.INFEASIBLE] == Status.INFEASIBLE)


# ----------------------------------------------------------------------------- issue 12, item 2


def corner_problems():
    """The paper's problem with one field at a time at either end of its validated range."""
    from laimco_jax.params import Budget, ModelProfile

    overrides = []
    for cls in (SystemParams, ModelProfile, Budget):
        for field, allowed in cls._RULES.items():
            if field == "channel_gain" or field == "entropy_bits":
                continue
            for value in (allowed.lower if allowed.inclusive else allowed.upper * 1e-6, allowed.upper):
                overrides.append({field: value})
    overrides += [{"channel_gain": 1e-30}, {"channel_gain": 1e6}, {"delay_s": 1e6, "energy_j": 1e6},
                  {"delay_s": 1e6, "energy_j": 1e-3}, {"delay_s": 1e-3, "energy_j": 1e6}]
    problems = []
    for o in overrides:
        try:
            problems.append(make_problem(overrides=o))
        except ConfigError as exc:  # the path-loss gain leaves its range: refused, as tested below
            assert "path-loss gain" in str(exc)
    assert len(problems) > 40
    gain = [float(_gain(p.system)) if p.system.channel_gain is None else p.system.channel_gain for p in problems]
    problems = [p.replace(system=p.system.replace(channel_gain=g, **{f: None for f in SystemParams.PATHLOSS_FIELDS}))
                for p, g in zip(problems, gain)]
    return jax.tree_util.tree_map(lambda *xs: np.asarray(xs, np.float64), *problems)


@pytest.mark.parametrize("scheme", ["proposed", "fixed-power", "fixed-frequency",
                                    *(pytest.param(s, marks=pytest.mark.slow) for s in SCHEMES[3:])])
def test_range_corners_are_solved_in_float64_and_never_lie_in_float32(scheme):
    """Every field at the ends of the range validation accepts: float64 reaches a verdict (no UNRESOLVED),
    no field is NaN, and float32 agrees with it wherever it claims optimality or infeasibility."""
    problems = corner_problems()
    f64 = solve_exact(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), problems), scheme)
    f32 = solve_exact(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), problems), scheme)
    check_no_lie(problems, f64, scheme, rtol_budget=0.0)
    check_no_lie(problems, f32, scheme, rtol_budget=1e-6)
    s64, s32 = np.asarray(f64.status), np.asarray(f32.status)
    assert not np.any(s64 == Status.UNRESOLVED)
    assert np.all(s64[s32 == Status.INFEASIBLE] == Status.INFEASIBLE)
    opt = s32 == Status.OPTIMAL
    assert np.all(s64[opt] == Status.OPTIMAL)
    total = np.asarray(problems.model.params_device + problems.model.params_server)
    err = np.abs(np.asarray(f32.retained_params, np.float64) - np.asarray(f64.retained_params))[opt] / total[opt]
    assert np.all(err <= 2e-4)


def test_out_of_range_magnitudes_are_refused_with_the_range():
    """The issue's reproducers that overflowed (NaN power, infinite gain) are refused up front."""
    for overrides, text in [
        ({"channel_gain": 1e300}, "system.channel_gain = 1e+300"),
        ({"f_max_device_hz": 1e300}, "system.f_max_device_hz = 1e+300"),
        ({"ref_gain_db": 4000.0}, "system.ref_gain_db = 4000.0"),
        ({"distance_m": 1e7, "ref_gain_db": -300.0}, "path-loss gain"),
    ]:
        with pytest.raises(ConfigError, match="allowed range") as info:
            make_problem(overrides=overrides)
        assert text in str(info.value)


# ----------------------------------------------------------------------------- issue 12, item 3


@pytest.mark.parametrize("method", ["exact", "sca"])
def test_budget_equal_to_the_least_delay_returns_the_only_feasible_point(cli, method):
    """T0 equal to the least possible delay (as `laimco system` prints it): the only feasible point (the
    pruning lower bounds at full clocks and power) is returned. The exact solver certifies it (OPTIMAL,
    zero gap), not NOT_CONVERGED with a placeholder certificate; the SCA, whose start rule keeps its
    points a margin inside the budgets and so finds no start, returns it as a found point with no
    iteration (NOT_CONVERGED: no room to iterate), not as UNRESOLVED."""
    import json

    code, out, _ = cli("system", "--rho", "0", "--rho-server", "0", "--f-device", "1e9", "--p-watt", "0.5",
                       "--f-server", "4e9", "--json")
    least = json.loads(out)["delay_s"]
    code, out, err = cli("solve", "--method", method, "--set", f"delay_s={least!r}", "--set", "energy_j=1", "--json")
    record = json.loads(out)
    assert code == 0 and record["delay_s"] <= least and record["infeasible_reason"] == ""
    assert (record["rho"], record["rho_server"], record["f_device_hz"], record["p_w"]) == (0.0, 0.0, 1e9, 0.5)
    if method == "exact":
        assert record["status"] == "optimal" and record["certificate"] == pytest.approx(0.0, abs=1e-12)
    else:
        assert record["status"] == "not_converged" and record["iterations"] == 0


@pytest.mark.parametrize("overrides", [["distance_m=100", "delay_s=0.12"], ["delay_s=0.12"], ["energy_j=0.008"],
                                       ["distance_m=300", "delay_s=0.2", "energy_j=0.01"]])
def test_returned_point_meets_its_budgets_when_re_evaluated_by_laimco_system(cli, overrides):
    import json

    sets = [a for o in overrides for a in ("--set", o)]
    code, out, _ = cli("solve", *sets, "--json")
    sol = json.loads(out)
    assert code == 0 and sol["status"] == "optimal"
    code, out, _ = cli("system", *sets, "--rho", repr(sol["rho"]), "--rho-server", repr(sol["rho_server"]),
                       "--f-device", repr(sol["f_device_hz"]), "--p-watt", repr(sol["p_w"]),
                       "--f-server", repr(sol["f_server_hz"]), "--json")
    terms = json.loads(out)
    assert terms["within_delay_budget"] and terms["within_energy_budget"]


def test_fixed_power_with_a_huge_delay_budget_is_proved_infeasible():
    """At p = P_max the upload alone exceeds E0: infeasible (it was NOT_CONVERGED 35 % over budget)."""
    sol = solve_exact(make_problem(overrides={"delay_s": 1e6}).astype(jnp.float64), "fixed-power")
    assert int(sol.status) == Status.INFEASIBLE and float(sol.certificate) > 0.3


@pytest.mark.parametrize("x64", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_sca_never_lies_across_shapes_dtypes_and_x64(x64):
    """The paper's SCA at shapes (), (1,), (n,), (n, m): its points meet the budgets, it never beats the
    exact solver's upper bound, and its infeasibility verdicts are the exact solver's."""
    n = 4
    problems = wide_problems(n, seed=3)
    exact = solve_exact(jax.tree_util.tree_map(jnp.asarray, problems))
    with jax.enable_x64(x64):
        for dtype in ([jnp.float32, jnp.float64] if x64 else [jnp.float32]):
            cast = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype), problems)
            answers = [
                solve_sca(cast, max_iters=30),
                jax.tree_util.tree_map(lambda x: np.reshape(x, (n,) + np.shape(x)[2:]),
                                       solve_sca(_reshape(cast, (2, n // 2)), max_iters=30)),
                jax.tree_util.tree_map(lambda *xs: np.stack(xs), *(solve_sca(_take(cast, i), max_iters=30) for i in range(n))),
                jax.tree_util.tree_map(lambda *xs: np.concatenate(xs),
                                       *(solve_sca(_reshape(_take(cast, i), (1,)), max_iters=30) for i in range(n))),
            ]
            for sol in answers:
                check_no_lie(problems, sol, "proposed", rtol_budget=0.0 if dtype == jnp.float64 else 1e-6)
                status = np.asarray(sol.status)
                feasible = (status == Status.OPTIMAL) | (status == Status.NOT_CONVERGED)
                bound = np.asarray(exact.upper_bound) * (1 + 1e-6)
                assert np.all(np.asarray(sol.retained_params, np.float64)[feasible] <= bound[feasible])
                assert np.all((status == Status.INFEASIBLE) == (np.asarray(exact.status) == Status.INFEASIBLE))
