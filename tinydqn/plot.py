"""Learning curves from run directories (plot_runs) or from (x, y) arrays (plot_curves). Runs of one config
(seeds apart) become one curve: their IQM or median with a bootstrap confidence band, the statistics Agarwal et
al. (2021, "Deep RL at the Edge of the Statistical Precipice", the rliable library) recommend for a handful of
runs. Written with numpy: the definitions are a few lines, and rliable would bring scipy, pandas, statsmodels,
arch and seaborn with it. Reads the CSV files only, so it needs matplotlib and nothing else.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable

import numpy as np

from tinydqn.errors import UserError, import_extra

# --metric: (file, column, axis label); --x: (column, axis label)
METRICS = {"eval": ("eval.csv", "mean_return", "greedy evaluation return"),
           "train": ("metrics.csv", "episodic_return", "episodic return (training episodes)")}
X_AXES = {"steps": ("step", "environment steps"), "time": ("time_s", "wall-clock seconds")}
# config.json keys that say which run this is (or where it ran) rather than what is learned: runs differing only
# here are seeds of one config.
RUN_SPECIFIC = {"seed", "checkpoint_freq", "keep_checkpoints", "checkpoint_buffer", "device",
                "fused_updates"}  # how many gradient steps share a jitted call: the same numbers either way


def learned_settings(config: dict) -> dict:
  """A run's config without its RUN_SPECIFIC keys: what two runs must share to be seeds of one config."""
  return {k: v for k, v in config.items() if k not in RUN_SPECIFIC}


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
  """Interquartile mean: the mean of the middle half, after dropping the lowest and highest ⌊n/4⌋ values
  (as scipy.stats.trim_mean(values, 0.25), which rliable uses)."""
  values = np.sort(values, axis=axis)
  n = values.shape[axis]
  k = int(0.25 * n)
  return np.take(values, np.arange(k, n - k), axis=axis).mean(axis=axis)


AGGREGATES: dict[str, Callable[..., np.ndarray]] = {"iqm": iqm, "median": np.median, "mean": np.mean}


