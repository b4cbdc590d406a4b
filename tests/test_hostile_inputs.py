"""A catalogue of hostile-input probes: one parametrized case per probe, all checked by one harness.

Each probe gets a sandbox (``tmp_path``) holding everything it touches: ``inputs/`` (a tiny 2D breast phantom case),
``home/`` (HOME), ``config/`` (SYNTHMR_CONFIG_DIR, where trust records live) and ``work/`` (the working directory).
SYNTHMR_TRUST_BUNDLES, SYNTHMR_BUNDLE_PATH and XDG_CONFIG_HOME are unset unless the probe sets them.

For every step of a probe the harness checks:

- the exit status (2 for a user error unless the probe says otherwise);
- for a failing synthmr command: stderr, blank lines dropped, is exactly ONE line starting with "synthmr: error:",
  and that line names the input (words chosen per probe; a tuple is a choice of alternatives);
- no "Traceback" anywhere in stdout + stderr;
- the sandbox (every file's SHA-256, every folder, every link) is the same after as before, except the step's
  intended output (failing steps have none);
- no staging is left anywhere in the sandbox (a name starting with "." that contains ".tmp" or ends with ".old");
- the repository's bundles (bundles/*/configs/*, bundles/*/models/* and each bundle folder's listing) are untouched.

Probes whose failure could destroy files of the shared checkout (an --out inside a shipped bundle) run against a
mirror: a copy of training/synthmr and the shipped bundle made once per module, imported through PYTHONPATH, so
that "the repository" of the command under test is the copy.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from synthmr.metrics.extractors.weights import sha256_of

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"
SHIPPED_NAME = "breast_dce_pre2post"
SHIPPED = BUNDLES / SHIPPED_NAME
GENERATOR_NAME = "breast_dce_patch_cgan"
EXTENSION = REPO / "slicer_extension" / "SynthMR"
PROGRESS_INFER = '"stage": "infer"'
UNSET_VARIABLES = ("SYNTHMR_TRUST_BUNDLES", "SYNTHMR_BUNDLE_PATH", "XDG_CONFIG_HOME")
GIB = 1024**3
POSIX = sys.platform != "win32"


# ---------------------------------------------------------------------------------------------------------------
# Snapshots


def _excluded(path: Path, exclude: tuple[Path, ...]) -> bool:
    return any(path == ex or path.is_relative_to(ex) for ex in exclude)


def snapshot(root: Path, exclude: tuple[Path, ...] = ()) -> dict[str, str]:
    """Relative path -> "dir", "link:<target>" or the file's SHA-256, for everything under ``root`` (links are
    not followed); paths in or under ``exclude`` are left out."""
    state: dict[str, str] = {}
    exclude = tuple(Path(os.path.abspath(p)) for p in exclude)
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        kept = []
        for name in dirnames:
            path = here / name
            if _excluded(path, exclude):
                continue
            if path.is_symlink():
                state[path.relative_to(root).as_posix()] = f"link:{os.readlink(path)}"
                continue
            state[path.relative_to(root).as_posix()] = "dir"
            kept.append(name)
        dirnames[:] = kept
        for name in filenames:
            path = here / name
            if _excluded(path, exclude):
                continue
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[rel] = f"link:{os.readlink(path)}"
            elif path.is_file():
                try:
                    state[rel] = sha256_of(path)
                except OSError as error:  # unreadable: still record that it is there
                    state[rel] = f"unreadable:{error.errno}"
            else:
                state[rel] = "other"
    return state


def snapshot_diff(before: dict[str, str], after: dict[str, str]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(p for p in set(before) & set(after) if before[p] != after[p])
    parts = []
    for what, paths in (("added", added), ("removed", removed), ("changed", changed)):
        if paths:
            parts.append(f"{what} {paths[:6]}" + (f" and {len(paths) - 6} more" if len(paths) > 6 else ""))
    return "; ".join(parts)


def bundles_state(bundles: Path = BUNDLES) -> dict[str, str]:
    """What must never change in a bundles/ folder: each bundle's listing (hidden entries too), and every file of
    its configs/ and models/."""
    state: dict[str, str] = {}
    for entry in sorted(bundles.iterdir()):
        state[entry.name] = "dir" if entry.is_dir() else "file"
        if not entry.is_dir():
            continue
        for child in sorted(entry.iterdir()):
            state[f"{entry.name}/{child.name}"] = "dir" if child.is_dir() else "file"
        for sub in ("configs", "models"):
            folder = entry / sub
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    key = f"{entry.name}/{sub}/{path.name}"
                    state[key] = sha256_of(path) if path.is_file() else "dir"
    return state


def staging_left(root: Path) -> list[str]:
    """Staging or moved-aside entries under ``root``: ``.<name>.<hex>.tmp...`` and ``.<name>.<hex>.old``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name.startswith(".") and (".tmp" in name or name.endswith(".old")):
                found.append(str(Path(dirpath, name).relative_to(root)))
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------------
# Running a command


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    max_rss: int | None  # bytes, where the platform reports it
    timed_out: bool
    seconds: float

    @property
    def text(self) -> str:
        return self.stdout + self.stderr

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def summary(self) -> str:
        lines = self.error_lines()
        last = lines[-1] if lines else ""
        traceback = " with Traceback" if "Traceback" in self.text else ""
        timeout = " (timed out)" if self.timed_out else ""
        return f"exit {self.returncode}{traceback}{timeout}, {len(lines)} stderr line(s), last: {last[:300]!r}"


def _memory_limiter(limit: int | None) -> Callable[[], None] | None:
    if limit is None or not POSIX:
        return None

    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


# Runs `python -m MODULE ARGS` and writes the process's peak resident memory (kB) to a file at exit. Linux's VmHWM
# belongs to the memory of the program after exec; the rusage that wait4 reports also counts the forked copy of
# the parent before exec (pytest's own gigabyte), so it cannot measure a small command.
_PEAK_REPORTER = """
import atexit, runpy, sys
report = sys.argv.pop(1)
module = sys.argv.pop(1)
def write_peak():
    status = open("/proc/self/status").read()
    open(report, "w").write(status.split("VmHWM:")[1].split()[0])
atexit.register(write_peak)
sys.argv[0] = module
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def run_process(command: list[str], cwd: Path, env: dict, timeout: float, memory_limit: int | None = None) -> Result:
    """Run ``command``; report its exit status and output (the peak memory is measured by Sandbox.run)."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            preexec_fn=_memory_limiter(memory_limit),
        )
        timed_out = False
        if hasattr(os, "wait4"):
            deadline = start + timeout
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    timed_out = True
                    process.kill()
                    pid, status, usage = os.wait4(process.pid, 0)
                    break
                time.sleep(0.02)
            process.returncode = os.waitstatus_to_exitcode(status)
        else:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                process.kill()
                process.wait()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    return Result(process.returncode, stdout, stderr, None, timed_out, time.monotonic() - start)


