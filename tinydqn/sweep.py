"""Multi-seed runs and grid sweeps, each trial a Ray task. `ray.init()` starts a local cluster; an address joins an
existing one, so outgrowing one machine changes one flag. Trials are ordinary run directories under OUT: running
the same sweep again skips the finished ones and resumes the interrupted ones from their snapshots.

A spec (TOML): top-level `env_id`, `preset`, `seeds` ("0-9", "0,3,7" or a list); `[config]` fixed config values;
`[grid]` lists of values, every combination of which runs with every seed.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tinydqn.config import Config, make_config
from tinydqn.errors import TrainingDiverged, UserError, import_extra
from tinydqn.fast import fast_levers
from tinydqn.plot import bootstrap_ci, iqm
from tinydqn.rundir import check_same_config

SPEC_FIELDS = ("env_id", "preset", "seeds", "config", "grid")
CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name != "seed")  # seeds come from `seeds`


@dataclass(frozen=True)
class Trial:
  name: str  # its run directory under OUT
  config: Config
  grid: dict[str, Any]  # this trial's grid values


def parse_seeds(value: Any) -> list[int]:
  """A list of non-negative ints, or text: "0-9" (inclusive), "0,3,7", or a mix ("0-2,5")."""
  if isinstance(value, int) and not isinstance(value, bool): value = [value]
  if isinstance(value, str):
    seeds = []
    for part in filter(None, value.replace(" ", "").split(",")):
      m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
      if not m or (m[2] and int(m[2]) < int(m[1])): raise UserError(f"bad seeds {value!r}: expected e.g. '0-9' or '0,3,7'")
      seeds += range(int(m[1]), int(m[2] or m[1]) + 1)
    value = seeds
  if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                         for s in value):
    raise UserError(f"bad seeds {value!r}: expected non-negative integers, e.g. [0, 1, 2] or '0-9'")
  if len(set(value)) != len(value): raise UserError(f"bad seeds {value!r}: a seed is repeated")
  return value


def _check_fields(table: Any, where: str) -> dict[str, Any]:
  if not isinstance(table, dict): raise UserError(f"{where} must be a table of config fields")
  unknown = sorted(set(table) - set(CONFIG_FIELDS))
  if unknown:
    hint = "; set seeds with the top-level `seeds`" if "seed" in unknown else ""
    raise UserError(f"unknown config field(s) in {where}: {', '.join(unknown)}{hint}; valid fields: {', '.join(CONFIG_FIELDS)}")
  return table


def _value_text(v: Any) -> str:
  # floats by repr, the shortest text that reads back as the same number: 2.5e-4 and 2.5000001e-4 stay apart
  return "x".join(map(str, v)) if isinstance(v, list | tuple) else repr(v) if isinstance(v, float) else str(v)


def make_trials(spec: dict[str, Any]) -> list[Trial]:
  """Every (grid combination, seed) of a spec, each config built and validated: bad input fails here, before
  anything runs."""
  unknown = sorted(set(spec) - set(SPEC_FIELDS))
  if unknown: raise UserError(f"unknown sweep field(s): {', '.join(unknown)}; valid fields: {', '.join(SPEC_FIELDS)} "
                              f"(config values go in [config] or [grid])")
  seeds = parse_seeds(spec.get("seeds", [0]))
  fixed, grid = _check_fields(spec.get("config", {}), "[config]"), _check_fields(spec.get("grid", {}), "[grid]")
  for k, values in grid.items():
    if not isinstance(values, list) or not values: raise UserError(f"[grid] {k} must be a non-empty list of values")
  trials = []
  for combo in itertools.product(*grid.values()):
    values = {**fixed, **dict(zip(grid, combo))}
    env_id = values.pop("env_id", spec.get("env_id", "CartPole-v1"))
    for seed in seeds:
      name = "__".join([env_id, *(f"{k}={_value_text(v)}" for k, v in zip(grid, combo) if k != "env_id"), f"s{seed}"])
      name = re.sub(r"[^A-Za-z0-9_.=,-]+", "_", name)
      try:
        config = make_config(env_id, spec.get("preset"), **values, seed=seed)
      except UserError as e:
        raise UserError(f"trial {name}: {e}") from None
      if any(t.name == name for t in trials):  # e.g. a grid listing 1e-3 and 0.001: one run directory for both
        raise UserError(f"the grid gives trial {name} twice (values that are the same number?); list each value once")
      trials.append(Trial(name, config, dict(zip(grid, combo))))
  return trials


def load_spec(path: str | Path) -> dict[str, Any]:
  try:
    return tomllib.loads(Path(path).read_text())
  except FileNotFoundError:
    raise UserError(f"sweep spec not found: {path}") from None
  except tomllib.TOMLDecodeError as e:
    raise UserError(f"cannot read sweep spec {path}: {e}") from None


def run_trial(config: dict[str, Any], run_dir: str) -> dict[str, Any]:
  """One trial, in a Ray worker: a new trial, or one stopped before its first snapshot, starts (again); an
  interrupted one continues from its snapshot. A trial whose snapshots are all damaged is not restarted, which
  would wipe its folder: it fails with that error, is reported, and the sweep goes on with the others."""
  from tinydqn.snapshot import snapshot_dirs  # in the worker: tinygrad starts there, with the worker's device
  from tinydqn.train import resume, train
  path = Path(run_dir)
  if not (path / "summary.json").exists():
    if (path / "config.json").exists() and snapshot_dirs(path / "checkpoints"): resume(path, progress=False)
    else: train(Config.from_dict(config), path, force=True, progress=False)
  return json.loads((path / "summary.json").read_text())


def run_sweep(trials: list[Trial], out: str | Path, address: str | None = None, cpus_per_trial: float = 1.0,
              gpus_per_trial: float = 0.0, device: str = "CPU", log: Callable[[str], Any] = print) -> list[dict]:
  """Runs the unfinished trials as Ray tasks and writes OUT/results.md, results.csv and curves.png."""
  out = Path(out)
  for t in trials: check_same_config(out / t.name, t.config)  # a trial folder from another spec must not be resumed
  ray = import_extra("ray", "ray", "tinydqn sweep")
  todo = [t for t in trials if not (out / t.name / "summary.json").exists()]
  log(f"sweep: {len(trials)} trials in {out}, {len(trials) - len(todo)} finished already, {len(todo)} to run")
  results: dict[str, dict] = {t.name: {"status": "done", **_summary(out / t.name)} for t in trials if t not in todo}
  if todo:
    # Workers get the device through tinygrad's DEV variable; trials ask Ray for CPUs (and GPUs if told), so on
    # a GPU node several CPU trials do not contend for the GPU unseen by the scheduler.
    local = {"include_dashboard": False} if address is None else {}  # not allowed when joining a cluster
    # and HCQ2 on the CPU, as `tinydqn train` sets it: a worker imports tinygrad itself
    env_vars = {"DEV": device, **fast_levers(device)}
    ray.init(address=address, runtime_env={"env_vars": env_vars}, log_to_driver=False, logging_level="WARNING", **local)
    try:
      task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial)(run_trial)
      pending = {task.remote(t.config.to_dict(), str((out / t.name).resolve())): t for t in todo}
      while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        t = pending.pop(ref)
        try:
          results[t.name] = {"status": "done", **ray.get(ref)}
          log(f"  {t.name}: final greedy return {results[t.name]['final_eval']['mean_return']:.1f}")
        except ray.exceptions.RayError as e:
          cause = getattr(e, "cause", None) or e
          status = "diverged" if isinstance(cause, TrainingDiverged) else "failed"
          results[t.name] = {"status": status, "error": (str(cause).strip().splitlines() or [type(cause).__name__])[0]}
          log(f"  {t.name}: {status}: {results[t.name]['error']}")
    finally:
      ray.shutdown()
  return write_results(trials, results, out, log)


def _summary(run_dir: Path) -> dict:
  return json.loads((run_dir / "summary.json").read_text())


def write_results(trials: list[Trial], results: dict[str, dict], out: Path, log: Callable[[str], Any] = print) -> list[dict]:
  """One row per trial in results.csv and results.md (with a per-config IQM/median over seeds), and curves.png."""
  grid_keys = list(dict.fromkeys(k for t in trials for k in t.grid))
  rows = []
  for t in trials:
    r = results[t.name]
    ev = r.get("final_eval", {})
    rows.append({"trial": t.name, "status": r["status"], "env_id": t.config.env_id, "seed": t.config.seed,
                 **{k: _value_text(t.grid[k]) for k in grid_keys}, "final_mean_return": ev.get("mean_return"),
                 "final_std_return": ev.get("std_return"), "steps": r.get("total_timesteps"),
                 "seconds": r.get("seconds"), "steps_per_second": r.get("steps_per_second"), "error": r.get("error", "")})
  out.mkdir(parents=True, exist_ok=True)
  with open(out / "results.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  (out / "results.md").write_text(_markdown(rows, grid_keys))
  done = [out / row["trial"] for row in rows if row["status"] == "done"]
  if done:
    try:
      from tinydqn.plot import plot_runs
      plot_runs(done, out / "curves.png", title=f"{out.name}: {len(done)} trials")
    except UserError as e:  # no matplotlib, or runs without evaluations: the tables are still written
      log(f"sweep: no curves.png ({e})")
  log(f"sweep: results in {out / 'results.md'}, {out / 'results.csv'}" + (f", {out / 'curves.png'}" if (out / "curves.png").exists() else ""))
  return rows


def _fmt(v: Any) -> str:
  return "" if v is None else f"{v:.1f}" if isinstance(v, float) else str(v)


def _markdown(rows: list[dict], grid_keys: list[str]) -> str:
  """Per config (env and grid values): seeds finished, IQM and median of the final greedy return over seeds, with a
  95% bootstrap interval on the IQM; then every trial."""
  groups: dict[tuple, list[dict]] = {}
  for r in rows: groups.setdefault((r["env_id"], *(r[k] for k in grid_keys)), []).append(r)
  head = ["env_id", *grid_keys]
  lines = ["# Sweep results", "", "## Per config: final greedy return over seeds", "",
           "| " + " | ".join(head + ["seeds done", "IQM final return [95% CI]", "median", "mean steps/s"]) + " |",
           "|" + "---|" * (len(head) + 4)]
  for key, group in groups.items():
    finals = np.array([[r["final_mean_return"]] for r in group if r["status"] == "done"])
    stats = ["", "", ""]
    if len(finals):
      lo, hi = bootstrap_ci(finals, "iqm")
      stats = [f"{iqm(finals)[0]:.1f} [{lo[0]:.1f}, {hi[0]:.1f}]" if len(finals) > 1 else f"{finals[0, 0]:.1f}",
               f"{np.median(finals):.1f}", f"{np.mean([r['steps_per_second'] for r in group if r['status'] == 'done']):.0f}"]
    lines.append("| " + " | ".join([*map(str, key), f"{len(finals)}/{len(group)}", *stats]) + " |")
  cols = ["trial", "status", "seed", "final_mean_return", "final_std_return", "steps", "seconds", "steps_per_second", "error"]
  lines += ["", "## Trials", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  lines += ["| " + " | ".join(_fmt(r[c]).replace("|", "/") for c in cols) + " |" for r in rows]
  return "\n".join(lines) + "\n"
