"""TensorBoard event files beside the CSV logs, under the metric names CleanRL and SB3 users know.

Written to RUN_DIR/tb/ whenever tensorboardX is installed (`pip install 'tinydqn[tensorboard]'`); set
TINYDQN_TENSORBOARD=0 to skip them. The CSV files stay the source of truth: plots and tests read those.

Each CSV row becomes one event holding all its scalars, written in the training thread by tensorboardX's
file-level writer, not SummaryWriter's add_scalar (a multiprocessing queue and a writer thread that competes for
the GIL, and a flush that forces the file to disk; the costs measured are in BENCHMARKS.md, "Where a training
step's time goes"). The file is synced with the first row written FLUSH_SECONDS or more after the last sync,
and when the training loop ends.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

# CSV column -> TensorBoard tag, for the rows of metrics.csv and of eval.csv.
EPISODE_TAGS = {"episodic_return": "charts/episodic_return", "episodic_length": "charts/episodic_length",
                "epsilon": "charts/epsilon", "sps": "charts/SPS", "loss": "losses/td_loss", "q_mean": "losses/q_values"}
EVAL_TAGS = {"mean_return": "eval/mean_return", "std_return": "eval/std_return"}
FLUSH_SECONDS = 2.0  # a run killed without warning loses the events since the last sync (never its CSV rows)


class TensorBoardLog:
  """Mirrors CSV rows into scalars at global step = env step; does nothing when disabled or not installed.
  Used as a context manager around the training loop, it flushes however the loop ends (a stop signal, an error)."""

  def __init__(self, logdir: Path, purge_step: int | None = None):
    """`purge_step`: on resume, the first step after the snapshot. TensorBoard then hides the events a killed run
    wrote from that step on, as metrics.csv drops those rows, so the resumed run's curves are not doubled."""
    self._file = None
    if os.environ.get("TINYDQN_TENSORBOARD", "1") == "0": return
    try:
      from tensorboardX.event_file_writer import EventsWriter
      from tensorboardX.proto.event_pb2 import Event, SessionLog
      from tensorboardX.proto.summary_pb2 import Summary
    except ImportError:
      return
    self._Event, self._Summary = Event, Summary
    logdir.mkdir(parents=True, exist_ok=True)
    # Event files are named by the second they were opened: a resume within the same second would overwrite the
    # first file without a suffix of its own. TensorBoard reads the files in name order, so the count keeps it.
    previous = len(list(logdir.glob("events.out.tfevents.*")))
    self._file = EventsWriter(str(logdir / "events"), filename_suffix=f".{previous}" if previous else "")
    if purge_step is not None:  # what TensorBoard reads as "forget what was logged from this step on"
      self._file.write_event(Event(step=purge_step, wall_time=time.time(),
                                   session_log=SessionLog(status=SessionLog.START)))
    self._flushed = time.monotonic()

  def _write(self, row: dict[str, Any], tags: dict[str, str]) -> None:
    if self._file is None: return
    values = [self._Summary.Value(tag=tag, simple_value=row[column]) for column, tag in tags.items()
              if row.get(column) is not None and math.isfinite(row[column])]  # no loss before the first step: NaN
    self._file.write_event(self._Event(step=row["step"], wall_time=time.time(), summary=self._Summary(value=values)))
    if time.monotonic() - self._flushed > FLUSH_SECONDS: self.flush()

  def episode(self, row: dict[str, Any]) -> None: self._write(row, EPISODE_TAGS)
  def eval(self, row: dict[str, Any]) -> None: self._write(row, EVAL_TAGS)

  def flush(self) -> None:
    if self._file is None: return
    self._file.flush()
    self._flushed = time.monotonic()

  def __enter__(self) -> TensorBoardLog: return self
  def __exit__(self, *exc) -> None: self.flush()

  def close(self) -> None:
    if self._file is not None: self._file.close()
    self._file = None