# ---------------------------------------------------------------------------------------------------------------
# The sandbox


@dataclass
class Step:
    """One command of a probe and what it must show.

    Args:
        args: the arguments after ``python -m synthmr`` (or the whole argv after ``python`` with ``module=None``).
        code: the exit status; None: any non-zero status.
        words: each must appear in the error line (for a failure) or the output (for a success); a tuple is a
            choice of alternatives.
        unwords: must not appear in stdout + stderr.
        env: extra environment variables (a None value unsets).
        cwd: working directory (default: the sandbox's work/).
        outputs: paths the step may change (its intended output); everything else in the sandbox must not.
        absent / present: paths that must not / must exist afterwards (markers, outputs).
        before_inference: a `synthmr run` that must fail before inference starts (no infer progress line).
        strict: the one-line and no-Traceback rules (off for commands that are not synthmr's own).
        before: called before the snapshot is taken (to set the stage for this step).
        check: extra check of the result, returning a problem or None.
        guards: further folders that must stay exactly as they are (e.g. the mirror's bundle).
    """

    args: list
    code: int | None = 2
    words: tuple = ()
    unwords: tuple = ()
    env: dict = field(default_factory=dict)
    cwd: Path | None = None
    outputs: tuple = ()
    absent: tuple = ()
    present: tuple = ()
    before_inference: bool = False
    strict: bool = True
    module: str | None = "synthmr"
    before: Callable[[], None] | None = None
    check: Callable[[Result], str | None] | None = None
    guards: tuple = ()
    timeout: float = 180
    memory_limit: int | None = None
    max_rss: int | None = None


