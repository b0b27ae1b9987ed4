"""Command line: `tinydqn train`, `eval`, `presets`, `plot`, `record`, `sweep`. Config flags are the field names
with '-'."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
import tomllib
import typing
from pathlib import Path
from typing import NoReturn, Sequence

from tinydqn.config import Config, load_preset, make_config, preset_names, presets_for
from tinydqn.errors import Interrupted, TrainingDiverged, UserError
from tinydqn.plot import AGGREGATES, METRICS, X_AXES  # numpy only: matplotlib is imported when drawing

POSITIONAL_FIELDS = {"env_id"}


class _Parser(argparse.ArgumentParser):
  """argparse, but a usage error becomes a UserError (one line on stderr, exit code 2), and flags must be
  spelled out: with thirty config flags, a prefix standing for one of them is a mistake waiting to happen."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, allow_abbrev=False, **kwargs)

  def error(self, message: str) -> NoReturn:
    raise UserError(message)


def _int_tuple(text: str) -> tuple[int, ...]:
  try: return tuple(int(x) for x in text.replace(" ", ",").split(",") if x)
  except ValueError: raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _float_or_none(text: str) -> float | None:
  if text.lower() == "none": return None
  try: return float(text)
  except ValueError: raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
  hints = typing.get_type_hints(Config)
  group = parser.add_argument_group("config fields (defaults: the preset's value, else the one shown)")
  for f in dataclasses.fields(Config):
    if f.name in POSITIONAL_FIELDS: continue
    flag, kind = "--" + f.name.replace("_", "-"), hints[f.name]
    help_text = f"{f.metadata['help']} [default: {f.default}]"
    if kind is bool: group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                        help=help_text)
    elif kind == tuple[int, ...]: group.add_argument(flag, type=_int_tuple, default=argparse.SUPPRESS,
                                                     metavar="N,N", help=help_text)
    elif kind == float | None: group.add_argument(flag, type=_float_or_none, default=argparse.SUPPRESS,
                                                  metavar="FLOAT|none", help=help_text)
    else: group.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                             help=help_text)


