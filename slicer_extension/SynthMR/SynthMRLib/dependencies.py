"""What the module needs inside Slicer beyond what Slicer ships, and how to install it without breaking Slicer.

- PyTorch comes from the PyTorch extension only: its ``PyTorchUtils`` picks the build that matches the GPU driver.
  It is never pip-installed here.
- ``synthmr`` (which brings MONAI, nibabel, pydicom and the rest) is pip-installed only after the user confirms, from
  one of two places, never by name from a package index (no index holds it):

  1. the wheel packaged with the extension (``<module folder>/Resources/Wheels/synthmr-<version>-py3-none-any.whl``,
     built from the same checkout as the module, so of the same version; see :data:`PACKAGED_WHEELS`);
  2. the SynthMR checkout the module runs from (``pip install <checkout>``).

- The install is constrained to the versions of PyTorch, NumPy and SimpleITK already installed, so pip either
  keeps them or fails with a message: it cannot replace Slicer's own builds or the PyTorch extension's (a
  pip-installed SimpleITK breaks Slicer's image IO).
- A preflight (:func:`preflight`) names what no install can fix: a Python older than synthmr needs, an installed
  PyTorch outside synthmr's range, no PyTorch and no PyTorch extension. Both ranges are read from the package
  itself (the wheel's ``METADATA``, or the checkout's ``pyproject.toml``), so they have one source.

Nothing here installs anything or imports the packages it asks about; the module calls it on the user's request.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import importlib.util
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from SynthMRLib.bundles import module_dir, repository_root
from SynthMRLib.errors import SynthMRError

# Modules a run needs in Slicer's Python: PyTorch (from the PyTorch extension), MONAI, which runs the bundles, and
# the runner's package.
REQUIRED_MODULES = ("torch", "monai", "synthmr")
# Distributions Slicer or the PyTorch extension installed, which pip must keep as they are.
PROTECTED_DISTRIBUTIONS = ("torch", "numpy", "SimpleITK")
# Where the packaged extension keeps the synthmr wheel, relative to the module folder (the module's CMakeLists.txt
# installs it there).
PACKAGED_WHEELS = ("Resources", "Wheels")
WHEEL_PATTERN = "synthmr-*-py3-none-any.whl"
_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*\(?([^;)]*)\)?\s*(?:;(.*))?$")
_RELEASE = re.compile(r"\s*v?(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class SynthmrSource:
    """Where synthmr is installed from, and what it requires of Python and PyTorch.

    Args:
        kind: ``"packaged wheel"`` or ``"checkout"``.
        path: the wheel file or the checkout folder (what pip installs).
        version: synthmr's version in it.
        requires_python: its ``Requires-Python`` specifier, e.g. ``">=3.10"`` (``""`` when it declares none).
        torch_requirement: its specifier for torch, e.g. ``"<3,>=2.4"`` (``""`` when it declares none).
    """

    kind: str
    path: Path
    version: str
    requires_python: str
    torch_requirement: str


@dataclass(frozen=True)
class InstallPlan:
    """What *Install dependencies* does, for the user to confirm.

    Args:
        source: where synthmr comes from.
        missing: the :data:`REQUIRED_MODULES` not importable now.
        constraints: the pip constraints (``name==version`` lines) that keep Slicer's and the PyTorch extension's
            packages (:func:`protected_constraints`).
    """

    source: SynthmrSource
    missing: tuple[str, ...]
    constraints: str

    def pip_arguments(self, constraints_file: str) -> list[str]:
        """The arguments after ``pip install``; ``constraints_file`` holds :attr:`constraints`."""
        return [str(self.source.path), "--constraint", constraints_file]

    def describe(self) -> str:
        """The plan in a few lines: what pip installs, from where, and what it must leave alone."""
        source = self.source
        origin = (
            "the wheel packaged with the extension" if source.kind == "packaged wheel" else "the SynthMR checkout"
        )
        kept = ", ".join(line.replace("==", " ") for line in self.constraints.splitlines()) or "none installed yet"
        return "\n".join([
            f"pip install {source.path}",
            f"(synthmr {source.version} from {origin}, with its dependencies, e.g. MONAI, from the package index)",
            f"Kept at their installed versions: {kept}.",
        ])


def missing_modules() -> list[str]:
    """The :data:`REQUIRED_MODULES` this Python cannot import (found without importing them)."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def packaged_wheel() -> Path | None:
    """The synthmr wheel packaged with the extension (the newest, should there be several), or None."""
    folder = module_dir().joinpath(*PACKAGED_WHEELS)
    wheels = sorted(folder.glob(WHEEL_PATTERN), key=lambda path: _release(_wheel_version(path)))
    return wheels[-1] if wheels else None