class Sandbox:
    def __init__(self, root: Path, phantom: Path, mirror: Path | None):
        self.root = root
        self.home = root / "home"
        self.work = root / "work"
        self.config = root / "config"
        self.inputs = root / "inputs"
        self.phantom = phantom
        self._mirror = mirror
        for folder in (self.home, self.work, self.config, self.inputs):
            folder.mkdir()
        (self.home / ".profile").write_text("# the user's own file\n")
        case = phantom / "case_0000"
        self.t1_pre = self.inputs / "t1_pre.nii.gz"
        self.lesion = self.inputs / "lesion.nii.gz"
        shutil.copyfile(case / "t1_pre.nii.gz", self.t1_pre)
        shutil.copyfile(case / "lesion.nii.gz", self.lesion)

    @property
    def mirror(self) -> Path:
        assert self._mirror is not None
        return self._mirror

    def env(self, extra: dict | None = None) -> dict:
        env = dict(os.environ)
        for name in UNSET_VARIABLES:
            env.pop(name, None)
        env["HOME"] = str(self.home)
        env["SYNTHMR_CONFIG_DIR"] = str(self.config)
        env["MPLCONFIGDIR"] = str(_MPL_CONFIG)  # matplotlib's font cache is not the probe's business
        env["PYTHONUNBUFFERED"] = "1"
        for name, value in (extra or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        return env

    def run(self, step: Step) -> Result:
        prefix = [sys.executable, "-m", step.module] if step.module else [sys.executable]
        measure = step.max_rss is not None and step.module is not None and Path("/proc/self/status").is_file()
        with tempfile.TemporaryDirectory() as scratch:
            report = Path(scratch) / "peak"
            if measure:  # the command reports its own peak: see _PEAK_REPORTER
                prefix = [sys.executable, "-c", _PEAK_REPORTER, str(report), step.module]
            command = [*prefix, *map(str, step.args)]
            result = run_process(command, step.cwd or self.work, self.env(step.env), step.timeout, step.memory_limit)
            peak = int(report.read_text()) * 1024 if measure and report.is_file() else None
        return dataclasses.replace(result, max_rss=peak)

    def in_process_env(self, monkeypatch) -> None:
        for name in UNSET_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.setenv("SYNTHMR_CONFIG_DIR", str(self.config))
        monkeypatch.setenv("MPLCONFIGDIR", str(_MPL_CONFIG))
        monkeypatch.chdir(self.work)


_MPL_CONFIG = Path(tempfile.gettempdir())  # replaced by the module fixture


def _words_problem(text: str, words: tuple) -> str | None:
    for word in words:
        choices = word if isinstance(word, tuple) else (word,)
        if not any(choice in text for choice in choices):
            return f"does not name {' or '.join(map(repr, choices))}"
    return None


def check_step(sandbox: Sandbox, step: Step) -> list[str]:
    """Run one step and return what is wrong (empty when it behaved)."""
    if step.before is not None:
        step.before()
    outputs = tuple(step.outputs)
    before = snapshot(sandbox.root, outputs)
    repo_before = bundles_state()
    guards_before = {folder: snapshot(folder) for folder in step.guards}
    result = sandbox.run(step)
    print(f"{' '.join(map(str, step.args))[:200]!r} -> {result.summary()}")
    problems: list[str] = []

    if step.code is None:
        if result.returncode == 0:
            problems.append(f"exit 0, expected a failure ({result.summary()})")
    elif result.returncode != step.code:
        problems.append(f"expected exit {step.code}, got {result.summary()}")
    if step.strict and "Traceback" in result.text:
        problems.append("Traceback in the output")
    lines = result.error_lines()
    if step.code != 0 and step.strict:
        if len(lines) != 1 or not lines[0].startswith("synthmr: error:"):
            problems.append(f"stderr is {len(lines)} line(s), not one 'synthmr: error:' line: {lines[:3]!r}")
        if lines and (problem := _words_problem(lines[0] if len(lines) == 1 else "\n".join(lines), step.words)):
            problems.append(f"the error {problem}")
    elif problem := _words_problem(result.text, step.words):
        problems.append(f"the output {problem}")
    for word in step.unwords:
        if word in result.text:
            problems.append(f"the output contains {word!r}")
    if step.before_inference and PROGRESS_INFER in result.stdout:
        problems.append("failed only after inference had started")
    if step.max_rss is not None and result.max_rss is not None and result.max_rss > step.max_rss:
        problems.append(f"peak memory {result.max_rss / GIB:.2f} GiB (> {step.max_rss / GIB:.2f} GiB)")
    if step.check is not None and (problem := step.check(result)):
        problems.append(problem)

    for path in step.absent:
        if os.path.lexists(path):
            shown = Path(path).relative_to(sandbox.root) if Path(path).is_relative_to(sandbox.root) else path
            problems.append(f"{shown} exists")
    for path in step.present:
        if not os.path.lexists(path):
            problems.append(f"{path} missing")
    diff = snapshot_diff(before, snapshot(sandbox.root, outputs))
    if diff:
        problems.append(f"sandbox changed: {diff}")
    staging = staging_left(sandbox.root)
    if staging:
        problems.append(f"staging left: {staging}")
    repo_diff = snapshot_diff(repo_before, bundles_state())
    if repo_diff:
        problems.append(f"repository bundles changed: {repo_diff}")
    for folder, state in guards_before.items():
        if diff := snapshot_diff(state, snapshot(folder)):
            problems.append(f"{folder} changed: {diff}")
    return problems


def run_steps(sandbox: Sandbox, steps: list[Step]) -> None:
    for index, step in enumerate(steps):
        problems = check_step(sandbox, step)
        label = f"step {index + 1} ({' '.join(map(str, step.args))[:160]})" if len(steps) > 1 else ""
        assert not problems, f"{label}: " * bool(label) + "; ".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """One tiny 2D breast phantom case, made once."""
    from synthmr.phantom.dataset import write_phantom_dataset

    out = tmp_path_factory.mktemp("phantom") / "breast"
    write_phantom_dataset("breast", 1, out, dims=2)
    global _MPL_CONFIG
    _MPL_CONFIG = tmp_path_factory.mktemp("mplconfig")
    return out


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A copy of the package and the shipped bundle, laid out like the repository: <mirror>/training/synthmr and
    <mirror>/bundles/breast_dce_pre2post. With PYTHONPATH=<mirror>/training the command under test is the copy,
    whose shipped bundles are the mirror's, so a probe that writes into "the shipped bundle" cannot harm the
    checkout."""
    root = tmp_path_factory.mktemp("mirror")
    shutil.copytree(REPO / "training" / "synthmr", root / "training" / "synthmr",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SHIPPED, root / "bundles" / SHIPPED_NAME, ignore=shutil.ignore_patterns("output", "__pycache__"))
    shutil.copyfile(REPO / "pyproject.toml", root / "pyproject.toml")
    imported = subprocess.run(
        [sys.executable, "-c", "import synthmr.bundle.discovery as d; print(d.REPOSITORY_BUNDLES)"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root / "training")}, cwd=root,
    )
    assert imported.stdout.strip() == str(root / "bundles"), f"the mirror is not what gets imported: {imported.stderr}"
    return root


@pytest.fixture
def sandbox(tmp_path, phantom):
    return Sandbox(tmp_path, phantom, None)


@pytest.fixture
def mirrored_sandbox(tmp_path, phantom, mirror):
    return Sandbox(tmp_path, phantom, mirror)


def run_args(sb: Sandbox, out, *extra, bundle=SHIPPED_NAME, t1_pre=None) -> list:
    return ["run", bundle, "--input", f"t1_pre={t1_pre or sb.t1_pre}", "--out", out, *extra]


def copy_bundle(dest: Path, marker: Path | None = None, logging_marker: Path | None = None) -> Path:
    """A copy of the shipped bundle at ``dest``; ``marker``: its inference.yaml's initialize writes that file;
    ``logging_marker``: its logging.conf writes that file when logging is configured."""
    shutil.copytree(SHIPPED, dest, ignore=shutil.ignore_patterns("output", "sample", "__pycache__"))
    if marker is not None:
        plant_initialize(dest, marker)
    if logging_marker is not None:
        plant_logging(dest, logging_marker)
    return dest


def plant_initialize(bundle: Path, marker: Path) -> None:
    config = bundle / "configs" / "inference.yaml"
    text = config.read_text()
    assert "initialize: []" in text, f"{config}: no 'initialize: []' to plant the marker in"
    config.write_text(text.replace("initialize: []", f"initialize:\n  - \"$open('{marker}', 'w').write('x')\""))


def plant_logging(bundle: Path, marker: Path) -> None:
    config = bundle / "configs" / "logging.conf"
    text = config.read_text()
    assert "args=(sys.stdout,)" in text, f"{config}: no handler args to plant the marker in"
    config.write_text(text.replace("args=(sys.stdout,)", f"args=(open('{marker}', 'w').write('x') and sys.stdout,)"))


def config_has_record(sb: Sandbox) -> Callable[[Result], str | None]:
    def check(result: Result) -> str | None:
        if not any(path.is_file() for path in sb.config.rglob("*")):
            return f"no trust record under SYNTHMR_CONFIG_DIR ({sb.config})"
        return None

    return check


def dot_names(given: str, resolved: Path) -> tuple:
    """Ways an error line can name an --out given as '.', '..' or ''."""
    return ("--out", str(resolved), f"'{given}'", f'"{given}"', f"`{given}`", f" {given}:", f"error: {given}:")


def write_volume(path: Path, array: np.ndarray, spacing=(1.0, 1.0)) -> Path:
    from synthmr.io import Volume, write_image

    ndim = len(spacing)
    return write_image(Volume(array, spacing, (0.0,) * ndim, np.eye(ndim)), path)


def t1_volume(sb: Sandbox):
    from synthmr.io import read_image

    return read_image(sb.t1_pre)


def dicom_series(sb: Sandbox, folder: Path, slices: int = 3) -> Path:
    from synthmr.io import Volume, write_dicom_series

    volume = t1_volume(sb)
    array = np.repeat(volume.array[..., None], slices, axis=2)
    write_dicom_series(Volume(array, (*volume.spacing, 2.0), (*volume.origin, 0.0), np.eye(3)), folder)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# The CLI probes: name -> function(sandbox) -> steps

CLI_PROBES: dict[str, Callable[[Sandbox], list[Step]]] = {}


def probe(name: str):
    def register(function):
        assert name not in CLI_PROBES
        CLI_PROBES[name] = function
        return function

    return register


# 1. The working directory or its parent as --out.
@probe("p01a-phantom-out-parent-of-cwd-overwrite")
def _(sb):
    proj = sb.work / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "sub").mkdir()
    (proj / "data" / "keep").write_text("x\n")
    args = ["phantom", "breast", "--n", 1, "--dims", 2, "--out", "..", "--overwrite"]
    return [Step(args, words=(("..", str(proj)),), cwd=proj / "sub")]


@probe("p01b-phantom-out-cwd-overwrite")
def _(sb):
    proj = sb.work / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "data" / "keep").write_text("x\n")
    args = ["phantom", "breast", "--n", 1, "--dims", 2, "--out", ".", "--overwrite"]
    return [Step(args, words=(dot_names(".", proj),), cwd=proj)]


# 2. A bundle folder planted in the working directory is not what a bare name runs.
@probe("p02-planted-bundle-in-cwd-never-runs-for-a-bare-name")
def _(sb):
    # A bare name never runs a folder of the working directory; a bundle folder there that shares the name is refused
    # as ambiguous (./name runs it, once trusted), by `run` and by `demo` with its default name alike.
    marker = sb.root / "PLANTED_RAN"
    copy_bundle(sb.work / SHIPPED_NAME, marker=marker)
    return [Step(run_args(sb, "out1"), words=(f"./{SHIPPED_NAME}",), absent=(marker, sb.work / "out1"),
                 before_inference=True),
            Step(["demo", "--out", "d"], words=(f"./{SHIPPED_NAME}",), absent=(marker, sb.work / "d"))]


# 3. Code trust.
@probe("p03a-thirdparty-bundle-by-path-untrusted")
def _(sb):
    marker = sb.root / "THIRDPARTY_RAN"
    bundle = copy_bundle(sb.root / "thirdparty" / "mybundle", marker=marker)
    return [Step(run_args(sb, "o", bundle=bundle), words=("--trust-bundle", (str(bundle), "mybundle")),
                 absent=(marker,), before_inference=True)]


@probe("p03b-thirdparty-bundle-via-bundle-path-untrusted")
def _(sb):
    marker = sb.root / "THIRDPARTY_RAN"
    copy_bundle(sb.root / "thirdparty" / "mybundle", marker=marker)
    return [Step(run_args(sb, "o", bundle="mybundle"), env={"SYNTHMR_BUNDLE_PATH": sb.root / "thirdparty"},
                 words=("--trust-bundle", "mybundle"), absent=(marker,), before_inference=True)]


@probe("p03c-user-bundle-shadowing-shipped-name")
def _(sb):
    marker = sb.root / "SHADOW_RAN"
    shadow = copy_bundle(sb.root / "userbundles" / SHIPPED_NAME, marker=marker)
    return [Step(run_args(sb, "o"), env={"SYNTHMR_BUNDLE_PATH": sb.root / "userbundles"},
                 words=((str(shadow), str(shadow.resolve())),), absent=(marker,), before_inference=True)]


@probe("p03d-trust-recorded-by-config-sha256-then-edit-needs-flag")
def _(sb):
    marker = sb.root / "THIRDPARTY_RAN"
    bundle = copy_bundle(sb.root / "thirdparty" / "mybundle", marker=marker)

    def edit_config():
        marker.unlink(missing_ok=True)
        with open(bundle / "configs" / "inference.yaml", "a") as stream:
            stream.write("# edited after it was trusted\n")

    return [
        Step(run_args(sb, "o1", "--trust-bundle", bundle=bundle), code=0, check=config_has_record(sb),
             outputs=(sb.work / "o1", sb.config, marker), present=(marker, sb.work / "o1" / "t1_post1.nii.gz")),
        Step(run_args(sb, "o2", bundle=bundle), code=0, before=lambda: marker.unlink(missing_ok=True),
             outputs=(sb.work / "o2", sb.config, marker), present=(marker, sb.work / "o2" / "t1_post1.nii.gz")),
        Step(run_args(sb, "o3", bundle=bundle), before=edit_config, words=("--trust-bundle",),
             absent=(marker,), before_inference=True),
    ]


# 5. case_id escaping the output folder, through MONAI's own runner.
def _monai_datalist_step(sb: Sandbox, case_id: str) -> Step:
    datalist = sb.inputs / "datalist.json"
    datalist.write_text(json.dumps({"testing": [{"t1_pre": str(sb.t1_pre), "case_id": case_id}]}))
    out = sb.work / "out"
    args = ["-m", "monai.bundle", "run", "--config_file", SHIPPED / "configs" / "inference.yaml",
            "--bundle_root", SHIPPED, "--datalist", f"$synthmr.io.load_datalist('{datalist}', 'testing')",
            "--output_dir", out]
    return Step(args, module=None, code=None, strict=False, words=("case_id",), outputs=(out,))


@probe("p05a-monai-run-datalist-case-id-dotdot")
def _(sb):
    return [_monai_datalist_step(sb, "../../x")]


@probe("p05b-monai-run-datalist-case-id-absolute")
def _(sb):
    return [_monai_datalist_step(sb, str(sb.root / "escaped_absolute"))]


# 6. --out inside the shipped bundle (run against the mirror: a failure here deletes the weights).
@probe("p06a-out-is-shipped-bundle-models-overwrite")
def _(sb):
    bundle = sb.mirror / "bundles" / SHIPPED_NAME
    models = bundle / "models"
    return [Step(run_args(sb, models, "--overwrite"), env={"PYTHONPATH": sb.mirror / "training"},
                 words=((str(models), "models"),), guards=(bundle,), before_inference=True)]


@probe("p06b-out-is-shipped-bundle-folder-overwrite")
def _(sb):
    bundle = sb.mirror / "bundles" / SHIPPED_NAME
    return [Step(run_args(sb, bundle, "--overwrite"), env={"PYTHONPATH": sb.mirror / "training"},
                 words=(str(bundle),), guards=(bundle,), before_inference=True)]


# 7. Non-finite voxels.
@probe("p07a-input-with-nan")
def _(sb):
    array = t1_volume(sb).array.astype(np.float32)
    array[3, 4] = np.nan
    path = write_volume(sb.inputs / "nan.nii.gz", array)
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path), ("NaN", "infinite")), before_inference=True)]


@probe("p07b-input-with-inf")
def _(sb):
    array = t1_volume(sb).array.astype(np.float32)
    array[3, 4] = np.inf
    array[5, 6] = -np.inf
    path = write_volume(sb.inputs / "inf.nii.gz", array)
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path), ("NaN", "infinite")), before_inference=True)]


# 8. Odd --out paths, refused before inference.
@probe("p08a-out-is-symlink-to-folder")
def _(sb):
    target = sb.work / "target"
    target.mkdir()
    link = sb.work / "link"
    link.symlink_to(target, target_is_directory=True)
    return [Step(run_args(sb, "link"), words=(("link", str(link)),), before_inference=True)]


@probe("p08b-out-is-dangling-symlink")
def _(sb):
    link = sb.work / "dangling"
    link.symlink_to(sb.work / "nowhere")
    return [Step(run_args(sb, "dangling"), words=(("dangling", str(link)),), before_inference=True)]


@probe("p08c-out-is-dot")
def _(sb):
    return [Step(run_args(sb, "."), words=(dot_names(".", sb.work),), before_inference=True)]


@probe("p08d-out-is-dotdot-overwrite")
def _(sb):
    (sb.work / "sub").mkdir()
    return [Step(run_args(sb, "..", "--overwrite"), cwd=sb.work / "sub", words=(("..", str(sb.work)),),
                 before_inference=True)]


# 9. Damaged weights in a trusted bundle.
class _Evil:
    """Pickles as a call of exec: what a hostile model.pt carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('x')",)


@probe("p09a-model-pt-is-pickled-object")
def _(sb):
    import torch

    marker = sb.root / "PICKLE_RAN"
    bundle = copy_bundle(sb.root / "thirdparty" / "mybundle")
    torch.save({"x": _Evil(marker), "y": object}, bundle / "models" / "model.pt")
    return [Step(run_args(sb, "o", "--trust-bundle", bundle=bundle), words=("model.pt",), outputs=(sb.config,),
                 absent=(marker, sb.work / "o"))]


@probe("p09b-model-pt-truncated-to-100-bytes")
def _(sb):
    bundle = copy_bundle(sb.root / "thirdparty" / "mybundle")
    weights = bundle / "models" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:100])
    return [Step(run_args(sb, "o", "--trust-bundle", bundle=bundle), words=("model.pt",), outputs=(sb.config,),
                 absent=(sb.work / "o",))]


