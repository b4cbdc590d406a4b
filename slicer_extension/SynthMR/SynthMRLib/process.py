"""Running a synthesis in separate processes, with progress and cancel, so that Slicer never freezes.

A :class:`SynthesisJob` runs up to two commands, one after the other, on a background thread:

1. ``python -m synthmr lesion ...`` when lesion edits were asked for: it writes the edited lesion, which replaces
   the bundle's lesion input;
2. ``python -m synthmr run BUNDLE --input ROLE=PATH ... --out OUT --device cpu|cuda [--trust-bundle]``.

A bundle's configs run code, so a job refuses a bundle that is not trusted (SynthMRLib.bundles: shipped with the
module, or confirmed by the user). A bundle shipped with the module gets ``--trust-bundle``: synthmr's own list of
shipped bundles may not hold the module's (the extension's packaged bundles, a checkout's bundles when synthmr was
installed from it as a copy). A confirmed bundle does not: ``synthmr run`` finds the confirmation in the shared
records by the digest of the bundle's code, so code changed since the user confirmed it is refused, not run.

``synthmr run`` prints ``SYNTHMR_PROGRESS``/``SYNTHMR_WARNING``/``SYNTHMR_RESULT`` lines (the protocol of
``synthmr.bundle.runner``; a warning says the inputs are unlike the bundle's training data, kept in ``warnings``);
they are parsed with synthmr's own :func:`~synthmr.bundle.runner.parse_progress_line`, imported on the worker
thread when the job starts (a run needs synthmr installed anyway, and the GUI thread never waits for the import).
The GUI thread calls :meth:`SynthesisJob.poll` from a timer and gets the progress events since its last call.

**Cancel** (:meth:`SynthesisJob.cancel`) ends the whole process tree: each command starts in its own process
group (a new session on POSIX, a new process group on Windows), so the group takes the runner's children along
(data-loader workers, and on Slicer the python that the ``PythonSlicer`` launcher starts). On POSIX the group gets
SIGTERM, which lets ``synthmr run`` remove its staging folder, then SIGKILL after a grace period for whatever is
left; on Windows ``taskkill /T /F`` ends the tree. Then everything the job writes (the output folder, the runner's
hidden staging folders beside it, the edited lesion) is removed, so a cancelled or failed job leaves nothing behind.
"""

from __future__ import annotations

import enum
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from SynthMRLib.bundles import bundle_is_shipped, bundle_is_trusted
from SynthMRLib.edits import LesionEditRequest
from SynthMRLib.errors import SynthMRError

if TYPE_CHECKING:  # annotations only: the reader is loaded at run time (SynthMRLib.bundles)
    from synthmr.bundle.description import ToolDescription

DEVICES = ("cpu", "cuda")
# After SIGTERM, how long the runner may take to clean up before the group is killed.
TERMINATE_GRACE_S = 1.0
# After SIGKILL, how long cancel() waits for the group's members to be gone (the signal is delivered asynchronously).
GROUP_EXIT_WAIT_S = 0.5
EDIT_STAGE = "edit lesion"
_ERROR_PREFIX = "synthmr: error: "
# The line a traceback ends with: "ValueError: message", "monai.bundle.Error", "KeyboardInterrupt".
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(: .*)?$")
_LOG_LINES_KEPT = 200


class JobState(enum.Enum):
    """Where a :class:`SynthesisJob` is."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Progress:
    """One progress event: the runner's stage (or :data:`EDIT_STAGE`) and the fraction done, 0 to 1."""

    stage: str
    fraction: float


@dataclass(frozen=True)
class _Step:
    name: str
    command: list[str]


