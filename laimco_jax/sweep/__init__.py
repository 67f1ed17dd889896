"""Sweeps of (P1) over grids of configurations: chunked, jitted, sharded over devices and hosts, resumable.

A sweep solves (P1) exactly (:func:`~laimco_jax.solvers.solve_exact`) at every point of a Cartesian
product of *axes*:

* a grid axis per swept configuration field, named by the field (``delay_s``, ``energy_j``,
  ``distance_m``, ``bandwidth_hz``, ``p_max_w``, ``f_max_device_hz``, ``embedding_bits``, ... any
  field of :data:`~laimco_jax.params.FIELD_SECTION`), in the order given (the last varies fastest);
* optionally one explicit point list (dim ``point``): rows of values of several fields at once;
* optionally the split point (dim ``split``, number of layers on the device, 0 = on-server ...
  L = on-device). The split-dependent profile fields (:data:`SPLIT_FIELDS`: q, s, N, Ñ, θ) then come
  from the preset model's profile at each split (:func:`~laimco_jax.params.model_preset_fields` of
  ``split_model``, the ``--model`` preset, also when ``--config`` gives the rest of the
  configuration); the other model fields (b, h(w), input bits) stay those of the configuration;
* the scheme (dim ``scheme``, always present, see :data:`~laimco_jax.solvers.SCHEMES`).

Grid values (``--grid FIELD=SPEC`` or ``FIELD = "SPEC"`` in a spec file):

* ``START:STOP:NUM``      NUM linearly spaced values, STOP included (``numpy.linspace``);
* ``START:STOP:NUM:log``  NUM geometrically spaced values, STOP included, START and STOP > 0;
* ``V1,V2,...`` or ``V``  explicit distinct values (a TOML array of numbers works too).

Splits (``--split``): ``all`` (0 ... L of the model), ``FIRST:LAST`` (inclusive) or ``S1,S2,...``.
Schemes (``--scheme``): ``all`` or a comma list (default ``proposed``).
Gradients (``--gradient OUTPUT/FIELD``, repeatable; spec file ``gradient = [...]``): the implicit
derivative of an optimum output (:data:`~laimco_jax.sensitivity.OUTPUTS`) w.r.t. a configuration
field, stored per instance as ``d_OUTPUT_d_FIELD`` (:func:`~laimco_jax.sensitivity.field_derivatives`).

Spec file (``laimco sweep --spec sweep.toml``); relative paths are relative to the spec file, and
options given on the command line as well override the file's (``--grid`` per field)::

    preset = "paper"              # system preset (ignored when config is set)
    model = "bert-base"           # model preset: the base profile and the per-split profiles
    config = "base.toml"          # optional TOML configuration replacing the presets
    split = "0:12"                # or "all", or [0, 4, 12]; omit for no split axis
    scheme = "all"                # or "proposed,fixed-power", or ["proposed", "fixed-power"]
    out = "sweep.zarr"
    chunk_size = 65536            # most (P1) instances per chunk

    [set]                         # overrides of the base configuration (as --set)
    distance_m = 300.0

    [grid]                        # one axis per field, outermost first
    delay_s = "0.1:0.6:51"
    energy_j = "0.005:0.03:26"
    bandwidth_hz = "1e6:1e8:9:log"
    p_max_w = [0.1, 0.2, 0.5]

    [[points]]                    # explicit point list: same fields in every row;
    noise_psd_w_per_hz = 2e-19    # or  points = "points.csv"  (header row: field names)
    f_max_server_hz = 4e9
    [[points]]
    noise_psd_w_per_hz = 4e-19
    f_max_server_hz = 2e9

Evaluation. The grid is never materialised. It is cut into hyper-rectangular chunks (:class:`ChunkLayout`)
of at most ``chunk_size`` solver instances (the product of the chunk's grid points, schemes and
splits), so every chunk holds all schemes and splits of its grid points. One jitted function per
scheme computes its part of a chunk from the chunk's origin (compile time linear in the schemes; the
persistent compilation cache of ``laimco`` serves every later sweep of the same structure that
includes the scheme): the flat in-chunk index is unravelled on the device into indices of each
axis, the field values gathered, and the instances solved with the solver's own broadcasting. The chunk axis is sharded over all local devices (a 1-D :class:`jax.sharding.Mesh`,
:class:`~jax.sharding.NamedSharding` along it; the chunk is padded to a multiple of the device count).
Memory is flat in the grid size: at most three chunks are in flight (one computing, one being
written by a writer thread, one waiting for it). With a compilation cache directory (``laimco`` sets
one), the compiled chunk program is also kept serialized there (:mod:`laimco_jax.sweep.executables`),
so a later sweep of the same structure loads it without tracing or lowering.

Hosts. Under :mod:`jax.distributed`, every process takes every ``process_count``-th chunk still to do
and writes it into the same store (chunks are disjoint Zarr chunks, so the writes never overlap);
process 0 creates the store, and the processes meet at barriers (around creating the store, after
reading the progress markers, at the end). The store must be on a
file system every process sees. Under SLURM, with the store on a shared file system::

    #SBATCH --nodes=4 --ntasks-per-node=1 --gpus-per-task=1
    srun laimco sweep --distributed --spec sweep.toml --resume

``--distributed`` calls ``jax.distributed.initialize()``, which reads the coordinator, the process
count and the process id from SLURM's environment (elsewhere pass them as
``jax.distributed.initialize(coordinator_address="host:port", num_processes=P, process_id=i)`` before
calling :func:`run_sweep`). ``--resume`` makes a re-queued job continue where it stopped.

Results. A Zarr (format 2) store, opened with :func:`open_sweep` as an :class:`xarray.Dataset`:
coordinates named by the swept fields (a point list's fields are coordinates along ``point``),
``scheme`` and ``split``; every :class:`~laimco_jax.solvers.Solution` field as a variable of dims
(grid dims..., scheme[, split]) with units and a description in attrs (``Solution.delay_s`` and
``.energy_j`` are stored as ``total_delay_s`` and ``total_energy_j``: ``delay_s`` and ``energy_j``
name the budgets T0, E0); attrs hold the base configuration as TOML (``config_toml``), the sweep
spec as JSON (``sweep_spec``; a range axis as its start, stop and count) and ``complete`` (false until
the last chunk is written). Points not yet computed read as NaN (floats) and -1 (integers).
An output named ``NAME.nc`` is netCDF-3 instead (:data:`OUT_SUFFIXES`): the sweep runs in the Zarr
work store ``NAME.nc.zarr``, converted and removed once complete; no other suffix is accepted.

Resume. Each chunk is written, then marked done in ``_progress/done`` (one Zarr chunk per sweep
chunk). An interrupted sweep continued with ``resume=True`` recomputes exactly the chunks not marked
done and overwrites them whole, so it loses and duplicates nothing; the chunk layout is the stored one.
A Ctrl-C raises :class:`Interrupted`, whose message says how many chunks were written and how to
resume. The store is created under a temporary name and renamed into place, so a sweep killed while
creating it leaves no half store. While a sweep writes, the lock file ``STORE.lock`` beside the store
names its process and host and refuses a second sweep into the same store (a dead holder's lock is
taken over). Before computing, the sweep refuses (ConfigError) when its uncompressed size exceeds the
free disk space, unless ``force``; a failed write (disk full, read-only) is a ConfigError that says
what was written and how to resume.

Best split (with a split axis). For each grid point and scheme, ``best_split`` is the split whose
solution retains the most parameters ρq + ρ̃s among the splits solved OPTIMAL (so it minimises D̂,
strictly decreasing in ρq + ρ̃s at the fixed total q + s of a preset model; splits within a relative
:data:`BEST_SPLIT_RTOL` of the most tie, and ties go to the smallest split), or -1 when no split is solved OPTIMAL; ``best_log10_distortion_bound`` is log10 D̂ there (NaN
for -1). It is a reduction inside the jitted chunk function, so it costs no second pass.

Fading (:mod:`laimco_jax.sweep.fading`). ``laimco sweep ... --fading MODEL --samples N --seed S
[--reduce-only]`` (spec file keys ``fading``, ``samples``, ``seed``, ``reduce_only``; defaults N = 1000,
S = 0) solves every grid point and scheme at the same N channel draws of the model (the forms of
:func:`~laimco_jax.fading.parse_fading`; the gain is the point's gain times the drawn |h|², draw i keyed
by (S, i) alone, so the results do not depend on the chunk size). Stored: per grid point and scheme the
reductions over the draws, ``adaptive_mean_log10_distortion_bound``, ``adaptive_log10_distortion_bound_q05``
/ ``_q50`` / ``_q95`` (exact order statistics, a draw without a design counting as +inf) and
``adaptive_infeasible_fraction``; unless ``--reduce-only``, every Solution variable with a last dim
``sample``, ``drawn_channel_gain`` (the draw's gain g·|h|² at the point) and the coordinate
``gain_factor`` (the drawn |h|² per sample). The chunk size counts every
draw; a chunk holds all N draws of at least one grid point and solves them in batches, keeping 8 bytes
per draw for the exact quantiles. Not with ``--split`` or ``--gradient``, nor with ``--users``::

    laimco sweep --grid distance_m=50:500:10 --fading rayleigh --samples 1000000 --seed 1 --reduce-only --out f.zarr

Cells of users (:mod:`laimco_jax.sweep.cells`, :func:`build_cell_spec`). ``laimco sweep --users
cell.toml`` sweeps :func:`~laimco_jax.solvers.multiuser.solve_cell` over a cell file (the file of
``laimco multiuser``) with the same store, chunks, sharding, lock, resume and interrupts::

    laimco sweep --users cell.toml --grid bandwidth_hz=1e6:2e7:8:log --grid delay_s=0.2:0.5:4 --out cells.zarr
    laimco sweep --users cell.toml --num-users 1:16 --draws 32 --seed 7 --distance-range 100:600 \
        --objective all --out k.zarr

``--grid`` takes ``bandwidth_hz`` and ``f_max_server_hz`` (the cell's) or any per-user field, which
every user of the cell then takes. ``--num-users K1,K2,...`` (or ``FIRST:LAST``) adds the K axis
(dims ``num_users`` and ``draw``): ``--draws`` random cells per K of users copied from the file's first
user (or its ``[defaults]``), at distances uniform over the annulus ``--distance-range MIN:MAX`` [m],
drawn from ``--seed`` per draw (the same seed gives the same cells whatever the chunking; a draw's
K-user cell is its first K users). ``--objective`` (default the file's) is a dim, like ``scheme``.
Per-cell variables are ``cell_status``, ``cell_objective``, ``cell_lower_bound``, ``cell_certificate``,
``cell_infeasible_reason``; per-user ones (dim ``user``) ``band_share_hz``, ``server_share_hz`` and the
Solution fields under the names above (absent users of a smaller K read NaN / -1; the coordinate
``present`` says which are users; ``distance_m`` and ``weight`` are per-user coordinates). Resume with
``laimco sweep --resume --out NAME`` as any sweep.
"""