# 12. Smaller ones.
@probe("p12a-tiny-nii-gz-declaring-2gib")
def _(sb):
    import nibabel

    header = nibabel.Nifti1Header()
    header.set_data_shape((1024, 1024, 512))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    path = sb.inputs / "bomb.nii.gz"
    path.write_bytes(gzip.compress(header.binaryblock + b"\0" * 4, mtime=0))
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path),), before_inference=True,
                 memory_limit=8 * GIB, max_rss=1 * GIB, timeout=120)]


@probe("p12b-phantom-size-100000")
def _(sb):
    return [Step(["phantom", "breast", "--size", 100000, "--out", "o"], words=("size",), memory_limit=8 * GIB,
                 max_rss=1 * GIB, timeout=120)]


@probe("p12c-dicom-folder-input-runs-without-library-noise")
def _(sb):
    # The bundle takes a 2D slice or an axial volume, so a DICOM series is a valid input: the probe is about the
    # dozens of HDF5-DIAG lines SimpleITK's format probing printed for a folder.
    folder = dicom_series(sb, sb.inputs / "dicom")
    return [Step(run_args(sb, "o", t1_pre=folder), code=0, outputs=(sb.work / "o",), present=(sb.work / "o",),
                 unwords=("HDF5-DIAG",), check=lambda result: f"stderr not empty: {result.stderr!r}" if result.stderr.strip() else None)]