class SynthesisJob:
    """Edit the lesion (optionally) and run a bundle, each in a separate process (module docstring).

    Args:
        description: the bundle's tool description.
        inputs: input role -> file on the reference grid.
        out: the output folder ``synthmr run`` creates; it must not exist yet. The edited lesion is written beside
            it, as ``<out>.<lesion role>.nrrd``.
        device: ``"cpu"`` or ``"cuda"``.
        edits: the lesion edits, or None.
        python: the Python that has synthmr (in Slicer: ``PythonSlicer``); default: this one.
        env: the environment of the commands; default: this process's.
        input_names: input role -> what the user calls that input (a scene node's name); error messages use it
            instead of the temporary file's path.

    Raises:
        SynthMRError: a bad device, an existing output folder, an edit the bundle cannot do, or a bundle that is not
            trusted (SynthMRLib.bundles: shipped with the module, or confirmed by the user).
    """

    def __init__(
        self,
        description: ToolDescription,
        inputs: Mapping[str, str | os.PathLike],
        out: str | os.PathLike,
        device: str = "cpu",
        edits: LesionEditRequest | None = None,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        input_names: Mapping[str, str] | None = None,
    ) -> None:
        if device not in DEVICES:
            raise SynthMRError(f"device {device!r}: use one of {', '.join(DEVICES)}")
        if not bundle_is_trusted(description.bundle_dir):
            raise SynthMRError(f"bundle {description.name} ({description.bundle_dir}): is not trusted, and its configs "
                               "run code; confirm that you trust its author first (choose it in the SynthMR module)")
        self.description = description
        self._shipped = bundle_is_shipped(description.bundle_dir)
        self.out = Path(out).absolute()
        if self.out.exists():
            raise SynthMRError(f"{self.out}: already exists; a job writes a new output folder")
        self.inputs = {role: Path(path).absolute() for role, path in inputs.items()}
        self.device = device
        self.edits = edits if edits is not None and edits.requested else None
        self.python = python or sys.executable
        self.env = dict(env) if env is not None else None
        self.input_names = dict(input_names or {})
        self.edited_lesion = (
            self.out.with_name(f"{self.out.name}.{description.lesion}.nrrd") if self.edits is not None else None
        )
        self.outputs: dict[str, Path] = {}
        # What synthmr run warned about (inputs unlike the bundle's training data): shown before results are added.
        self.warnings: list[str] = []
        self.error: str | None = None
        self.log: list[str] = []  # the last lines the commands printed besides the protocol, for a bug report
        self._state = JobState.PENDING
        self._events: queue.Queue[Progress] = queue.Queue()
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._cancelled = False
        self._thread: threading.Thread | None = None
        if self.edits is not None:
            self.edits.check(description, has_lesion=description.lesion in self.inputs)

    @property
    def state(self) -> JobState:
        """The job's state; SUCCEEDED, FAILED and CANCELLED are final."""
        return self._state

    @property
    def finished(self) -> bool:
        """True once the job succeeded, failed or was cancelled."""
        return self._state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    def commands(self) -> list[list[str]]:
        """The command lines the job runs, in order."""
        return [step.command for step in self._steps()]

    def start(self) -> None:
        """Start the job on a background thread and return at once."""
        if self._state is not JobState.PENDING:
            raise RuntimeError("a SynthesisJob runs once")
        self._state = JobState.RUNNING
        self._thread = threading.Thread(target=self._work, name=f"SynthMR {self.description.name}", daemon=True)
        self._thread.start()

    def poll(self) -> list[Progress]:
        """The progress events since the last call (never blocks)."""
        events = []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events

    def wait(self, timeout: float | None = None, progress: Callable[[Progress], None] | None = None) -> JobState:
        """Block until the job is finished (or ``timeout`` seconds passed), passing each event to ``progress``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                break
            self._thread.join(0.05)
            self._deliver(progress)
        self._deliver(progress)
        return self._state

    def _deliver(self, progress: Callable[[Progress], None] | None) -> None:
        if progress is not None:
            for event in self.poll():
                progress(event)

    def cancel(self, grace: float = TERMINATE_GRACE_S) -> None:
        """Stop the job: end its process tree and remove what it wrote; returns once that is done.

        Args:
            grace: seconds the runner gets after SIGTERM to clean up before its group is killed.
        """
        with self._lock:
            if self.finished:
                return
            self._cancelled = True
            process = self._process
        if process is not None:
            _end_process_tree(process, grace)
        if self._thread is not None:
            # Once the tree is gone the worker sees end-of-output at once; the margin only covers a stuck disk.
            self._thread.join(grace + 5.0)
        self._remove_outputs()
        self._state = JobState.CANCELLED

    def _steps(self) -> list[_Step]:
        module = [self.python, "-m", "synthmr"]
        inputs = dict(self.inputs)
        steps = []
        if self.edits is not None:
            lesion_role, organ_role = self.description.lesion, self.description.organ_mask
            command = [*module, "lesion", "--out", str(self.edited_lesion)]
            if lesion_role in inputs:
                command += ["--lesion", str(inputs[lesion_role])]
            if organ_role is not None and organ_role in inputs:
                command += ["--organ", str(inputs[organ_role])]
            if self.description.organ_labels:  # the lesion input holds the organ's tissue too
                command.append("--organ_labels=" + ",".join(map(str, self.description.organ_labels)))
            steps.append(_Step(EDIT_STAGE, command + self.edits.arguments()))
            source_role = self.description.source_lesion
            if source_role is not None and lesion_role in inputs and source_role not in inputs:
                # The images show the unedited lesion: a bundle that erases its traces (its outline) needs it.
                inputs[source_role] = inputs[lesion_role]
            inputs[lesion_role] = self.edited_lesion
        command = [*module, "run", str(self.description.bundle_dir)]
        for role, path in inputs.items():
            command += ["--input", f"{role}={path}"]
        trust = ["--trust-bundle"] if self._shipped else []
        steps.append(_Step("run", command + ["--out", str(self.out), "--device", self.device, *trust]))
        return steps

    def _work(self) -> None:
        try:
            from synthmr.bundle.runner import parse_progress_line
        except ImportError:
            self._finish(JobState.FAILED, "synthmr is not installed in this Python; install the module's dependencies")
            return
        try:
            for step in self._steps():
                if not self._run_step(step, parse_progress_line):
                    return
            if set(self.outputs) != set(self.description.outputs):
                self._finish(JobState.FAILED, f"synthmr run ended without writing the outputs of {self.description.name}")
                return
            self._finish(JobState.SUCCEEDED)
        except Exception as error:  # a bug here must not leave the GUI waiting for ever
            self._finish(JobState.FAILED, f"SynthMR could not run the bundle: {error!r}")
            raise

    def _run_step(self, step: _Step, parse_progress_line: Callable[[str], dict | None]) -> bool:
        """Run one command to its end; False when the job stops here (failed or cancelled)."""
        # stderr goes to a file: a full pipe that nobody reads would block the process.
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
            with self._lock:  # cancel() either sees this process or stops the job before it starts
                if self._cancelled:
                    return False
                if step.name == EDIT_STAGE:
                    self._events.put(Progress(EDIT_STAGE, 0.0))
                process = self._process = subprocess.Popen(
                    step.command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    encoding="utf-8",
                    errors="replace",
                    bufsize=1,
                    env=self.env,
                    **_own_process_group(),
                )
            with process.stdout:
                for line in process.stdout:
                    event = parse_progress_line(line)
                    if event is None:
                        self._keep_log(line)
                    elif event["type"] == "progress":
                        self._events.put(Progress(str(event["stage"]), float(event["fraction"])))
                    elif event["type"] == "warning":
                        self.warnings.append(str(event["message"]))
                    elif event["type"] == "result":
                        self.outputs = {role: Path(path) for role, path in event["outputs"].items()}
            status = process.wait()
            stderr.seek(0)
            errors = stderr.read().splitlines()
        with self._lock:
            self._process = None
            if self._cancelled:
                return False
        for line in errors:
            self._keep_log(line)
        if status != 0:
            self._finish(JobState.FAILED, self._failure(step, status, errors))
            return False
        return True

    def _failure(self, step: _Step, status: int, errors: list[str]) -> str:
        """One message for a failed command: synthmr's own one-line error, else the root cause of its traceback."""
        command = "synthmr lesion" if step.name == EDIT_STAGE else "synthmr run"
        ours = [line[len(_ERROR_PREFIX) :] for line in errors if line.startswith(_ERROR_PREFIX)]
        message = ours[-1] if ours else None
        if message is None:
            # A traceback: Python prints chained exceptions root cause first, and the root cause says most.
            exceptions = [line.strip() for line in errors if _EXCEPTION_LINE.match(line)]
            last = next((line.strip() for line in reversed(errors) if line.strip()), "no error message")
            cause = exceptions[0] if exceptions else last
            if status < 0:
                message = f"{command} was killed by signal {-status} (out of memory?); last output: {cause}"
            else:
                message = f"{command} failed (exit status {status}): {cause}"
        # The files are the module's temporary copies; the user knows the inputs by their scene names.
        for role, path in self.inputs.items():
            if role in self.input_names:
                message = message.replace(str(path), self.input_names[role])
        return message

    def _keep_log(self, line: str) -> None:
        self.log.append(line.rstrip("\n"))
        del self.log[:-_LOG_LINES_KEPT]

    def _finish(self, state: JobState, error: str | None = None) -> None:
        with self._lock:
            if self._cancelled:
                return
            if state is not JobState.SUCCEEDED:
                self._remove_outputs()
            self.error = error
            self._state = state

    def _remove_outputs(self) -> None:
        """Delete the output folder, the runner's hidden staging folders beside it and the edited lesion."""
        leftovers = [self.out, *self.out.parent.glob(f".{self.out.name}.*")]
        if self.edited_lesion is not None:
            leftovers += [self.edited_lesion, *self.out.parent.glob(f".{self.edited_lesion.name}.*")]
        for path in leftovers:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
        self.outputs = {}


