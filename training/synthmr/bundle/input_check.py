"""Is an input case like the data a bundle was trained on? The check ``synthmr run`` makes before it synthesises.

A bundle trained on the phantom runs just as readily on a scan it has never seen anything like, and its output then
looks as confident as ever. Each bundle ships ``models/input_summary.json``, a compact summary of its training
inputs written by its ``configs/input_summary.yaml`` (:func:`write_input_summary`), and the runner scores every
case against it (:func:`score_case`; docs/design.md, *The input check*). Its parts:

- **appearance**, per intensity input role (for a bundle whose inputs are all labelmaps: its reference labelmap,
  labels scaled to [0, 1]): features of the package's domain extractor (:mod:`synthmr.metrics.extractors`,
  ``"domain"``) of up to 8 axial slices (last array axis) through the foreground, each case scaled by its 0.5 and
  99.5 percentiles, averaged per case. Kept: the training features' mean, their first principal components with
  their variances and the mean squared residual outside them. A case's distance is

      sqrt((sum_i p_i^2 / var_i + r^2 / mean_training(r^2)) / (k + 1)),

  a Mahalanobis distance inside the k-component principal subspace plus the distance from it, about 1 for a
  training case (with fewer training cases than features a full covariance cannot be estimated);
- **layout** of the reference input: the mean of its slices (those above, scaled the same way) averaged down to
  16 x 16 pixels, with the same subspace distance; it sees what pooled features cannot, where things are (a
  shifted case);
- **orientation**: the layout's distance divided by the smallest distance of the layout and its three in-plane
  mirror images (left-right, front-back, both): 1 for a case the right way round, above 1 for one that fits the
  training layouts better flipped;
- **geometry** of the reference input: log pixel spacing and log foreground extent in mm (in-plane for a 2D
  bundle), z-scored by the training mean and standard deviation, the latter at least log(1.2) (a phantom set has one
  spacing); distance: root mean square of the z-scores;
- **intensity**: the training range of each intensity input's 0.5 and 99.5 percentiles, recorded and reported but
  not scored, because every bundle scales each input by its own percentiles (its outputs are in the input's units).

The appearance part of a case is the root mean square over its scored roles of each role's distance over that
role's validation median (a bundle with eight inputs would otherwise have eight chances to exceed a threshold).
Each part's distance is divided by its ``pass_rate`` quantile over validation cases (at least 1), so that the parts
share one scale, a case's score is the largest of these, and the threshold is the ``pass_rate`` quantile of the
validation cases' scores: that share of cases drawn like the validation data passes. A volume given to a bundle
whose training items were 2D slices is scored slice by slice. A case above the threshold is not refused (unless
``synthmr run --strict``): the runner prints one warning line and records the check in every output's sidecar.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthmr.bundle.description import ToolDescription, read_tool_description
from synthmr.errors import InputError
from synthmr.io import Volume, read_image

SUMMARY_FILE = "models/input_summary.json"
SUMMARY_FORMAT = 1
MAX_SLICES = 8
MAX_COMPONENTS = 10
LAYOUT_SIZE = 16
PERCENTILES = (0.5, 99.5)
# A slice is used when its foreground covers at least this share of the largest foreground of any slice.
_SLICE_AREA_SHARE = 0.5
_MIN_GEOMETRY_STD = float(np.log(1.2))
REFERENCE_PARTS = ("layout", "orientation", "geometry")
_DIGITS = 4  # significant digits stored: the summary stays small


@dataclass(frozen=True)
class InputCheck:
    """The result of scoring one case: its score, the threshold, each part's scaled distance, each scored role's
    appearance distance over its validation median, and each intensity input's 0.5 and 99.5 percentiles with whether
    they lie in the training range (not scored)."""

    score: float
    threshold: float
    pass_rate: float
    parts: dict[str, float]
    roles: dict[str, float]
    summary: str
    intensity: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.score <= self.threshold

    @property
    def furthest(self) -> str:
        return max(self.parts, key=self.parts.get)

    def record(self) -> dict[str, Any]:
        """What the sidecars keep (synthmr.provenance)."""
        return {"passed": self.passed, "score": round(self.score, 4), "threshold": round(self.threshold, 4),
                "pass_rate": self.pass_rate, "parts": {k: round(v, 4) for k, v in self.parts.items()},
                "roles": {k: round(v, 4) for k, v in self.roles.items()}, "intensity": self.intensity,
                "summary": self.summary}

    def message(self, bundle: str) -> str:
        """One line for the user."""
        if self.passed:
            return (f"input check: the inputs are like bundle {bundle}'s training data (score {self.score:.2f}, "
                    f"threshold {self.threshold:.2f})")
        part = self.furthest
        what = {"geometry": "geometry (spacing, size)", "layout": "layout (position)",
                "orientation": "orientation (fits better flipped)"}.get(part)
        if what is None:
            what = f"appearance, most of all {max(self.roles, key=self.roles.get)!r}"
        return (f"input check: the inputs are unlike bundle {bundle}'s training data (score {self.score:.2f} > "
                f"threshold {self.threshold:.2f}, which {self.pass_rate:.0%} of validation cases pass; furthest: "
                f"{what}, {self.parts[part]:.2f}); its outputs may be wrong in ways that look plausible")


def scored_roles(description: ToolDescription) -> list[str]:
    """The input roles whose appearance is summarised: the intensity ones, else the reference labelmap."""
    roles = [name for name, role in description.inputs.items() if role.kind != "labelmap"]
    return roles or [description.reference]


@dataclass(frozen=True)
class _Prepared:
    """A volume as the features see it: scaled to [0, 1] (an image by its :data:`PERCENTILES`, a labelmap by its
    highest declared label), its foreground, and an image's percentiles (None for a labelmap)."""

    volume: Volume
    scaled: np.ndarray
    foreground: np.ndarray
    percentiles: tuple[float, float] | None