@probe("p12d-existing-out-without-overwrite-names-the-flag")
def _(sb):
    (sb.work / "out").mkdir()
    (sb.work / "out" / "mine.txt").write_text("keep me\n")
    return [Step(run_args(sb, "out"), words=("out", "--overwrite"), unwords=("overwrite=True",), before_inference=True)]


@probe("p12e-failed-run-leaves-no-parent-folders")
def _(sb):
    array = np.zeros_like(t1_volume(sb).array)  # passes the checks; the bundle finds nothing to synthesise from
    path = write_volume(sb.inputs / "blank.nii.gz", array, spacing=t1_volume(sb).spacing)
    return [Step(run_args(sb, "a/b/c/out", t1_pre=path), words=("t1_pre",), absent=(sb.work / "a",))]


# Own probes: damaged and odd inputs.
@probe("own01-corrupt-nii-gz-random-bytes")
def _(sb):
    path = sb.inputs / "corrupt.nii.gz"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path),), before_inference=True)]


@probe("own02-zero-byte-nii")
def _(sb):
    path = sb.inputs / "empty.nii"
    path.write_bytes(b"")
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path),), before_inference=True)]


@probe("own03-nrrd-declaring-more-data-than-it-has")
def _(sb):
    path = sb.inputs / "short.nrrd"
    header = b"NRRD0004\ntype: float\ndimension: 2\nsizes: 512 512\nspacings: 1 1\nencoding: raw\nendian: little\n\n"
    path.write_bytes(header + bytes(100))
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path),), before_inference=True)]


@probe("own04-unsupported-extension")
def _(sb):
    path = sb.inputs / "t1_pre.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path),), before_inference=True)]


@probe("own05-4d-nifti")
def _(sb):
    import nibabel

    path = sb.inputs / "four_d.nii.gz"
    nibabel.Nifti1Image(np.ones((8, 8, 2, 3), np.float32), np.eye(4)).to_filename(path)
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path),), before_inference=True)]


@probe("own06-three-component-image")
def _(sb):
    import SimpleITK as sitk

    path = sb.inputs / "rgb.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((16, 16, 3), np.float32), isVector=True), str(path))
    return [Step(run_args(sb, "o", t1_pre=path), words=(str(path), "component"), before_inference=True)]


@probe("own07-input-given-twice")
def _(sb):
    args = run_args(sb, "o", "--input", f"t1_pre={sb.lesion}")
    return [Step(args, words=("t1_pre", "twice"), before_inference=True)]