from laimco_jax.sweep.cells import (
    CellSweepSpec,
    build_cell_spec,
    draw_distances,
    parse_distance_range,
    parse_num_users,
    parse_objectives,
)
from laimco_jax.sweep.compute import (
    BEST_SPLIT_RTOL,
    DEFAULT_CHUNK_SIZE,
    ChunkLayout,
    best_split,
    chunk_layout,
)
from laimco_jax.sweep.driver import Interrupted, run_sweep
from laimco_jax.sweep.lock import LOCK_HEARTBEAT_S, LOCK_STALE_S
from laimco_jax.sweep.schema import SOLUTION_VARIABLES, gradient_variable
from laimco_jax.sweep.spec import (
    DEFAULT_FADING_SAMPLES,
    OUT_SUFFIXES,
    POINT_DIM,
    SAMPLE_DIM,
    SPLIT_FIELDS,
    Axis,
    FadingSamples,
    SweepSpec,
    build_spec,
    parse_fading_samples,
    parse_gradients,
    parse_grid_option,
    parse_grid_values,
    parse_schemes,
    parse_splits,
    points_axis,
    read_points_csv,
    read_spec_file,
)
from laimco_jax.sweep.store import open_sweep, stored_spec
from laimco_jax.units import FIELD_UNITS

__all__ = [
    "BEST_SPLIT_RTOL",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_FADING_SAMPLES",
    "FIELD_UNITS",
    "LOCK_HEARTBEAT_S",
    "LOCK_STALE_S",
    "OUT_SUFFIXES",
    "POINT_DIM",
    "SAMPLE_DIM",
    "SOLUTION_VARIABLES",
    "SPLIT_FIELDS",
    "Axis",
    "CellSweepSpec",
    "ChunkLayout",
    "FadingSamples",
    "Interrupted",
    "SweepSpec",
    "best_split",
    "build_cell_spec",
    "build_spec",
    "chunk_layout",
    "draw_distances",
    "gradient_variable",
    "open_sweep",
    "parse_distance_range",
    "parse_fading_samples",
    "parse_gradients",
    "parse_grid_option",
    "parse_grid_values",
    "parse_num_users",
    "parse_objectives",
    "parse_schemes",
    "parse_splits",
    "points_axis",
    "read_points_csv",
    "read_spec_file",
    "run_sweep",
    "stored_spec",
]