def _prepare(volume: Volume, labelmap_max: float | None) -> _Prepared:
    array = np.asarray(volume.array, dtype=np.float32)
    if labelmap_max is not None:
        scaled = np.clip(array / labelmap_max, 0.0, 1.0)
        return _Prepared(volume, scaled, scaled > 0, None)
    low, high = np.percentile(array, PERCENTILES)
    scaled = np.zeros_like(array) if high <= low else np.clip((array - low) / (high - low), 0.0, 1.0)
    return _Prepared(volume, scaled, _otsu_foreground(scaled), (float(low), float(high)))


def _labelmap_max(description: ToolDescription, role: str) -> float | None:
    declared = description.inputs[role]
    if declared.kind != "labelmap":
        return None
    return float(max(declared.labels)) if declared.labels else 1.0


def slice_indices(foreground: np.ndarray) -> np.ndarray:
    """Up to :data:`MAX_SLICES` axial slices (last axis) through the foreground, evenly spread."""
    area = foreground.sum(axis=tuple(range(foreground.ndim - 1)))
    candidates = np.flatnonzero(area >= _SLICE_AREA_SHARE * area.max()) if area.max() > 0 else np.arange(area.size)
    picked = np.unique(np.round(np.linspace(0, candidates.size - 1, min(MAX_SLICES, candidates.size))).astype(int))
    return candidates[picked]


def case_slices(prepared: _Prepared) -> list[np.ndarray]:
    """The :func:`slice_indices` slices of a prepared volume, scaled; a 2D image is its own slice."""
    if prepared.scaled.ndim == 2:
        return [prepared.scaled]
    return [prepared.scaled[..., index] for index in slice_indices(prepared.foreground)]


def _axial_slice(volume: Volume, index: int) -> Volume:
    return Volume(volume.array[..., index], volume.spacing[:2], volume.origin[:2], volume.direction[:2, :2])


def _otsu_foreground(scaled: np.ndarray) -> np.ndarray:
    """An image's voxels above its Otsu threshold (the body, not the noise)."""
    import SimpleITK as sitk

    otsu = sitk.OtsuThresholdImageFilter()
    otsu.Execute(sitk.GetImageFromArray(scaled))
    return scaled > otsu.GetThreshold()


def _geometry_features(volume: Volume, foreground: np.ndarray, spatial_dims: int) -> np.ndarray:
    """Log pixel spacing and log foreground extent (mm, between the 1st and 99th percentile voxel along each axis,
    so that stray voxels do not count) along the first ``spatial_dims`` axes."""
    axes = range(min(spatial_dims, volume.ndim))
    coordinates = np.nonzero(foreground)
    extents = []
    for axis in axes:
        if coordinates[axis].size:
            low, high = np.percentile(coordinates[axis], (1, 99))
            extents.append((high - low + 1) * volume.spacing[axis])
        else:
            extents.append(0.5 * volume.spacing[axis])  # an empty image: half a voxel, finite
    spacing = [volume.spacing[axis] for axis in axes]
    return np.log(np.asarray(spacing + extents, dtype=np.float64))


def _geometry_names(spatial_dims: int) -> list[str]:
    names = "xyz"[:spatial_dims]
    return [f"log spacing {a} (mm)" for a in names] + [f"log foreground extent {a} (mm)" for a in names]