def synthmr_source() -> SynthmrSource:
    """Where synthmr is installed from: the packaged wheel, else the checkout the module runs from.

    Raises:
        SynthMRError: neither is there (a damaged extension install), or the wheel or ``pyproject.toml`` cannot be
            read.
    """
    wheel = packaged_wheel()
    if wheel is not None:
        return _wheel_source(wheel)
    root = repository_root()
    if root is not None:
        return _checkout_source(root)
    folder = module_dir().joinpath(*PACKAGED_WHEELS)
    raise SynthMRError(
        f"the synthmr wheel is missing: the extension should carry it as {folder / WHEEL_PATTERN}, and the module "
        "does not run from a SynthMR checkout either. Reinstall the SynthMR extension from the Extensions Manager, "
        "or add <checkout>/slicer_extension/SynthMR to Slicer's additional module paths"
    )


def synthmr_requirement() -> str:
    """What pip installs synthmr from (:func:`synthmr_source`'s path): a wheel file or a checkout folder."""
    return str(synthmr_source().path)


def torch_requirement() -> str:
    """synthmr's specifier for torch, for the PyTorch extension's installer (e.g. ``"<3,>=2.4"``)."""
    return synthmr_source().torch_requirement


def protected_constraints() -> str:
    """pip constraints (``name==version`` lines) that keep the installed :data:`PROTECTED_DISTRIBUTIONS`."""
    lines = []
    for name in PROTECTED_DISTRIBUTIONS:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:  # not installed: pip may bring it
            continue
    return "".join(line + "\n" for line in lines)


def install_plan() -> InstallPlan:
    """The plan *Install dependencies* shows before it asks (raises like :func:`synthmr_source`)."""
    return InstallPlan(synthmr_source(), tuple(missing_modules()), protected_constraints())


def preflight(source: SynthmrSource | None = None) -> list[str]:
    """Problems that installing synthmr cannot fix, each one sentence naming what is there and what is needed; an
    empty list when there are none.

    - this Python is older than synthmr's ``Requires-Python`` (Slicer 5.8 has Python 3.9; synthmr needs 3.10+);
    - the installed PyTorch is outside synthmr's range (pip must not replace the PyTorch extension's build);
    - PyTorch is not installed and the PyTorch extension (its ``PyTorchUtils`` module), which installs it, is not
      either.

    Args:
        source: where synthmr comes from; default :func:`synthmr_source` (whose error is then the one problem).
    """
    if source is None:
        try:
            source = synthmr_source()
        except SynthMRError as error:
            return [str(error)]
    problems = []
    running = ".".join(str(part) for part in sys.version_info[:3])
    if source.requires_python and not version_satisfies(running, source.requires_python):
        problems.append(
            f"Slicer's Python is {running}, but synthmr {source.version} needs Python {source.requires_python}: "
            "use 3D Slicer 5.10 or later"
        )
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    if torch_version is None:
        if importlib.util.find_spec("PyTorchUtils") is None:
            problems.append(
                "PyTorch is not installed: install the PyTorch extension from the Extensions Manager first, restart "
                "Slicer, and try again (SynthMR installs PyTorch only through it)"
            )
    elif source.torch_requirement and not version_satisfies(torch_version, source.torch_requirement):
        problems.append(
            f"the installed PyTorch is {torch_version}, but synthmr {source.version} needs torch "
            f"{source.torch_requirement}: install a fitting version with the PyTorch Utils module (PyTorch "
            "extension), restart Slicer, and try again"
        )
    return problems


def synthmr_update() -> tuple[str, str] | None:
    """``(installed, packaged)`` versions of synthmr when an installed synthmr differs from the packaged wheel (the
    extension was updated since), else None."""
    wheel = packaged_wheel()
    if wheel is None:
        return None
    try:
        installed = importlib.metadata.version("synthmr")
    except importlib.metadata.PackageNotFoundError:
        return None
    packaged = _wheel_version(wheel)
    return (installed, packaged) if installed != packaged else None