@probe("own08-unknown-input-role")
def _(sb):
    args = run_args(sb, "o", "--input", f"t2={sb.t1_pre}")
    return [Step(args, words=("'t2'",), before_inference=True)]


@probe("own09-device-gpu")
def _(sb):
    return [Step(run_args(sb, "o", "--device", "gpu"), words=("gpu",), before_inference=True)]


@probe("own10-unknown-bundle-name")
def _(sb):
    return [Step(run_args(sb, "o", bundle="no_such_bundle"), words=("no_such_bundle",))]


@probe("own11-bundle-name-with-path-traversal")
def _(sb):
    return [Step(run_args(sb, "o", bundle="../bundles/x"), words=("../bundles/x",))]


@probe("own12-lesion-out-is-its-own-input-overwrite")
def _(sb):
    args = ["lesion", "--lesion", sb.lesion, "--mirror", "--out", sb.lesion, "--overwrite"]
    return [Step(args, words=(str(sb.lesion),))]


@probe("own13-evaluate-out-is-one-of-its-inputs-overwrite")
def _(sb):
    real, fake = sb.inputs / "real", sb.inputs / "fake"
    shutil.copytree(sb.phantom, real)
    shutil.copytree(sb.phantom, fake)
    target = real / "datalist.json"
    args = ["evaluate", "--real", target, "--fake", fake / "datalist.json", "--metrics", "mae", "--out", target,
            "--overwrite"]
    return [Step(args, words=(str(target),))]


@probe("own14-bundle-export-out-inside-the-bundle")
def _(sb):
    bundle = sb.mirror / "bundles" / SHIPPED_NAME
    return [Step(["bundle", "export", SHIPPED_NAME, "--out", bundle / "dist"],
                 env={"PYTHONPATH": sb.mirror / "training"}, words=((str(bundle / "dist"), str(bundle)),),
                 guards=(bundle,))]


@probe("own15-phantom-out-is-home-overwrite")
def _(sb):
    args = ["phantom", "breast", "--n", 1, "--dims", 2, "--out", sb.home, "--overwrite"]
    return [Step(args, words=((str(sb.home), "HOME"),))]


@probe("own16-out-parent-is-a-file")
def _(sb):
    (sb.work / "afile").write_text("a file\n")
    out = sb.work / "afile" / "out"
    return [Step(run_args(sb, out), words=(str(sb.work / "afile"),), before_inference=True)]


@probe("own17-out-in-read-only-folder")
def _(sb):
    if POSIX and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders: the condition cannot be made")
    locked = sb.work / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return [Step(run_args(sb, locked / "out"), words=(str(locked),), before_inference=True)]


@probe("own18-logging-conf-code-execution-untrusted")
def _(sb):
    marker = sb.root / "LOGGING_RAN"
    bundle = copy_bundle(sb.root / "thirdparty" / "mybundle", logging_marker=marker)
    return [Step(run_args(sb, "o", bundle=bundle), words=("--trust-bundle",), absent=(marker,), before_inference=True)]


@probe("own19-logging-conf-swapped-after-trust-needs-flag")
def _(sb):
    marker = sb.root / "LOGGING_RAN"
    bundle = copy_bundle(sb.root / "thirdparty" / "mybundle")
    return [
        Step(run_args(sb, "o1", "--trust-bundle", bundle=bundle), code=0, outputs=(sb.work / "o1", sb.config)),
        Step(run_args(sb, "o2", bundle=bundle), before=lambda: plant_logging(bundle, marker), words=("--trust-bundle",),
             absent=(marker,), before_inference=True),
    ]


@probe("own20-run-out-empty-string-overwrite")
def _(sb):
    (sb.work / "keep.txt").write_text("the user's file\n")
    return [Step(run_args(sb, "", "--overwrite"), words=(dot_names("", sb.work),), before_inference=True)]


@probe("own21-phantom-out-empty-string-overwrite")
def _(sb):
    (sb.work / "keep.txt").write_text("the user's file\n")
    args = ["phantom", "breast", "--n", 1, "--dims", 2, "--out", "", "--overwrite"]
    return [Step(args, words=(dot_names("", sb.work),))]


@probe("own22-evaluate-datalist-not-json")
def _(sb):
    bad = sb.inputs / "real.json"
    bad.write_text("{not json")
    shutil.copytree(sb.phantom, sb.inputs / "fake")
    return [Step(["evaluate", "--real", bad, "--fake", sb.inputs / "fake" / "datalist.json"], words=(str(bad),))]


@probe("own23-evaluate-datalist-is-a-list-of-strings")
def _(sb):
    bad = sb.inputs / "real.json"
    bad.write_text(json.dumps(["case_0000/t1_pre.nii.gz"]))
    shutil.copytree(sb.phantom, sb.inputs / "fake")
    return [Step(["evaluate", "--real", bad, "--fake", sb.inputs / "fake" / "datalist.json"], words=(str(bad),))]


@probe("own24-generator-bundle-given-an-input")
def _(sb):
    return [Step(run_args(sb, "o", bundle=GENERATOR_NAME), words=(GENERATOR_NAME,), before_inference=True)]


@probe("own25-input-is-an-empty-folder")
def _(sb):
    folder = sb.inputs / "not_dicom"
    folder.mkdir()
    return [Step(run_args(sb, "o", t1_pre=folder), words=(str(folder),), before_inference=True)]


@probe("own26-dicom-folder-with-two-series")
def _(sb):
    folder = sb.inputs / "two_series"
    folder.mkdir()
    for prefix in ("a", "b"):
        series = dicom_series(sb, sb.root / f"series_{prefix}")
        for path in series.iterdir():
            path.rename(folder / f"{prefix}_{path.name}")
        series.rmdir()
    return [Step(run_args(sb, "o", t1_pre=folder), words=(str(folder),), unwords=("HDF5-DIAG",), before_inference=True)]


@probe("own27-missing-input-whose-name-holds-a-newline")
def _(sb):
    return [Step(run_args(sb, "o", t1_pre=sb.inputs / "evil\nname.nii.gz"), words=("evil",), before_inference=True)]


@probe("own28-bundle-argument-is-an-image-file")
def _(sb):
    return [Step(run_args(sb, "o", bundle=sb.t1_pre), words=(str(sb.t1_pre),))]


