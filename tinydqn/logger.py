"""Run outputs: CSV files written line by line, and the live progress line."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Callable

from tqdm import tqdm

# Deterministic columns first; the wall-clock ones last, so runs can be compared without them.
# time_s: seconds since training started; train_time_s: the same without time spent in periodic evaluation.
EPISODE_COLUMNS = ["step", "episode", "episodic_return", "episodic_length", "epsilon", "loss", "q_mean", "time_s",
                   "sps"]
EVAL_COLUMNS = ["step", "mean_return", "std_return", "min_return", "max_return", "time_s", "train_time_s"]
WALL_CLOCK_COLUMNS = {"time_s", "train_time_s", "sps"}


class CsvLog:
  """Appends rows to a CSV file with a fixed header, flushed per row so a crash loses nothing written."""

  def __init__(self, path: Path, columns: list[str], resume_after_step: int | None = None,
               also: Callable[[dict[str, Any]], None] | None = None):
    """A new file; or, with `resume_after_step`, the existing one cut back to the rows up to that step (rows a
    crashed run wrote after its last snapshot would otherwise appear twice), then appended to. Each row written
    is also handed to `also` (the TensorBoard mirror)."""
    self.columns, self._also = columns, also
    resuming = resume_after_step is not None and path.exists()
    if resuming:
      with open(path, newline="") as f: rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_after_step]
      tmp = path.with_name(path.name + ".tmp")
      with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
      os.replace(tmp, path)
    self._file = open(path, "a" if resuming else "w", newline="")
    self._writer = csv.DictWriter(self._file, fieldnames=columns)
    if not resuming: self._writer.writeheader()

  def write(self, row: dict[str, Any]) -> None:
    self._writer.writerow({k: _fmt(v) for k, v in row.items()})
    self._file.flush()
    if self._also is not None: self._also(row)

  def close(self) -> None:
    self._file.close()


def _fmt(value: Any) -> Any:
  return f"{value:.6g}" if isinstance(value, float) else value


class Progress:
  """One live line: step, ε, recent returns, loss, steps/s (tqdm), or nothing when quiet."""

  def __init__(self, total: int, enabled: bool, initial: int = 0):
    self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, disable=not enabled,
                     mininterval=0.5, smoothing=0.1)
    self._shown = initial

  def update(self, step: int, **fields: Any) -> None:
    self._bar.update(step - self._shown)
    self._shown = step
    if fields:  # without new fields the last ones stay on the line
      self._bar.set_postfix_str(" ".join(f"{k}={_fmt(v)}" for k, v in fields.items()), refresh=False)

  def write(self, message: str) -> None:
    self._bar.write(message)

  def close(self) -> None:
    self._bar.close()