def version_satisfies(version: str, specifier: str) -> bool:
    """Whether ``version`` meets a PEP 440 ``specifier`` such as ``">=2.4,<3"`` (standard library only).

    Compares release numbers (``2.13.0+cpu`` is 2.13.0; a pre-release counts as its release); handles ``==``,
    ``!=`` (with ``.*``), ``>=``, ``<=``, ``>``, ``<``, ``~=`` and ``===``.
    """
    release = _release(version)
    for clause in filter(None, (part.strip() for part in specifier.split(","))):
        match = re.fullmatch(r"(===|==|!=|~=|>=|<=|>|<)\s*(\S+)", clause)
        if match is None:
            raise SynthMRError(f"cannot read the version requirement {clause!r} (in {specifier!r})")
        operator, value = match.groups()
        if operator == "===":
            ok = version == value
        elif value.endswith(".*"):
            prefix = _release(value[:-2])
            ok = (release[: len(prefix)] == prefix) == (operator == "==")
        else:
            other = _release(value)
            width = max(len(release), len(other))
            mine, theirs = _pad(release, width), _pad(other, width)
            if operator == "~=":
                ok = mine >= theirs and mine[: len(other) - 1] == other[:-1]
            else:
                ok = {
                    "==": mine == theirs,
                    "!=": mine != theirs,
                    ">=": mine >= theirs,
                    "<=": mine <= theirs,
                    ">": mine > theirs,
                    "<": mine < theirs,
                }[operator]
        if not ok:
            return False
    return True


def requirement_specifier(requirements: list[str], name: str) -> str:
    """The version specifier of ``name`` among ``requirements`` (PEP 508 strings, as in ``Requires-Dist`` or
    ``pyproject.toml``); requirements only of an extra (``; extra == "train"``) are skipped. ``""`` when absent."""
    wanted = _normalize(name)
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement)
        if match is None or _normalize(match.group(1)) != wanted:
            continue
        marker = match.group(3) or ""
        if "extra" in marker:
            continue
        return match.group(2).replace(" ", "")
    return ""


def _wheel_source(wheel: Path) -> SynthmrSource:
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [name for name in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", name)]
            if len(names) != 1:
                raise SynthMRError(f"{wheel}: not a wheel (no single *.dist-info/METADATA)")
            text = archive.read(names[0]).decode("utf-8")
    except (OSError, zipfile.BadZipFile, UnicodeDecodeError) as error:
        raise SynthMRError(f"{wheel}: cannot be read ({error})") from None
    metadata = email.parser.Parser().parsestr(text, headersonly=True)
    return SynthmrSource(
        kind="packaged wheel",
        path=wheel,
        version=metadata.get("Version", _wheel_version(wheel)),
        requires_python=(metadata.get("Requires-Python") or "").replace(" ", ""),
        torch_requirement=requirement_specifier(metadata.get_all("Requires-Dist") or [], "torch"),
    )


def _checkout_source(root: Path) -> SynthmrSource:
    pyproject = root / "pyproject.toml"
    try:
        project = _read_pyproject(pyproject)
    except (OSError, ValueError) as error:
        raise SynthMRError(f"{pyproject}: cannot be read ({error})") from None
    return SynthmrSource(
        kind="checkout",
        path=root,
        version=str(project.get("version", "")),
        requires_python=str(project.get("requires-python", "")).replace(" ", ""),
        torch_requirement=requirement_specifier(list(project.get("dependencies", [])), "torch"),
    )


def _read_pyproject(path: Path) -> dict:
    """The ``[project]`` table of a ``pyproject.toml``: with :mod:`tomllib` (Python 3.11+), else the few keys read
    here (``version``, ``requires-python``, ``dependencies``) by a small line reader."""
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return _read_project_table(text)
    return tomllib.loads(text).get("project", {})


def _read_project_table(text: str) -> dict:
    table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    body = table.group(1) if table else ""
    project: dict = {}
    for key in ("version", "requires-python"):
        match = re.search(rf'^{key}\s*=\s*"([^"]*)"', body, re.MULTILINE)
        if match:
            project[key] = match.group(1)
    # The array ends at a "]" that ends its line (an extra's "]" inside a requirement string does not).
    dependencies = re.search(r"^dependencies\s*=\s*\[(.*?)\]\s*$", body, re.MULTILINE | re.DOTALL)
    if dependencies:
        without_comments = re.sub(r"#[^\n]*", "", dependencies.group(1))  # a comment may quote a word too
        project["dependencies"] = re.findall(r'"([^"]*)"', without_comments)
    return project


def _wheel_version(wheel: Path) -> str:
    parts = wheel.name.split("-")
    return parts[1] if len(parts) > 2 else ""


def _release(version: str) -> tuple[int, ...]:
    match = _RELEASE.match(version)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def _pad(release: tuple[int, ...], width: int) -> tuple[int, ...]:
    return release + (0,) * (width - len(release))


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