def bootstrap_ci(values: np.ndarray, agg: str = "iqm", reps: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Percentile bootstrap over runs: `values` is (runs, points); resample the runs with replacement `reps`
  times, aggregate each resample, and take the central `level` of the results at each point."""
  idx = np.random.default_rng(seed).integers(len(values), size=(reps, len(values)))
  stats = AGGREGATES[agg](values[idx], axis=1)
  lo, hi = np.percentile(stats, [50 * (1 - level), 50 * (1 + level)], axis=0)
  return lo, hi


def read_curve(run_dir: str | Path, metric: str = "eval", x: str = "steps") -> tuple[np.ndarray, np.ndarray]:
  """(x, y) of one run; a folder that is not a run, or a run with no rows yet, is a UserError naming it."""
  run_dir = Path(run_dir)
  if not (run_dir / "config.json").is_file(): raise UserError(f"{run_dir} is not a run directory (no config.json)")
  name, column = METRICS[metric][:2]
  try:
    with open(run_dir / name, newline="") as f: rows = list(csv.DictReader(f))
  except FileNotFoundError:
    raise UserError(f"{run_dir} has no {name}") from None
  if not rows: raise UserError(f"{run_dir / name} has no rows yet" + (" (eval_freq = 0?)" if metric == "eval" else ""))
  return np.array([float(r[X_AXES[x][0]]) for r in rows]), np.array([float(r[column]) for r in rows])


def align(curves: list[tuple[np.ndarray, np.ndarray]], points: int = 100) -> tuple[np.ndarray, np.ndarray]:
  """(grid, values of shape (runs, len(grid))). Runs logged at the same x (evaluations every eval_freq steps) keep
  those; otherwise each is interpolated linearly onto a grid spanning the range that all of them cover."""
  xs = [c[0] for c in curves]
  if all(len(x) == len(xs[0]) and np.array_equal(x, xs[0]) for x in xs): return xs[0], np.stack([c[1] for c in curves])
  lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
  if lo >= hi: raise UserError("the runs share no range of the x axis to aggregate over")
  grid = np.linspace(lo, hi, points)
  return grid, np.stack([np.interp(grid, x, y) for x, y in curves])


def group_runs(run_dirs: list[Path], labels: list[str] | None = None) -> dict[str, list[Path]]:
  """Runs with equal configs (run-specific fields aside), labelled by the env id and the fields that differ; or,
  given `labels` (one per run), the runs that share a label."""
  if labels is not None:
    if len(labels) != len(run_dirs): raise UserError(f"{len(labels)} labels for {len(run_dirs)} run directories")
    by_label: dict[str, list[Path]] = {}
    for label, d in zip(labels, run_dirs): by_label.setdefault(label, []).append(d)
    return by_label
  configs = {}
  for d in run_dirs:
    if not (d / "config.json").is_file(): raise UserError(f"{d} is not a run directory (no config.json)")
    try: configs[d] = learned_settings(json.loads((d / "config.json").read_text()))
    except (ValueError, AttributeError) as e: raise UserError(f"cannot read {d / 'config.json'}: {e}") from None
  keys = sorted({k for c in configs.values() for k in c})
  varying = [k for k in keys if k != "env_id" and len({json.dumps(c.get(k)) for c in configs.values()}) > 1]
  groups: dict[str, list[Path]] = {}
  for d, c in configs.items():
    label = " ".join([c.get("env_id", "?")] + [f"{k}={_short(c.get(k))}" for k in varying])
    groups.setdefault(label, []).append(d)
  return groups


def _short(v) -> str:
  return ",".join(map(str, v)) if isinstance(v, list) else f"{v:g}" if isinstance(v, float) else str(v)


def plot_runs(run_dirs: list[str | Path], out: str | Path, metric: str = "eval", x: str = "steps",
              agg: str = "iqm", title: str | None = None, labels: list[str] | None = None) -> Path:
  """One curve per config (its runs aggregated with `agg`, a 95% bootstrap band when it has several), saved
  to `out` (.png, .pdf, .svg: matplotlib picks the format from the suffix). `labels`, one per run directory,
  name the curves instead: runs with the same label form one curve."""
  if metric not in METRICS: raise UserError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
  if x not in X_AXES: raise UserError(f"unknown x axis {x!r}; choose from {', '.join(X_AXES)}")
  if agg not in AGGREGATES: raise UserError(f"unknown aggregate {agg!r}; choose from {', '.join(AGGREGATES)}")
  if not run_dirs: raise UserError("no run directories to plot")
  groups = group_runs([Path(d) for d in run_dirs], labels)
  curves = {label: [read_curve(d, metric, x) for d in dirs] for label, dirs in groups.items()}  # all read before drawing
  return plot_curves(curves, out, agg, X_AXES[x][1], METRICS[metric][2], title)


def plot_curves(groups: dict[str, list[tuple[np.ndarray, np.ndarray]]], out: str | Path, agg: str = "iqm",
                xlabel: str = X_AXES["steps"][1], ylabel: str = METRICS["eval"][2], title: str | None = None) -> Path:
  """Draws curves that are not run directories (another library's logs, say): `groups` maps a label to its runs,
  each an (x, y) pair; a label's runs become one curve, aligned, aggregated and banded as plot_runs does (which
  calls it). Saved to `out`, whose suffix picks the format."""
  if agg not in AGGREGATES: raise UserError(f"unknown aggregate {agg!r}; choose from {', '.join(AGGREGATES)}")
  if not groups: raise UserError("no curves to plot")
  for label, runs in groups.items():
    if not runs: raise UserError(f"{label!r} has no runs")
    for x, y in runs:
      if len(x) != len(y) or not len(x): raise UserError(f"a run of {label!r} has {len(x)} x and {len(y)} y values")
  aligned = {label: align([(np.asarray(x, float), np.asarray(y, float)) for x, y in runs])
             for label, runs in groups.items()}
  Figure = import_extra("matplotlib.figure", "plot", "plotting").Figure  # no pyplot: no display, no global state
  fig = Figure(figsize=(7, 4.5), layout="constrained")
  ax = fig.subplots()
  for label, (grid, values) in aligned.items():
    n = len(values)
    line, = ax.plot(grid, AGGREGATES[agg](values, axis=0), label=f"{label} ({n} run{'s' * (n > 1)})")
    if n > 1: ax.fill_between(grid, *bootstrap_ci(values, agg), color=line.get_color(), alpha=0.2, linewidth=0)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(f"{ylabel}, {agg}" + (" (95% bootstrap CI)" if any(len(v) > 1 for _, v in aligned.values()) else ""))
  if title: ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize="small")
  out = Path(out)
  formats = fig.canvas.get_supported_filetypes()
  if out.suffix.lower().lstrip(".") not in formats:
    raise UserError(f"cannot write a plot as {out}: name a file ending in one of .{', .'.join(sorted(formats))}")
  try:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
  except OSError as e:
    raise UserError(f"cannot write {out}: {e.strerror}") from None
  return out