@probe("own29-select-checkpoint-report-not-json")
def _(sb):
    bad = sb.inputs / "report.json"
    bad.write_text("[1, 2")
    return [Step(["select-checkpoint", bad], words=(str(bad),))]


@probe("own30-run-without-out")
def _(sb):
    return [Step(["run", SHIPPED_NAME, "--input", f"t1_pre={sb.t1_pre}"], words=("--out",))]


def _probe_params(registry):
    return [pytest.param(function, id=name) for name, function in registry.items()]


MIRRORED = {"p06a-out-is-shipped-bundle-models-overwrite", "p06b-out-is-shipped-bundle-folder-overwrite",
            "own14-bundle-export-out-inside-the-bundle"}


@pytest.mark.parametrize("make_steps", _probe_params(CLI_PROBES))
def test_cli_probe(make_steps, request, tmp_path, phantom):
    mirror = request.getfixturevalue("mirror") if request.node.callspec.id in MIRRORED else None
    sb = Sandbox(tmp_path, phantom, mirror)
    run_steps(sb, make_steps(sb))


# ---------------------------------------------------------------------------------------------------------------
# In-process probes (4, 10 and own): same sandbox rules, checked here.


def _slicer_lib():
    if str(EXTENSION) not in sys.path:
        sys.path.insert(0, str(EXTENSION))
    import SynthMRLib.bundles
    from SynthMRLib.errors import SynthMRError

    return SynthMRLib.bundles, SynthMRError


