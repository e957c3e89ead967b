"""What a person sees while a run trains: a header, one progress display per phase, and a closing summary.

    from workbench import console
    console.capture_library_output(verbose=False)   # first thing in the CLI: libraries' warnings go to a log
    console.attach_log(output_dir / "workbench.log")  # once the run folder is known (logged as an artifact)
    console.header({"recipe": "legal", ...})
    console.replace_progress(trainer)                 # replaces transformers' progress bar and log-dict prints
    with console.phase("Evaluating legal_chat before training"): ...
    console.scores_table([(score, before, after, change), ...])   # run_report.summarize prints the summary

Output is drawn with rich. On a terminal the training bar redraws in place (steps, loss, eval loss, ETA);
when the output is not a terminal (CI logs, `| tee`) it prints a few plain lines instead: one per eighth of
the run and one per evaluation. Library warnings, deprecation notices and their progress bars never reach
the screen: everything written to stderr while the command runs goes to `<run dir>/workbench.log`
(`-v/--verbose` shows it as well). Errors of the workbench itself still print on the real stderr.
"""

import io
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

QUIET_ENV = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "MLFLOW_LOGGING_LEVEL": "WARNING"}


class LibraryLog(io.TextIOBase):
    """Stands in for sys.stderr: keeps what libraries write (memory until a file is attached), optionally echoed."""

    def __init__(self, echo=None):
        self.echo, self.buffer_text, self.file, self.keep = echo, [], None, True

    def write(self, text: str) -> int:
        if self.file is not None:
            self.file.write(text)
            self.file.flush()
        elif self.keep:
            self.buffer_text.append(text)
        if self.echo is not None:
            self.echo.write(text)
        return len(text)

    def attach(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.file is not None:
            self.file.close()
        self.file = path.open("a", encoding="utf-8")
        self.file.write("".join(self.buffer_text))
        self.buffer_text = []

    def flush(self):
        if self.echo is not None:
            self.echo.flush()

    def isatty(self) -> bool:
        return False


_state = {"log": None, "log_path": None}


def capture_library_output(verbose: bool = False) -> None:
    """Route stderr (library warnings, logs, progress bars) into the run's log; call before heavy imports."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # also where MLflow was imported before this call
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed otherwise warns on stdout that it guessed
    if _state["log"] is None:
        _state["log"] = LibraryLog(echo=sys.__stderr__ if verbose else None)
        sys.stderr = _state["log"]


def release(stderr) -> None:
    """Put stderr back (in-process callers such as tests run several commands in one interpreter)."""
    log = _state["log"]
    if log is not None:  # handlers that libraries bound to it meanwhile now write where stderr goes
        if log.file is not None:
            log.file.close()
        log.file, log.buffer_text, log.echo, log.keep = None, [], stderr, False
    sys.stderr = stderr
    _state.update(log=None, log_path=None)


def attach_log(path: Path) -> Path | None:
    if _state["log"] is None:
        return None
    _state["log"].attach(path)
    _state["log_path"] = path
    return path


def log_path() -> Path | None:
    return _state["log_path"]


def _console():
    from rich.console import Console

    if "console" not in _state:
        console = Console(highlight=False, soft_wrap=True)  # sys.stdout as it is at each print
        if not console.is_terminal:
            console.width = 160  # a log file has no terminal width: do not fold at 80 columns
        _state["console"] = console
    return _state["console"]


def interactive() -> bool:
    return _console().is_terminal


def say(text: str = "") -> None:
    _console().print(text, markup=False)


def header(rows: dict[str, str]) -> None:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    for key, value in rows.items():
        table.add_row(f"{key}", str(value))
    print_table(table)


@contextmanager
def phase(title: str):
    """One line (with a spinner on a terminal) around a step that takes a while; its time at the end."""
    start = time.perf_counter()
    if interactive():
        with _console().status(title):
            yield
    else:
        yield
    say(f"{title}: {time.perf_counter() - start:.0f} s")


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 60}:{seconds % 60:02d}"


def train_progress():
    """A TrainerCallback: a live bar on a terminal, a line per eighth of the run otherwise (built on first use,
    so importing this module does not import transformers before its output is captured)."""
    from transformers import TrainerCallback

    class TrainProgress(TrainerCallback):
        """The training display: a live bar on a terminal, a line per eighth of the run otherwise."""

        def __init__(self):
            self.loss = self.eval_loss = self.reward = None
            self.progress = self.task = None
            self.next_line = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.first_step = time.perf_counter(), state.global_step
            self.every = max(1, state.max_steps // 8)
            self.next_line = state.global_step + self.every
            if state.is_world_process_zero and interactive():
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                    TimeRemainingColumn

                self.progress = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                                         TextColumn("{task.fields[losses]}"), TimeElapsedColumn(), TextColumn("eta"),
                                         TimeRemainingColumn(), console=_console(), transient=False)
                self.progress.start()
                self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, losses="")

        def _losses(self) -> str:
            parts = [f"reward {self.reward:.3f}" if self.reward is not None else "",  # grpo: what it maximises
                     f"loss {self.loss:.3f}" if self.loss is not None else "",
                     f"eval loss {self.eval_loss:.3f}" if self.eval_loss is not None else ""]
            return "  ".join(p for p in parts if p)

        def _eta(self, state) -> str:
            done = state.global_step - self.first_step
            elapsed = time.perf_counter() - self.start
            left = elapsed / done * (state.max_steps - state.global_step) if done else 0
            return f"elapsed {_clock(elapsed)}, eta {_clock(left)}"

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            self.loss = logs.get("loss", self.loss)
            self.reward = logs.get("reward", self.reward)
            if "eval_loss" in logs:
                self.eval_loss = logs["eval_loss"]
                if state.is_world_process_zero and self.progress is None and state.global_step == self.first_step:
                    say(f"  step {state.global_step}/{state.max_steps}: eval loss {self.eval_loss:.3f} (before training)")
            if self.progress is not None:
                self.progress.update(self.task, losses=self._losses())

        def on_step_end(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step, losses=self._losses())
            elif state.global_step >= self.next_line and state.global_step < state.max_steps:
                self.next_line += self.every
                say(f"  step {state.global_step}/{state.max_steps} ({state.global_step / state.max_steps:.0%}): "
                    f"{self._losses() or 'no loss logged yet'}; {self._eta(state)}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.stop()
            elif state.is_world_process_zero:
                say(f"  step {state.global_step}/{state.max_steps} (100%): {self._losses()}; "
                    f"trained in {_clock(time.perf_counter() - self.start)}")

    return TrainProgress()


def replace_progress(trainer) -> None:
    """transformers' own bar and its dict-per-log prints give way to TrainProgress."""
    import logging

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for handler in logging.getLogger("DeepSpeed").handlers:  # DeepSpeed logs to stdout: send it to the log too
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(sys.stderr)

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(train_progress())


def scores_table(rows: list[tuple[str, str, str, str]]) -> None:
    """(score, before, after, change) rows as one table."""
    from rich.table import Table

    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("score", "before", "after", "change"):
        table.add_column(column, justify="right" if column in ("before", "after") else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    print_table(table)


def sign_test(improved: float, worsened: float, p_value: float) -> str:
    """How a paired sign test reads in a scores table."""
    return f"  ({improved:.0f} up, {worsened:.0f} down, sign test p = {p_value:.2g})"


def print_table(table) -> None:
    """On a terminal as rich draws it; in a log file at 160 columns, without the padding that ends each row."""
    console = _console()
    if interactive():
        console.print(table)
        return
    with console.capture() as captured:
        console.print(table, width=160)
    console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    console.file.flush()