def build_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="tinydqn", description="Deep Q-Networks on tinygrad.")
  sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

  train = sub.add_parser("train", help="train a DQN agent", description="Train a DQN agent on a Gymnasium env.")
  train.add_argument("env_id", nargs="?", default=None, metavar="ENV_ID",
                     help="Gymnasium id with a Discrete action space [default: CartPole-v1]")
  train.add_argument("--preset", help=f"hyperparameter preset ({', '.join(preset_names())}); "
                                      "default: the one made for ENV_ID, if any")
  train.add_argument("--run-dir", help="output folder [default: runs/ENV__sSEED__TIME]")
  train.add_argument("--force", action="store_true", help="overwrite the run already in --run-dir")
  train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its newest snapshot "
                                                          "(takes no ENV_ID, preset or config flags)")
  train.add_argument("--device", help="tinygrad device, e.g. CPU, CUDA, NV, AMD, METAL, CL [default: CPU, or $DEV when set]")
  train.add_argument("--quiet", action="store_true", help="no progress line")
  train.add_argument("--fast", action="store_true",
                     help="also search kernels with tinygrad's BEAM=2, which then tiles every kernel itself: the first "
                          "run per network shape spends minutes searching (then cached)")
  _add_config_flags(train)

  ev = sub.add_parser("eval", help="evaluate a trained agent greedily",
                      description="Play greedy episodes with a saved agent.")
  ev.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
  ev.add_argument("--episodes", type=int, default=None, help="[default: the run's eval_episodes]")
  ev.add_argument("--seed", type=int, default=None, help="episode i uses seed SEED+i [default: the run's eval_seed]")
  ev.add_argument("--best", action="store_true", help="play the run's best evaluated policy (checkpoints/best) "
                                                      "instead of the one it handed over at its end")
  ev.add_argument("--json", action="store_true", help="print one JSON object")
  ev.add_argument("--device", help="tinygrad device [default: CPU, or $DEV when set]")

  sub.add_parser("presets", help="list the shipped presets", description="List the shipped presets.")

  pl = sub.add_parser("plot", help="plot learning curves of runs (needs the plot extra)",
                      description="Learning curves; runs of the same config (seeds apart) are aggregated into one "
                                  "curve with a 95%% bootstrap confidence band.")
  pl.add_argument("runs", nargs="+", metavar="RUN_DIR")
  pl.add_argument("-o", "--output", default="curves.png", help="image file (.png, .pdf, .svg) [default: curves.png]")
  pl.add_argument("--metric", choices=list(METRICS), default="eval",
                  help="eval: greedy evaluation return (eval.csv); train: training episodic return (metrics.csv)")
  pl.add_argument("--x", choices=list(X_AXES), default="steps", help="x axis: env steps or wall-clock seconds")
  pl.add_argument("--agg", choices=list(AGGREGATES), default="iqm", help="aggregate over runs [default: iqm]")
  pl.add_argument("--title")

  rec = sub.add_parser("record", help="record greedy episodes to a video (needs the video extra)",
                       description="Play greedy episodes with a saved agent and write them to an mp4 or GIF.")
  rec.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
  rec.add_argument("-o", "--output", default="run.mp4", help="video file, .mp4 or .gif [default: run.mp4]")
  rec.add_argument("--best", action="store_true", help="play the run's best evaluated policy (checkpoints/best)")
  rec.add_argument("--episodes", type=int, default=1, help="[default: 1]")
  rec.add_argument("--seed", type=int, default=None, help="episode i uses seed SEED+i [default: the run's eval_seed]")
  rec.add_argument("--fps", type=float, default=None, help="[default: the env's render_fps]")
  rec.add_argument("--device", help="tinygrad device [default: CPU, or $DEV when set]")

  sw = sub.add_parser("sweep", help="run seeds and a grid of configs as Ray tasks (needs the ray extra)",
                      description="Run every (grid combination, seed) as a Ray task; run it again to skip finished "
                                  "trials and resume interrupted ones. Results: OUT/results.md, results.csv, curves.png.")
  sw.add_argument("spec", nargs="?", metavar="SPEC.toml", help="env_id, preset, seeds, [config] and [grid] tables")
  sw.add_argument("--seeds", help="e.g. 0-9 or 0,3,7 (replaces the spec's)")
  sw.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2", help="values to sweep (repeatable)")
  sw.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a fixed config value (repeatable)")
  sw.add_argument("--out", help="output folder [default: sweeps/SPEC_NAME]")
  sw.add_argument("--address", help="join this Ray cluster (e.g. ray://head:10001 or auto) [default: start a local one]")
  sw.add_argument("--cpus-per-trial", type=float, default=1.0, help="[default: 1]")
  sw.add_argument("--gpus-per-trial", type=float, default=0.0, help="[default: 0]")
  sw.add_argument("--device", default="CPU", help="tinygrad device of every trial [default: CPU]")
  parser.commands = sub.choices  # type: ignore[attr-defined]
  return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
  args, unknown = parser.parse_known_args(argv)
  if unknown:
    flags = [o for a in parser.commands[args.command]._actions for o in a.option_strings if o not in ("-h", "--help")]
    bad = next((u for u in unknown if u.startswith("-")), unknown[0])
    close = difflib.get_close_matches(bad.split("=")[0], flags, n=3, cutoff=0.6)
    raise UserError(f"unrecognized argument {bad!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
  return args


def _check_device(device: str | None) -> str:
  """The device to use (`--device`, else DEV, else the CPU), checked by a small computation: one line and exit
  code 2 if it cannot run here."""
  try:
    from tinydqn.devices import check_device  # imports tinygrad: only once the arguments are known to be good
  except RuntimeError as e:  # tinygrad reads DEV when imported, and refuses one it cannot parse
    raise UserError(f"DEV={os.environ.get('DEV', '')!r} is not a tinygrad device: {e}") from None
  return check_device(device)


def cmd_train(args: argparse.Namespace) -> int:
  if "tinygrad" not in sys.modules:  # a caller in this process (a notebook, a test) started tinygrad its own way
    from tinydqn.fast import use_fast_kernels
    levers = use_fast_kernels(args.device, search=args.fast)
    if args.fast:
      print(f"tinydqn: --fast: {' '.join(f'{k}={v}' for k, v in levers.items())} (a new network shape first searches "
            "kernels, for minutes; cached after)", file=sys.stderr)
  field_names = {f.name for f in dataclasses.fields(Config)}
  overrides = {k: v for k, v in vars(args).items() if k in field_names - POSITIONAL_FIELDS}
  if args.resume is not None:
    if overrides or args.env_id or args.preset or args.run_dir or args.force:
      raise UserError("--resume continues a run with its own config: pass no ENV_ID, --preset, --run-dir, "
                      "--force or config flags with it")
    from tinydqn.train import resume
    device = _check_device(args.device)
    print(f"tinydqn: resuming {args.resume} on {device}", file=sys.stderr)
    return _report(resume(args.resume, progress=not args.quiet, device=device))
  config = make_config(args.env_id or "CartPole-v1", args.preset, **overrides)
  device = _check_device(args.device)
  from tinydqn.train import train  # imported late: tinygrad start-up is not needed for --help or bad flags
  preset = " + ".join(presets_for(config.env_id, args.preset))
  print(f"tinydqn: training DQN on {config.env_id} (preset: {preset or 'none'}, seed {config.seed}, "
        f"{config.total_timesteps} steps) on {device}", file=sys.stderr)
  return _report(train(config, run_dir=args.run_dir, force=args.force, progress=not args.quiet, device=device))


def _report(result) -> int:
  """What was handed over, truthfully: a run that stopped once solved says when; a fixed-budget run whose final
  policy is below its best evaluated one gives both, and the command that plays the best."""
  ev, best, stop = result.final_eval, result.best_eval, result.stopped_early
  print(f"\nDone: {result.steps:,} env steps on {result.agent.device} in {result.seconds:.1f} s "
        f"({result.steps_per_second:.0f} steps/s)")
  if stop is not None:
    print(f"Solved at step {stop['step']:,}: greedy {stop['mean_return']:.1f} ± {stop['std_return']:.1f} over "
          f"{stop['episodes']} episodes (stop_at_return {stop['stop_at_return']:g}); training stopped there, and "
          "that policy is the final checkpoint")
  else:
    print(f"Final greedy evaluation ({len(ev.returns)} episodes): mean return {ev.mean_return:.1f} ± {ev.std_return:.1f}")
    if best is not None and best["mean_return"] > ev.mean_return:
      print(f"Best evaluation: {best['mean_return']:.1f} ± {best['std_return']:.1f} at step {best['step']:,}, kept "
            f"in checkpoints/best: tinydqn eval {result.run_dir} --best")
  print(f"Run directory: {result.run_dir}  (config.json, metrics.csv, eval.csv, summary.json, checkpoints/)")
  print(f"Evaluate again: tinydqn eval {result.run_dir}")
  return 0


def _load_agent(path: str, device: str | None, best: bool = False):
  """The checkpoint at `path` (a run directory or checkpoint file; with `best` the run's best) and an agent
  holding its weights."""
  from tinydqn.checkpoint import load_checkpoint
  device = _check_device(device)
  ckpt = load_checkpoint(path, best)
  return ckpt, ckpt.make_agent(device)


def cmd_eval(args: argparse.Namespace) -> int:
  if args.episodes is not None and args.episodes < 1: raise UserError(f"--episodes must be >= 1, got {args.episodes}")
  if args.seed is not None and args.seed < 0: raise UserError(f"--seed must be >= 0, got {args.seed}")
  from tinydqn.envs import make_env
  from tinydqn.evaluate import evaluate
  ckpt, agent = _load_agent(args.path, args.device, args.best)
  episodes = args.episodes or ckpt.config.eval_episodes
  seed = ckpt.config.eval_seed if args.seed is None else args.seed
  env = make_env(ckpt.config.env_id, sticky_actions=ckpt.config.sticky_actions)
  result = evaluate(agent, env, episodes, seed)
  if args.json:
    print(json.dumps({**result.to_dict(), "env_id": ckpt.config.env_id, "checkpoint": str(ckpt.path),
                      "step": ckpt.step, "seed": seed}))
  else:
    print(f"{ckpt.config.env_id}, checkpoint {ckpt.path} (step {ckpt.step}): mean return {result.mean_return:.1f} "
          f"± {result.std_return:.1f} over {episodes} greedy episodes")
    if ckpt.eval is not None:
      print(f"(chosen as the best by the run's evaluation at step {ckpt.eval['step']}: {ckpt.eval['mean_return']:.1f} "
            f"± {ckpt.eval['std_return']:.1f} over {ckpt.eval['episodes']} episodes)")
  return 0


def cmd_presets(_: argparse.Namespace) -> int:
  for name in preset_names(): print(f"{name:14s} {load_preset(name).get('env_id', '(modifier: on top of the env preset)')}")
  return 0


def cmd_plot(args: argparse.Namespace) -> int:
  from tinydqn.plot import plot_runs
  print(f"wrote {plot_runs(args.runs, args.output, args.metric, args.x, args.agg, args.title)}")
  return 0


def cmd_record(args: argparse.Namespace) -> int:
  if args.episodes < 1: raise UserError(f"--episodes must be >= 1, got {args.episodes}")
  if args.seed is not None and args.seed < 0: raise UserError(f"--seed must be >= 0, got {args.seed}")
  if args.fps is not None and not args.fps > 0: raise UserError(f"--fps must be > 0, got {args.fps}")
  from tinydqn.record import record
  ckpt, agent = _load_agent(args.path, args.device, args.best)
  seed = ckpt.config.eval_seed if args.seed is None else args.seed
  result, frames = record(agent, ckpt.config.env_id, args.output, args.episodes, seed, args.fps,
                         ckpt.config.sticky_actions)
  print(f"wrote {args.output}: {frames} frames, {args.episodes} greedy episode(s) of {ckpt.config.env_id} "
        f"(checkpoint step {ckpt.step}), returns {', '.join(f'{r:g}' for r in result.returns)}")
  return 0


def _toml_value(text: str):
  """A flag's value read as TOML (numbers, true/false, [64, 64]), else as a plain string."""
  try: return tomllib.loads(f"v = {text}")["v"]
  except tomllib.TOMLDecodeError: return text


def _assignment(text: str, flag: str) -> tuple[str, str]:
  name, eq, value = text.partition("=")
  if not eq or not name: raise UserError(f"{flag} expects FIELD=VALUE, got {text!r}")
  return name.strip().replace("-", "_"), value.strip()


def cmd_sweep(args: argparse.Namespace) -> int:
  from tinydqn.sweep import load_spec, make_trials, run_sweep
  spec = load_spec(args.spec) if args.spec else {}
  if args.seeds is not None: spec["seeds"] = args.seeds
  for text in args.set:
    name, value = _assignment(text, "--set")
    spec.setdefault("config", {})[name] = _toml_value(value)
  for text in args.grid:
    name, values = _assignment(text, "--grid")
    spec.setdefault("grid", {})[name] = [_toml_value(v) for v in _split_top_level(values)]
  if args.cpus_per_trial <= 0 or args.gpus_per_trial < 0: raise UserError("--cpus-per-trial must be > 0, --gpus-per-trial >= 0")
  trials = make_trials(spec)
  out = args.out or f"sweeps/{Path(args.spec).stem if args.spec else 'sweep'}"
  rows = run_sweep(trials, out, args.address, args.cpus_per_trial, args.gpus_per_trial, args.device)
  return 0 if all(r["status"] == "done" for r in rows) else 1


def _split_top_level(text: str) -> list[str]:
  """Splits on commas outside brackets: "[64,64],[128]" -> ["[64,64]", "[128]"]."""
  parts, depth, current = [], 0, ""
  for ch in text:
    depth += (ch == "[") - (ch == "]")
    if ch == "," and depth == 0: parts, current = parts + [current], ""
    else: current += ch
  return [p for p in parts + [current] if p]


def main(argv: Sequence[str] | None = None) -> int:
  try:
    args = _parse(build_parser(), sys.argv[1:] if argv is None else argv)
    return {"train": cmd_train, "eval": cmd_eval, "presets": cmd_presets, "plot": cmd_plot, "record": cmd_record, "sweep": cmd_sweep}[args.command](args)
  except UserError as e:
    print(f"tinydqn: error: {e}", file=sys.stderr)
    return 2
  except Interrupted as e:
    print(f"\ntinydqn: stopped by {e}", file=sys.stderr)
    return e.exit_code
  except TrainingDiverged as e:
    print(f"tinydqn: error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    print("tinydqn: interrupted", file=sys.stderr)
    return 130