def _bundle_zip(path: Path, compression=zipfile.ZIP_STORED, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for sub in ("configs/metadata.json", "configs/inference.yaml", "configs/logging.conf", "LICENSE"):
            archive.write(SHIPPED / sub, f"mybundle/{sub}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path


def _flip_member_byte(path: Path, member: str) -> None:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _lie_about_size(path: Path, member: str, delta: int) -> None:
    """Change the uncompressed size the central directory gives ``member`` (its local header keeps the truth)."""
    data = bytearray(path.read_bytes())
    target, found = member.encode(), False
    index = data.find(b"PK\x01\x02")
    while index != -1:
        length = struct.unpack_from("<H", data, index + 28)[0]
        if data[index + 46 : index + 46 + length] == target:
            size = struct.unpack_from("<I", data, index + 24)[0]
            struct.pack_into("<I", data, index + 24, size + delta)
            found = True
        index = data.find(b"PK\x01\x02", index + 4)
    assert found
    path.write_bytes(bytes(data))


def _check_zip_refused(sb: Sandbox, archive: Path) -> list[str]:
    lib, SynthMRError = _slicer_lib()
    cache = sb.root / "cache"
    problems = []
    try:
        lib.unpack_bundle_zip(archive, cache)
        problems.append("unpack_bundle_zip accepted it")
    except SynthMRError as error:
        message = str(error)
        if "\n" in message.strip():
            problems.append(f"unpack: the message is several lines: {message!r}")
        if str(archive) not in message and archive.name not in message:
            problems.append(f"unpack: the message does not name the zip: {message!r}")
    except Exception as error:  # noqa: BLE001 (what escapes is the finding)
        problems.append(f"unpack raised {type(error).__name__}: {error}")
    try:
        entries = lib.discover_bundles(added=[archive], cache_folder=cache)
        mine = [entry for entry in entries if entry.source == "added"]
        if len(mine) != 1 or not mine[0].problem:
            problems.append(f"discover_bundles gave no entry with a problem: {mine}")
        elif "\n" in mine[0].problem.strip() or not any(n in mine[0].problem for n in (str(archive), archive.name)):
            problems.append(f"discover_bundles' problem is not one line naming the zip: {mine[0].problem!r}")
    except Exception as error:  # noqa: BLE001
        problems.append(f"discover_bundles raised {type(error).__name__}: {error}")
    if any(cache.iterdir()):
        problems.append(f"left in the cache: {sorted(p.name for p in cache.iterdir())}")
    return problems


class Baseline:
    """The sandbox's state once a probe has set its stage (taken at the start unless the probe takes it)."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.state: dict[str, str] | None = None

    def take(self) -> None:
        self.state = snapshot(self.sandbox.root)


def _ip_run_race(sb, baseline, monkeypatch):
    """4a: another run creates the same new --out while this one is writing."""
    from synthmr.bundle.runner import run_bundle
    from synthmr.errors import InputError

    out = sb.work / "out"
    planted = out / "other_run.txt"

    def progress(stage, fraction):
        if stage == "write" and not out.exists():
            out.mkdir()
            planted.write_text("the other run's output\n")

    problems = []
    try:
        run_bundle(SHIPPED_NAME, {"t1_pre": str(sb.t1_pre)}, out, progress=progress)
        problems.append("run_bundle returned without an InputError")
    except InputError as error:
        if "\n" in str(error).strip():
            problems.append(f"the message is several lines: {error!r}")
    if not planted.exists() or planted.read_text() != "the other run's output\n":
        problems.append("the other run's file was deleted or changed")
    return problems, {out: "dir", planted: None}


def _ip_write_image_race(sb, baseline, monkeypatch):
    """4b: the file appears while write_image writes it."""
    import SimpleITK as sitk

    from synthmr.errors import InputError
    from synthmr.io import write_image

    volume = t1_volume(sb)
    path = sb.work / "image.nii.gz"
    original = sitk.WriteImage

    def racing(*args, **kwargs):
        path.write_bytes(b"the other writer's file")
        return original(*args, **kwargs)

    baseline.take()
    monkeypatch.setattr(sitk, "WriteImage", racing)
    problems = []
    try:
        write_image(volume, path)
        problems.append("write_image returned without an InputError")
    except InputError:
        pass
    monkeypatch.setattr(sitk, "WriteImage", original)
    if not path.exists() or path.read_bytes() != b"the other writer's file":
        problems.append("the other writer's file was replaced")
    return problems, {path: None}


def _ip_zip_bad_crc(sb, baseline, monkeypatch):
    """10a."""
    (sb.root / "cache").mkdir()
    archive = _bundle_zip(sb.inputs / "bad_crc.zip")
    _flip_member_byte(archive, "mybundle/configs/inference.yaml")
    baseline.take()
    return _check_zip_refused(sb, archive), {}


def _ip_zip_size_lie(sb, baseline, monkeypatch):
    """10b: the central directory understates a member's size (what a size limit counts)."""
    (sb.root / "cache").mkdir()
    archive = _bundle_zip(sb.inputs / "size_lie.zip", compression=zipfile.ZIP_DEFLATED)
    _lie_about_size(archive, "mybundle/configs/inference.yaml", -100)
    baseline.take()
    return _check_zip_refused(sb, archive), {}


def _ip_zip_dotdot_member(sb, baseline, monkeypatch):
    """own: a member that climbs out of the bundle."""
    (sb.root / "cache").mkdir()
    archive = _bundle_zip(sb.inputs / "climbing.zip", extra={"mybundle/../../escaped.txt": b"x"})
    baseline.take()
    return _check_zip_refused(sb, archive), {}


def _ip_export_unaffected(sb, baseline, monkeypatch):
    """10c: synthmr bundle export still writes a zip the Slicer library unpacks."""
    lib, _ = _slicer_lib()
    dist, cache = sb.root / "dist", sb.root / "cache"
    result = run_process([sys.executable, "-m", "synthmr", "bundle", "export", SHIPPED_NAME, "--out", dist],
                         sb.work, sb.env(), 120)
    problems = []
    if result.returncode != 0 or "Traceback" in result.text:
        return [f"export: {result.summary()}"], {dist: ...}
    zips = sorted(dist.glob("*.zip"))
    if len(zips) != 1:
        return [f"export wrote {zips}"], {dist: ...}
    try:
        unpacked = lib.unpack_bundle_zip(zips[0], cache)
        if not (unpacked / "configs" / "metadata.json").is_file():
            problems.append(f"{unpacked} holds no configs/metadata.json")
    except Exception as error:  # noqa: BLE001
        problems.append(f"unpack_bundle_zip({zips[0].name}) raised {type(error).__name__}: {error}")
    return problems, {dist: ..., cache: ...}


IN_PROCESS_PROBES = {
    "p04a-run-bundle-out-appears-during-write": _ip_run_race,
    "p04b-write-image-file-appears-during-write": _ip_write_image_race,
    "p10a-bundle-zip-bad-crc": _ip_zip_bad_crc,
    "p10b-bundle-zip-central-directory-lies-about-size": _ip_zip_size_lie,
    "p10c-bundle-export-unaffected": _ip_export_unaffected,
    "own31-bundle-zip-with-dotdot-member": _ip_zip_dotdot_member,
}


@pytest.mark.parametrize("probe_function", _probe_params(IN_PROCESS_PROBES))
def test_in_process_probe(probe_function, sandbox, monkeypatch):
    """The probe returns (problems, expected changes): path -> None (a file the probe itself planted: its final
    content is what the probe checked), "dir" (a folder it planted) or ... (an intended output, not compared)."""
    sandbox.in_process_env(monkeypatch)
    baseline = Baseline(sandbox)
    baseline.take()
    repo_before = bundles_state()
    problems, changes = probe_function(sandbox, baseline, monkeypatch)
    before = baseline.state
    excluded = tuple(path for path, kind in changes.items() if kind is ...)
    after = snapshot(sandbox.root, excluded)
    for path, kind in changes.items():
        if kind is ...:
            continue
        rel = path.relative_to(sandbox.root).as_posix()
        after.pop(rel, None)
        before.pop(rel, None)
    before = {rel: value for rel, value in before.items() if not _excluded(sandbox.root / rel, excluded)}
    if diff := snapshot_diff(before, after):
        problems.append(f"sandbox changed: {diff}")
    if staging := staging_left(sandbox.root):
        problems.append(f"staging left: {staging}")
    if repo_diff := snapshot_diff(repo_before, bundles_state()):
        problems.append(f"repository bundles changed: {repo_diff}")
    assert not problems, "; ".join(problems)


# ---------------------------------------------------------------------------------------------------------------
# 11. Signals: the command is cancelled while it writes.

SIGNAL_PROBES = [
    pytest.param(["phantom", "breast", "--n", 50, "--dims", 2, "--out", "o"], "o", "SIGTERM", 128 + 15,
                 id="p11a-phantom-sigterm"),
    pytest.param(["phantom", "breast", "--n", 50, "--dims", 2, "--out", "o"], "o", "SIGINT", 130,
                 id="p11b-phantom-sigint"),
    pytest.param(["demo", "--out", "d"], "d", "SIGTERM", 128 + 15, id="p11c-demo-sigterm"),
]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("args, out, signal_name, expected_code", SIGNAL_PROBES)
def test_signal_probe(sandbox, args, out, signal_name, expected_code):
    sb = sandbox
    before = snapshot(sb.root)
    repo_before = bundles_state()
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen([sys.executable, "-m", "synthmr", *map(str, args)], cwd=sb.work, env=sb.env(),
                                   stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        problems = []
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and process.poll() is None:
                if any(p.name.startswith(f".{out}.") for p in sb.work.iterdir()):
                    break
                time.sleep(0.05)
            else:
                if process.poll() is None:
                    problems.append(f"no staging folder .{out}.* appeared within 30 s")
            time.sleep(0.3)  # well inside the write
            if process.poll() is not None:
                problems.append(f"finished (exit {process.returncode}) before the signal could be sent")
            else:
                process.send_signal(getattr(signal, signal_name))
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        stdout.seek(0)
        stderr.seek(0)
        text_out, text_err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
    lines = [line for line in text_err.splitlines() if line.strip()]
    if code != expected_code:
        last = lines[-1] if lines else ""
        problems.append(f"exit {code}, expected {expected_code} (last stderr line: {last[:200]!r})")
    if "Traceback" in text_out + text_err:
        problems.append("Traceback in the output")
    if len(lines) > 1 or (lines and not lines[0].startswith("synthmr:")):
        problems.append(f"stderr is {len(lines)} line(s), not at most one 'synthmr:' line: {lines[:3]!r}")
    if staging := staging_left(sb.root):
        problems.append(f"staging left: {staging}")
    if (sb.work / out).exists():
        problems.append(f"{out} left")
    if diff := snapshot_diff(before, snapshot(sb.root)):
        problems.append(f"sandbox changed: {diff}")
    if repo_diff := snapshot_diff(repo_before, bundles_state()):
        problems.append(f"repository bundles changed: {repo_diff}")
    assert not problems, "; ".join(problems)