class _Features:
    """Appearance features of a role's volume and layout and geometry features of the reference, through one
    extractor."""

    def __init__(self, description: ToolDescription, extractor=None) -> None:
        from synthmr.metrics.extractors import get_extractor

        self.description = description
        self.roles = scored_roles(description)
        self.extractor = extractor if extractor is not None else get_extractor("domain")

    def prepared(self, volumes: Mapping[str, Volume]) -> dict[str, _Prepared]:
        """Each scored and reference role of a case (role -> volume) prepared once."""
        needed = {*self.roles, self.description.reference}
        return {role: _prepare(volume, _labelmap_max(self.description, role))
                for role, volume in volumes.items() if role in needed}

    def appearance(self, prepared: _Prepared) -> np.ndarray:
        from synthmr.metrics.fid import extract_features

        return extract_features(case_slices(prepared), self.extractor).numpy().mean(axis=0)

    def reference(self, prepared: _Prepared) -> tuple[np.ndarray, np.ndarray]:
        """Layout (the mean of the reference's slices averaged down to :data:`LAYOUT_SIZE` pixels a side) and
        geometry features of the prepared reference input."""
        import torch
        import torch.nn.functional as F

        thumbnails = [F.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(s))[None], LAYOUT_SIZE)[0]
                      for s in case_slices(prepared)]
        layout = torch.stack(thumbnails).mean(dim=0).flatten().double().numpy()
        return layout, _geometry_features(prepared.volume, prepared.foreground, self.description.spatial_dims)


def _rounded(values) -> list:
    return np.vectorize(lambda v: float(f"{v:.{_DIGITS}g}"))(np.asarray(values, dtype=np.float64)).tolist()