def read_sidecar_text(image: Path) -> str:
    """The provenance sidecar synthmr writes beside each output (``t1_post1.json`` for ``t1_post1.nii.gz``: bundle,
    version, weights and inputs with their SHA-256), as text for a node attribute; "" when there is none."""
    name = Path(image).name
    stem = next((name[: -len(s)] for s in (".nii.gz", ".nii", ".nrrd", ".mha") if name.endswith(s)), Path(name).stem)
    sidecar = Path(image).with_name(stem + ".json")
    try:
        return sidecar.read_text(encoding="utf-8")
    except OSError:
        return ""


def _own_process_group() -> dict:
    """Popen options that start the command as the leader of a new process group (so its tree can be ended)."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _end_process_tree(process: subprocess.Popen, grace: float) -> None:
    """End ``process`` and every process of its group; returns once the leader is reaped."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/T", "/F", "/PID", str(process.pid)], capture_output=True, check=False)
        process.wait()
        return
    group = process.pid  # the leader of its own session: the group id is its pid
    _signal_group(group, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # Children that ignore SIGTERM, or outlive their parent, go too (the group outlives its leader).
    _signal_group(group, signal.SIGKILL)
    process.wait()
    # SIGKILL is delivered asynchronously: wait (briefly) until no member of the group still runs, so that the
    # tree is really gone when cancel() returns.
    deadline = time.monotonic() + GROUP_EXIT_WAIT_S
    while _group_runs(group) and time.monotonic() < deadline:
        time.sleep(0.005)


def _group_runs(group: int) -> bool:
    """Whether a process of ``group`` still runs; zombies, which only wait for their parent to reap them, do not
    count. Without /proc (macOS) any member counts."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == group and fields[0] not in ("Z", "X"):
            return True
    return False


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:  # every member has exited already
        pass