def _fit_subspace(features: np.ndarray) -> dict[str, Any]:
    n = features.shape[0]
    mean = features.mean(axis=0)
    centred = features - mean
    k = max(1, min(MAX_COMPONENTS, n // 2))
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:k]
    variances = np.maximum(singular[:k] ** 2 / max(n - 1, 1), 1e-12)
    residual = np.square(centred).sum(axis=1) - np.square(centred @ components.T).sum(axis=1)
    return {"n": n, "mean": _rounded(mean), "components": _rounded(components), "variances": _rounded(variances),
            "mean_squared_residual": float(f"{max(residual.mean(), 1e-12):.{_DIGITS}g}")}


def _subspace_distance(part: Mapping[str, Any], features: np.ndarray) -> float:
    centred = features - np.asarray(part["mean"])
    projections = np.asarray(part["components"]) @ centred
    residual = max(float(centred @ centred - projections @ projections), 0.0)
    k = projections.size
    total = float(np.sum(projections**2 / np.asarray(part["variances"]))) + residual / part["mean_squared_residual"]
    return float(np.sqrt(total / (k + 1)))


def _geometry_distance(part: Mapping[str, Any], features: np.ndarray) -> float:
    z = (features - np.asarray(part["mean"])) / np.asarray(part["std"])
    return float(np.sqrt(np.mean(z**2)))


def _raw_distances(summary: Mapping[str, Any], appearance: Mapping[str, np.ndarray], reference: tuple) -> dict:
    layout, geometry = reference
    distances = {role: _subspace_distance(summary["appearance"][role], features)
                 for role, features in appearance.items()}
    distances["layout"] = _subspace_distance(summary["layout"], layout)
    # How much closer to the training layouts the case comes when mirrored left-right, front-back or both: 1 for a
    # case the right way round, above 1 for one that fits better flipped.
    thumbnail = layout.reshape(LAYOUT_SIZE, LAYOUT_SIZE)
    flipped = [np.flip(thumbnail, axes).ravel() for axes in (0, 1, (0, 1))]
    best = min([distances["layout"], *(_subspace_distance(summary["layout"], f) for f in flipped)])
    distances["orientation"] = distances["layout"] / max(best, 1e-12)
    distances["geometry"] = _geometry_distance(summary["geometry"], geometry)
    return distances


def _combined(summary: Mapping[str, Any], distances: Mapping[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """The parts' distances (appearance: the root mean square over the scored roles of each role's distance over its
    validation median, so that many input roles count as one part) and those role ratios."""
    roles = {role: distances[role] / summary["role_scales"][role]
             for role in summary["appearance"] if role in distances}
    parts = {"appearance": float(np.sqrt(np.mean(np.square(list(roles.values()))))),
             **{part: distances[part] for part in REFERENCE_PARTS}}
    return parts, roles


def _scaled_parts(summary: Mapping[str, Any], parts: Mapping[str, float]) -> dict[str, float]:
    return {part: distance / summary["scales"][part] for part, distance in parts.items()}


def _case_distances(summary: Mapping[str, Any], features: _Features, prepared: Mapping[str, _Prepared]) -> dict:
    """Raw distances of a case (role -> prepared volume). A volume given to a bundle whose training items were 2D
    slices is scored slice by slice (:func:`slice_indices` of the reference), each part's distance the median over
    slices: averaged features of several slices are not what the summary describes."""
    reference = prepared[features.description.reference]
    if summary.get("item_dims") == 2 and reference.volume.ndim == 3:
        per_slice = [
            _case_distances(summary, features, features.prepared(
                {role: _axial_slice(item.volume, int(index)) for role, item in prepared.items()}))
            for index in slice_indices(reference.foreground)
        ]
        return {part: float(np.median([d[part] for d in per_slice])) for part in per_slice[0]}
    appearance = {role: features.appearance(prepared[role]) for role in summary["appearance"] if role in prepared}
    return _raw_distances(summary, appearance, features.reference(reference))


def _read_role(path: str | os.PathLike, role: str) -> Volume:
    try:
        return read_image(path)
    except InputError as error:
        raise InputError(f"input summary, role {role!r}: {error}") from None


def build_input_summary(
    description: ToolDescription,
    training: Sequence[Mapping[str, Any]],
    validation: Sequence[Mapping[str, Any]],
    pass_rate: float = 0.95,
    extractor=None,
) -> dict[str, Any]:
    """The summary (module docstring) of ``training`` cases, normalised and thresholded on ``validation`` cases.

    Args:
        description: the bundle's tool description.
        training: cases as input role -> image file; a case may lack roles (a bundle whose roles come from two
            datalists, such as a healthy scan and a tumour case), each role is summarised over the cases that have it.
        validation: cases with every scored role and the reference role (see :func:`scored_roles`).
        pass_rate: share of validation cases that pass, in (0, 1].
        extractor: the domain extractor (default: the shipped one).
    """
    from synthmr.metrics.extractors import describe_extractor

    if not 0 < pass_rate <= 1:
        raise InputError(f"pass_rate must be in (0, 1], got {pass_rate}")
    features = _Features(description, extractor)
    role_features: dict[str, list[np.ndarray]] = {role: [] for role in features.roles}
    intensity = {role: [] for role in features.roles if _labelmap_max(description, role) is None}
    item_dims, layouts, geometries = set(), [], []
    for case in training:
        prepared = features.prepared({role: _read_role(path, role) for role, path in case.items()
                                      if role in {*features.roles, description.reference}})
        for role in features.roles:
            if role in prepared:
                role_features[role].append(features.appearance(prepared[role]))
                if role in intensity:
                    intensity[role].append(prepared[role].percentiles)
        if description.reference in prepared:
            layout, geometry = features.reference(prepared[description.reference])
            layouts.append(layout)
            geometries.append(geometry)
            item_dims.add(prepared[description.reference].volume.ndim)
    for role, vectors in {**role_features, "geometry (the reference role)": geometries}.items():
        if len(vectors) < 3:
            raise InputError(f"input summary of bundle {description.name}: {len(vectors)} training case(s) with "
                             f"{role}; at least 3 are needed")
    geometry_matrix = np.stack(geometries)
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "bundle": description.name,
        "extractor": describe_extractor(features.extractor),
        "spatial_dims": description.spatial_dims,
        "item_dims": max(item_dims),  # 2: the training items were slices
        "appearance": {role: _fit_subspace(np.stack(vectors)) for role, vectors in role_features.items()},
        "layout": _fit_subspace(np.stack(layouts)),
        "geometry": {
            "features": _geometry_names(geometry_matrix.shape[1] // 2),
            "mean": _rounded(geometry_matrix.mean(axis=0)),
            "std": _rounded(np.maximum(geometry_matrix.std(axis=0, ddof=1), _MIN_GEOMETRY_STD)),
            "n": len(geometries),
        },
        "intensity": {
            role: {"percentiles": list(PERCENTILES),
                   "low": _rounded([min(r[0] for r in ranges), max(r[0] for r in ranges)]),
                   "high": _rounded([min(r[1] for r in ranges), max(r[1] for r in ranges)])}
            for role, ranges in intensity.items() if ranges
        },
    }
    raw = []
    for index, case in enumerate(validation):
        missing = [role for role in [*features.roles, description.reference] if role not in case]
        if missing:
            raise InputError(f"input summary of bundle {description.name}: validation case {index} lacks "
                             f"{', '.join(map(repr, sorted(set(missing))))}")
        raw.append(_case_distances(summary, features, features.prepared(
            {role: _read_role(case[role], role) for role in {*features.roles, description.reference}})))
    if len(raw) < 10:
        raise InputError(f"input summary of bundle {description.name}: {len(raw)} validation case(s); at least 10 "
                         "are needed to choose a threshold")
    summary["role_scales"] = {role: float(f"{max(float(np.median([r[role] for r in raw])), 1e-6):.{_DIGITS}g}")
                              for role in summary["appearance"]}
    combined = [_combined(summary, r)[0] for r in raw]
    summary["scales"] = {
        part: float(f"{max(float(np.quantile([c[part] for c in combined], pass_rate)), 1.0):.{_DIGITS}g}")
        for part in combined[0]
    }
    scores = np.array([max(_scaled_parts(summary, c).values()) for c in combined])
    summary["threshold"] = float(np.quantile(scores, pass_rate, method="higher"))
    summary["pass_rate"] = pass_rate
    summary["validation"] = {"n": len(raw), "passed": int((scores <= summary["threshold"]).sum()),
                             "scores": _rounded(np.sort(scores))}
    return summary


def write_input_summary(
    bundle_root: str | os.PathLike,
    training: Sequence[Mapping[str, Any]],
    validation: Sequence[Mapping[str, Any]],
    pass_rate: float = 0.95,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write :func:`build_input_summary` of the bundle at ``bundle_root`` to ``out`` (default: its
    ``models/input_summary.json``; one line, as it is mostly numbers); an existing file is kept unless
    ``overwrite``."""
    from synthmr.io._atomic import check_destination, write_json

    description = read_tool_description(Path(bundle_root))
    out = Path(out) if out is not None else Path(bundle_root) / SUMMARY_FILE
    check_destination(out, overwrite, what="file")
    write_json(out, build_input_summary(description, training, validation, pass_rate), overwrite, compact=True)
    print(f"input summary of bundle {description.name}: {out}")
    return out


def renamed(datalist: Sequence[Mapping[str, Any]], roles: Mapping[str, str]) -> list[dict[str, Any]]:
    """Datalist items as cases of the given roles: ``roles`` maps each input role to its datalist key."""
    return [{role: item[key] for role, key in roles.items()} for item in datalist]


def joined(*case_lists: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Cases of several lists joined by position (the shortest list sets the number), roles merged."""
    return [{k: v for case in cases for k, v in case.items()} for cases in zip(*case_lists)]


def load_summary(bundle_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The bundle's input summary, or None when it ships none."""
    path = Path(bundle_dir) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable input summary ({error})") from None
    if not isinstance(summary, dict) or summary.get("format") != SUMMARY_FORMAT:
        raise InputError(f"{path}: not an input summary of format {SUMMARY_FORMAT}")
    return summary


def score_case(description: ToolDescription, volumes: Mapping[str, Volume], summary: Mapping[str, Any] | None = None,
               extractor=None) -> InputCheck | None:
    """Score a case (input role -> volume, already checked by the runner) against the bundle's input summary;
    None when the bundle ships none.

    Raises:
        InputError: the summary was made with other extractor weights than this synthmr's (it is stale: rebuild it
            with the bundle's configs/input_summary.yaml).
    """
    from synthmr.metrics.extractors import describe_extractor

    summary = load_summary(description.bundle_dir) if summary is None else summary
    if summary is None:
        return None
    features = _Features(description, extractor)
    if summary["extractor"] != describe_extractor(features.extractor):
        raise InputError(
            f"bundle {description.name}: its {SUMMARY_FILE} was made with the extractor {summary['extractor']}, this "
            f"synthmr has {describe_extractor(features.extractor)}; rebuild the summary with the bundle's "
            "configs/input_summary.yaml"
        )
    prepared = features.prepared(volumes)
    combined, roles = _combined(summary, _case_distances(summary, features, prepared))
    parts = _scaled_parts(summary, combined)
    intensity = {}
    for role, trained in summary["intensity"].items():
        if role in prepared:
            low, high = prepared[role].percentiles
            within = trained["low"][0] <= low <= trained["low"][1] and trained["high"][0] <= high <= trained["high"][1]
            intensity[role] = {"percentiles": trained["percentiles"], "input": _rounded([low, high]),
                               "within_training_range": bool(within)}
    return InputCheck(score=max(parts.values()), threshold=float(summary["threshold"]),
                      pass_rate=float(summary["pass_rate"]), parts=parts, roles=roles, summary=SUMMARY_FILE,
                      intensity=intensity)
