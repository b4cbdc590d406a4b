"""Liver multiphase MRI phantom: an axial upper abdomen with macrotrabecular-massive hepatocellular carcinoma.

The anatomy is procedural and lives in patient space (millimetres, LPS: x -> patient left, y -> posterior,
z -> superior). Every organ is an implicit shape (ellipsoid, tube, superellipse) evaluated on a randomly
deformed copy of the grid coordinates, so cross-sections change smoothly along z. Shapes become
partial-volume *occupancies* and are stacked by priority into
tissue fractions; :func:`synthmr.phantom.physics.render` turns the fractions into the signal of each series
and :class:`synthmr.phantom.physics.Acquisition` adds bias, noise and scaling (docs/design.md, *The phantom*).

The disease is MMHCC (the subtype of seed paper 000): large (5-12 cm here), lobulated, heterogeneous tumours
with necrosis, arterial phase hyperenhancement, portal venous phase washout and sometimes an enhancing capsule
(Ziol et al., Hepatology 2018;68:103-112; Mulé et al., Radiology 2020;295:562-571; LI-RADS v2018 feature
definitions, Chernyak et al., Radiology 2018;289:816-830).

Series (keys of docs/design.md, *Data conventions*):

- ``t1fs_arterial`` / ``t1fs_portal``: fat-suppressed 3D spoiled gradient echo (VIBE/LAVA/THRIVE type) in the
  late arterial and portal venous phases of an extracellular Gd agent.
- ``t2``: fat-suppressed T2-weighted fast spin echo, acquired before contrast. Fat suppression is the clinical
  default for liver T2 because it widens the display range left for focal lesions; flowing blood is a signal
  void, as on any spin echo.

Masks: ``liver`` (whole liver including tumours and intrahepatic vessels) and ``tumor`` (viable tumour,
necrosis and capsule), plus the documented extra ``necrosis`` (subset of ``tumor``) so that viable tumour can
be measured as ``tumor & ~necrosis``. :meth:`LiverPhantom.tissue_fractions` gives the full ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.interpolate import make_interp_spline

from synthmr.errors import InputError
from synthmr.phantom import physics
from synthmr.phantom._arguments import MAX_SIZE, check_voxels, integer, number
from synthmr.phantom.case import PhantomCase
from synthmr.phantom.physics import Acquisition, SpinEcho, SpoiledGradientEcho, Tissue

# ----------------------------------------------------------------------------------------------------------
# Tissues at 3 T. Relaxation times: de Bazelaire et al., "MR imaging relaxation times of abdominal and pelvic
# tissues measured in vivo at 3.0 T", Radiology 2004;230:652-659, unless noted. Proton densities are relative
# water contents (Woodard & White, "The composition of body tissues", Br J Radiol 1986;59:1209-1218).
# ----------------------------------------------------------------------------------------------------------

# Blood: Stanisz et al., "T1, T2 relaxation and magnetization transfer in tissue at 3T", MRM 2005;54:507-512.
BLOOD = Tissue(pd=0.80, t1=1932.0, t2=275.0, heterogeneity=0.0)
FAT = Tissue(pd=0.90, t1=382.0, t2=68.0, fat=True, heterogeneity=0.0)  # suppressed on every series here
MUSCLE = Tissue(pd=0.76, t1=898.0, t2=29.0, heterogeneity=0.03)

TISSUES: dict[str, Tissue] = {
    "liver": Tissue(pd=0.71, t1=809.0, t2=34.0, heterogeneity=0.04),
    "spleen": Tissue(pd=0.79, t1=1328.0, t2=61.0, heterogeneity=0.04),
    "pancreas": Tissue(pd=0.73, t1=725.0, t2=43.0, heterogeneity=0.04),
    "kidney_cortex": Tissue(pd=0.80, t1=1142.0, t2=76.0),
    "kidney_medulla": Tissue(pd=0.83, t1=1545.0, t2=81.0),
    "muscle": MUSCLE,
    "subcutaneous_fat": FAT,
    "visceral_fat": FAT,
    "renal_sinus_fat": FAT,
    "marrow_fat": FAT,
    # Haematopoietic (water) part of vertebral marrow, assumed muscle-like: de Bazelaire measured only the
    # fat-water mixture (apparent T1 586 ms, T2 49 ms), so marrow is rendered as this plus marrow_fat.
    "marrow_water": Tissue(pd=0.75, t1=1000.0, t2=45.0),
    # Bowel wall and contents vary too much for one measured value; smooth-muscle wall dominates, so muscle.
    "bowel": replace(MUSCLE, heterogeneity=0.08),
    "aorta": BLOOD,
    "ivc": BLOOD,
    "portal_vein": BLOOD,
    "hepatic_vessels": BLOOD,
    # Necrosis is fluid-like but not free fluid (free fluid at 3 T: T1 > 3000 ms, T2 > 1000 ms): assumed values
    # that make it dark on T1 and bright on T2, as described for MMHCC necrosis (Mulé et al. 2020).
    "necrosis": Tissue(pd=0.90, t1=2500.0, t2=180.0, heterogeneity=0.08),
    # Fibrous (pseudo)capsule: assumed fibrous-tissue values, slightly longer T1 than liver.
    "capsule": Tissue(pd=0.72, t1=1000.0, t2=40.0),
}

# Viable HCC, drawn per tumour: T1 longer than liver (hypointense before contrast) and T2 raised (moderately
# hyperintense). Assumed ranges around the usual appearance (T1 ~1.5-1.7x, T2 ~2x those of liver above).
HCC_RELAXATION = {"pd": (0.78, 0.85), "t1": (1200.0, 1400.0), "t2": (60.0, 80.0)}
HCC_HETEROGENEITY = 0.12  # MMHCC is markedly heterogeneous ("mosaic") on every series

# On spin echo, blood that leaves the slice between excitation and refocusing gives no echo (flow void; Bradley
# & Waluch, Radiology 1985;154:443-450). The residual signal fraction is an assumption.
FLOW_VOID = 0.1
FLOWING_BLOOD = ("aorta", "ivc", "portal_vein", "hepatic_vessels")

SEQUENCES = {
    # 3D fat-suppressed spoiled GRE at 3 T (typical LAVA/VIBE: TR ~4 ms, TE ~2 ms, flip 10-15 degrees); spectral
    # fat suppression leaves ~10 % of the fat signal.
    "t1fs_arterial": SpoiledGradientEcho(tr=4.0, te=2.0, flip_deg=12.0, fat_suppression=0.1),
    "t1fs_portal": SpoiledGradientEcho(tr=4.0, te=2.0, flip_deg=12.0, fat_suppression=0.1),
    # Respiratory-triggered fat-suppressed T2 FSE: effective TR ~ one breathing cycle, TE 80 ms.
    "t2": SpinEcho(tr=3000.0, te=80.0, fat_suppression=0.15),
}

# ----------------------------------------------------------------------------------------------------------
# Contrast kinetics (minutes). The time axis is that of the Parker AIF, whose first-pass peak is at 0.17 min;
# clinically the aortic peak comes ~20-25 s after the injection starts, so "35 s after injection" (late
# arterial) is ~0.35 min here and "70 s" (portal venous) ~1.0 min.
# ----------------------------------------------------------------------------------------------------------

ARTERIAL_TIME_MIN = 0.35
PORTAL_TIME_MIN = 1.0

# Ranges drawn uniformly. Every combination of their ends (with those of HCC_RELAXATION) keeps viable HCC >= 8 %
# brighter than liver on the arterial phase and >= 8 % darker on the portal phase, in noiseless signal at the
# default phase times (tests/test_phantom_liver.py re-checks the corners); typical draws give +45 % and -25 %.
KINETIC_RANGES = {
    # Splanchnic transit delays and disperses the bolus on its way to the portal vein, whose peak lags the
    # aortic one by ~15 s here.
    "portal_delay_min": (0.15, 0.25),
    "portal_dispersion_min": (0.25, 0.40),
    # Normal liver (dual-input one-compartment model, Materne et al., Clin Sci 2000;99:517-525): total plasma
    # flow ~1 mL/min/mL, of which 20-30 % arterial, extracellular distribution volume ~25 %.
    "liver_arterial_fraction": (0.20, 0.30),
    "liver_flow_per_min": (1.0, 1.2),
    "liver_distribution_volume": (0.22, 0.28),
    # HCC: arterialised (no portal supply), high arterial flow into a small distribution volume, i.e. a fast
    # exchange rate k2 = 6-11 /min: strong first-pass uptake, then washout below the slowly filling liver.
    "hcc_arterial_flow_per_min": (0.96, 1.44),
    "hcc_distribution_volume": (0.135, 0.165),
}

# Extended Tofts parameters (Ktrans /min, ve, vp) chosen to give each organ its textbook multiphase appearance:
# avid arterial enhancement of pancreas and renal cortex with corticomedullary differentiation, slow mild
# enhancement of muscle, moderate enhancement of marrow and bowel wall.
TOFTS = {
    "kidney_cortex": (1.2, 0.25, 0.30),
    "kidney_medulla": (0.4, 0.30, 0.05),
    "pancreas": (0.8, 0.25, 0.10),
    "muscle": (0.05, 0.12, 0.02),
    "bowel": (0.3, 0.30, 0.05),
    "marrow_water": (0.2, 0.20, 0.05),
}
# The spleen is purely arterial with a large vascular space: one compartment fed by the artery.
SPLEEN_FLOW_PER_MIN, SPLEEN_DISTRIBUTION_VOLUME = 1.5, 0.35
# The capsule fills from the peritumoural sinusoids (portal supply) into a large fibrous interstitium, so it
# enhances late (Ishigami et al., Radiology 2009;250:435-443): extended Tofts on the portal venous input.
# Values chosen so the capsule is dark on the arterial and ~20 % brighter than liver on the portal phase.
CAPSULE_KTRANS, CAPSULE_VE = 0.8, 0.6
# Caval blood at the hepatic level is systemic venous return: a longer, more dispersed delay (assumed).
CAVAL_DELAY_MIN, CAVAL_DISPERSION_MIN = 0.3, 0.5

TUMOR_DIAMETER_MM = (50.0, 120.0)
MAX_NECROSIS_FRACTION = 0.4
CAPSULE_PROBABILITY = 0.4  # capsule is seen in a minority of MMHCC (Mulé et al. 2020)


def portal_venous_input(delay: float, dispersion: float) -> np.ndarray:
    """Portal venous plasma concentration (mM) on ``KINETICS_GRID``: the arterial plasma input after transit.

    Args:
        delay: transit delay, minutes.
        dispersion: mean of the unit-area exponential dispersion kernel, minutes.
    """
    return physics.delayed(physics.plasma_aif(), delay, dispersion)


def liver_concentration(
    portal: np.ndarray, arterial_fraction: float, flow: float, distribution_volume: float
) -> np.ndarray:
    """Normal liver tissue concentration (mM) with the dual-input one-compartment model (Materne et al. 2000).

    Args:
        portal: portal venous plasma input (see :func:`portal_venous_input`).
        arterial_fraction: share of the hepatic arterial flow in the total flow.
        flow: total plasma flow per tissue volume, 1/min.
        distribution_volume: extracellular volume fraction the agent fills; sets k2 = flow / volume.
    """
    return physics.dual_input_one_compartment(
        physics.plasma_aif(),
        portal,
        ka=arterial_fraction * flow,
        kp=(1.0 - arterial_fraction) * flow,
        k2=flow / distribution_volume,
    )


def hcc_concentration(arterial_flow: float, distribution_volume: float) -> np.ndarray:
    """Viable HCC concentration (mM): the dual-input model with arterial supply only (kp = 0).

    Args:
        arterial_flow: hepatic arterial plasma flow per tissue volume (ka), 1/min.
        distribution_volume: extracellular volume fraction; k2 = arterial_flow / distribution_volume.
    """
    arterial = physics.plasma_aif()
    return physics.dual_input_one_compartment(
        arterial, np.zeros_like(arterial), ka=arterial_flow, kp=0.0, k2=arterial_flow / distribution_volume
    )


# ----------------------------------------------------------------------------------------------------------
# Geometry on the grid
# ----------------------------------------------------------------------------------------------------------


class _Space:
    """Grid coordinates (mm) with the shape primitives of the phantom.

    ``x, y, z`` are the randomly deformed coordinates that organ shapes are evaluated on; partial volume is
    computed in-plane, over an edge one pixel wide.
    """

    def __init__(self, axes: list[np.ndarray], spacing: tuple[float, ...], rng: np.random.Generator):
        self.axes = axes
        self.spacing = spacing
        self.shape = tuple(len(a) for a in axes)
        self.rng = rng
        grids = np.meshgrid(*[a.astype(np.float32) for a in axes], indexing="ij", sparse=True)
        # A smooth displacement of ~5 mm over ~6 cm bends every organ a little differently in each subject.
        shift_x, shift_y = self.field(60.0, 5.0), self.field(60.0, 5.0)
        self.max_shift = float(max(np.abs(shift_x).max(), np.abs(shift_y).max()))
        self.x = grids[0] + shift_x
        self.y = grids[1] + shift_y
        self.z = np.broadcast_to(grids[2] if len(axes) == 3 else np.float32(0.0), self.shape)  # a view

    def field(self, correlation_mm: float, amplitude: float) -> np.ndarray:
        """Smooth zero-mean random field on the grid, correlation length in mm (isotropic in patient space)."""
        # Half the correlation length resolves the field on the lattice; finer than the pixels is wasted.
        step = max(correlation_mm / 2.0, min(self.spacing))
        margin = 2.0 * correlation_mm
        lattice_axes = [np.arange(a[0] - margin, a[-1] + margin + step, step) for a in self.axes]
        shape = tuple(len(a) for a in lattice_axes)
        values = physics.smooth_field(shape, self.rng, sigma=correlation_mm / step, amplitude=amplitude)
        for axis, (lattice, points) in enumerate(zip(lattice_axes, self.axes)):
            values = make_interp_spline(lattice, values, k=1, axis=axis)(points)
        return values.astype(np.float32)

    def occupancy(self, level: np.ndarray) -> np.ndarray:
        """Inside fraction of the region ``level < 0``, from the first-order in-plane distance level/|grad|."""
        gradients = np.gradient(level, *self.spacing[:2], axis=(0, 1))
        slope = np.sqrt(gradients[0] ** 2 + gradients[1] ** 2) + 1e-9
        return np.clip(0.5 - level / (slope * self.spacing[0]), 0.0, 1.0)

    def _box(self, centre, extent) -> tuple[slice, ...]:
        """Index box of the grid points within ``extent`` mm of ``centre`` per axis, deformation included.

        Axes beyond ``len(centre)`` are taken whole. Shapes are evaluated only in their box, for speed.
        """
        box = []
        for axis, (points, c, e) in enumerate(zip(self.axes, centre, extent)):
            margin = e + (self.max_shift if axis < 2 else 0.0) + 2.0 * self.spacing[axis]
            low, high = np.searchsorted(points, [c - margin, c + margin])
            box.append(slice(int(low), int(high)))
        return tuple(box)

    def _paste(self, box: tuple[slice, ...], level) -> np.ndarray:
        """Full-grid occupancy of a level set computed inside ``box`` (empty outside it)."""
        out = np.zeros(self.shape, np.float32)
        if all(s.stop - s.start >= 2 for s in box[:2]):
            out[box] = self.occupancy(level(box))
        return out

    def ellipsoid(self, centre, radii, angle_deg: float = 0.0) -> np.ndarray:
        """Occupancy of an ellipsoid (3 radii) or of a z-invariant tube (2 radii) around ``centre``.

        ``angle_deg`` turns the first radius from patient left (+x) towards posterior (+y).
        """
        angle = np.deg2rad(angle_deg)
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))

        def level(box):
            dx, dy = self.x[box] - np.float32(centre[0]), self.y[box] - np.float32(centre[1])
            u, v = (dx * cos + dy * sin) / np.float32(radii[0]), (dy * cos - dx * sin) / np.float32(radii[1])
            r2 = u**2 + v**2
            if len(radii) == 3:
                r2 = r2 + ((self.z[box] - np.float32(centre[2])) / np.float32(radii[2])) ** 2
            return np.sqrt(r2) - 1.0

        in_plane = max(radii[0], radii[1])
        return self._paste(self._box(centre, (in_plane, in_plane) + tuple(radii[2:])), level)

    def tube(self, start, end, radius: float) -> np.ndarray:
        """Occupancy of a straight vessel of ``radius`` mm between two 3D points (rounded ends)."""
        start, end = np.asarray(start, np.float32), np.asarray(end, np.float32)
        axis = end - start

        def level(box):
            offsets = [self.x[box] - start[0], self.y[box] - start[1], self.z[box] - start[2]]
            t = np.clip(sum(o * a for o, a in zip(offsets, axis)) / float(axis @ axis), 0.0, 1.0)
            return np.sqrt(sum((o - t * a) ** 2 for o, a in zip(offsets, axis))) / np.float32(radius) - 1.0

        centre = (start + end) / 2.0
        return self._paste(self._box(centre, np.abs(axis) / 2.0 + radius), level)

    def superellipse_level(self, half_width: float, front: float, back: float, exponent: float) -> np.ndarray:
        """Body-outline level set: a superellipse, deeper in front (-y) than behind (+y, the flat back)."""
        half_width, exponent = np.float32(half_width), np.float32(exponent)  # stay in single precision
        depth = np.where(self.y < 0, np.float32(front), np.float32(back))
        r = (np.abs(self.x / half_width) ** exponent + np.abs(self.y / depth) ** exponent) ** (1.0 / exponent)
        return r - 1.0


def _stack(region: np.ndarray, occupancies: list[tuple[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fill ``region`` with structures in priority order; returns their fractions and what is left over."""
    left = region.copy()
    fractions: dict[str, np.ndarray] = {}
    for name, occupancy in occupancies:
        share = left * occupancy
        fractions[name] = fractions.get(name, 0.0) + share
        left = left - share
    return fractions, left


@dataclass
class _Tumour:
    """One drawn tumour: shape, composition and kinetics (minutes, mm)."""

    centre: tuple[float, ...]
    radius: float
    necrosis_fraction: float
    capsule_mm: float  # 0: no capsule
    pd: float
    t1: float
    t2: float
    arterial_flow: float
    distribution_volume: float

    def meta(self) -> dict:
        return {
            "centre_mm": [round(float(c), 2) for c in self.centre],
            "diameter_mm": round(2 * self.radius, 1),
            "necrosis_fraction": round(self.necrosis_fraction, 3),
            "capsule": self.capsule_mm > 0,
            "capsule_thickness_mm": round(self.capsule_mm, 2),
            "pd": round(self.pd, 3),
            "t1_ms": round(self.t1, 1),
            "t2_ms": round(self.t2, 1),
            "ka_per_min": round(self.arterial_flow, 4),
            "kp_per_min": 0.0,
            "k2_per_min": round(self.arterial_flow / self.distribution_volume, 4),
            "distribution_volume": round(self.distribution_volume, 4),
        }


@dataclass
class _Model:
    """A simulated subject before imaging: grid, tissue fractions, masks (as occupancies) and parameters."""

    space: _Space
    origin: tuple[float, ...]
    fractions: dict[str, np.ndarray]
    body: np.ndarray
    liver: np.ndarray
    tumor: np.ndarray
    necrosis: np.ndarray
    tumours: list[_Tumour]
    kinetics: dict[str, float]


class LiverPhantom:
    """Multiphase liver MRI (late arterial, portal venous, T2) of an upper abdomen with MMHCC, from a seed.

    Args:
        dims: 2 for one axial slice through the liver hilum, 3 for a stack of axial slices centred on it.
        size: in-plane matrix (size x size), 16 to 1024. Default 256 in 2D, 128 in 3D (3D is kept fast).
        spacing: in-plane pixel size, mm. Default 1.5 in 2D, 3.0 in 3D: both cover a 384 mm field of view.
        slices: number of slices (3D only); ``size x size x slices`` is at most 2**24 voxels.
        slice_spacing: slice distance, mm (3D only).
        tumor_probability: chance that a case has tumours; 0 gives healthy livers.
        n_tumors: (min, max) number of tumours in a case with tumours.
        arterial_time_min: late arterial acquisition time, minutes on the time axis of the Parker AIF (first-pass
            peak at 0.17 min). The default 0.35 corresponds to ~35 s after the start of injection.
        portal_time_min: portal venous acquisition time, same axis; the default 1.0 is ~70 s after injection.
            Viable HCC is guaranteed brighter than liver on the arterial and darker on the portal phase (for
            every parameter draw) at the default times; other times give other, physically consistent, contrasts.
        snr: signal-to-noise ratio of the brightest tissue on every series.

    Calling the phantom with a seed returns a :class:`PhantomCase` whose ``images`` hold ``sequences`` and
    whose ``masks`` hold ``masks`` plus the extra ``necrosis`` mask (necrotic part of ``tumor``).
    """

    organ = "liver"
    sequences = ("t1fs_arterial", "t1fs_portal", "t2")
    masks = ("liver", "tumor")
    extra_masks = ("necrosis",)
    lesion_mask = "tumor"  # the mask tools outline and sample lesions from

    def __init__(
        self,
        dims: int = 2,
        size: int | None = None,
        spacing: float | None = None,
        slices: int = 32,
        slice_spacing: float = 5.0,
        tumor_probability: float = 1.0,
        n_tumors: tuple[int, int] = (1, 2),
        arterial_time_min: float = ARTERIAL_TIME_MIN,
        portal_time_min: float = PORTAL_TIME_MIN,
        snr: float = 30.0,
    ):
        if not _is_int(dims) or dims not in (2, 3):
            raise InputError(f"dims must be 2 or 3, got {dims!r}")
        size = (256 if dims == 2 else 128) if size is None else size
        spacing = (1.5 if dims == 2 else 3.0) if spacing is None else spacing
        integer(size, "size", 16, MAX_SIZE)
        integer(slices, "slices", 2, MAX_SIZE)
        if dims == 3:
            check_voxels((size, size, slices), "size x size x slices")
        number(spacing, "spacing", 0, low_open=True)
        number(slice_spacing, "slice_spacing", 0, low_open=True)
        number(snr, "snr", 0, low_open=True)
        if not _is_number(tumor_probability) or not 0.0 <= tumor_probability <= 1.0:
            raise InputError(f"tumor_probability must be in [0, 1], got {tumor_probability!r}")
        if (
            not isinstance(n_tumors, (tuple, list))
            or len(n_tumors) != 2
            or not all(_is_int(n) for n in n_tumors)
            or not 1 <= n_tumors[0] <= n_tumors[1] <= 3
        ):
            raise InputError(f"n_tumors must be (min, max) integers with 1 <= min <= max <= 3, got {n_tumors!r}")
        last = float(physics.KINETICS_GRID[-1])
        times = (arterial_time_min, portal_time_min)
        if not all(_is_number(t) for t in times) or not 0.0 < arterial_time_min < portal_time_min <= last:
            raise InputError(
                f"arterial_time_min and portal_time_min must satisfy 0 < arterial < portal <= {last:.2f} min, "
                f"got {arterial_time_min!r} and {portal_time_min!r}"
            )
        self.dims = dims
        self.size = int(size)
        self.spacing = float(spacing)
        self.slices = int(slices)
        self.slice_spacing = float(slice_spacing)
        self.tumor_probability = float(tumor_probability)
        self.n_tumors = (int(n_tumors[0]), int(n_tumors[1]))
        self.phase_times = {"t1fs_arterial": float(arterial_time_min), "t1fs_portal": float(portal_time_min)}
        self.snr = float(snr)

    # ------------------------------------------------------------------------------------------------------

    def __call__(self, seed: int) -> PhantomCase:
        """Simulate the case of ``seed`` (a non-negative integer)."""
        model = self._model(seed)
        images = self._images(model)
        liver = model.liver >= 0.5
        tumor = model.tumor & liver
        masks = {
            "liver": liver.astype(np.uint8),
            "tumor": tumor.astype(np.uint8),
            "necrosis": (model.necrosis & tumor).astype(np.uint8),
        }
        meta = {
            "seed": int(seed),
            "organ": self.organ,
            "n_tumors": len(model.tumours),
            "tumors": [t.meta() for t in model.tumours],
            "liver_kinetics": {k: round(v, 4) for k, v in model.kinetics.items()},
            "phase_times_min": dict(self.phase_times),
            "extra_masks": list(self.extra_masks),
        }
        return PhantomCase(images, masks, model.space.spacing, model.origin, np.eye(self.dims), meta)

    def tissue_fractions(self, seed: int) -> dict[str, np.ndarray]:
        """The ground-truth anatomy behind case ``seed``: tissue name -> fraction map on the case grid.

        Fractions of a voxel sum to at most 1 (the rest is air or signal-free cortical bone). Tumour tissue
        is ``tumor_1``, ``tumor_2``... (viable), ``necrosis`` and ``capsule``; organ labels beyond the two
        masks (spleen, kidneys, vessels...) can be derived from these maps.
        """
        return self._model(seed).fractions

    def _model(self, seed: int) -> _Model:
        """Everything about case ``seed`` except the images (and the noise drawn for them)."""
        if not _is_int(seed) or seed < 0:
            raise InputError(f"seed must be a non-negative integer, got {seed!r}")
        rng = np.random.default_rng(int(seed))
        space, origin = self._space(rng)
        fractions, body, liver = self._anatomy(space)
        kinetics = {k: float(rng.uniform(*v)) for k, v in KINETIC_RANGES.items() if not k.startswith("hcc_")}
        # Tumours are drawn last, so one seed gives the same subject with or without them.
        tumours = self._draw_tumours(space, liver >= 0.5) if rng.random() < self.tumor_probability else []
        tumor, necrosis = self._place_tumours(space, fractions, tumours)
        return _Model(space, origin, fractions, body, liver, tumor, necrosis, tumours, kinetics)

    def _space(self, rng: np.random.Generator) -> tuple[_Space, tuple[float, ...]]:
        """Grid centred on the body at the level of the liver hilum (z = 0), and its origin."""
        shape = (self.size, self.size) + ((self.slices,) if self.dims == 3 else ())
        spacing = (self.spacing, self.spacing) + ((self.slice_spacing,) if self.dims == 3 else ())
        origin = tuple(-(n - 1) / 2.0 * s for n, s in zip(shape, spacing))
        axes = [o + s * np.arange(n) for o, s, n in zip(origin, spacing, shape)]
        return _Space(axes, spacing, rng), origin

    # ------------------------------------------------------------------------------------------------------
    # Anatomy
    # ------------------------------------------------------------------------------------------------------

    def _anatomy(self, space: _Space) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Tissue fractions of a healthy subject, the body occupancy and the whole-liver fraction."""
        rng = space.rng
        # Abdominal cavity (half-width, depth in front of and behind the centre), then the wall and the
        # subcutaneous fat around it, so that fat subjects are larger rather than short of room for organs.
        cw, cf, cb = rng.uniform(100.0, 130.0), rng.uniform(75.0, 100.0), rng.uniform(75.0, 95.0)
        exponent = rng.uniform(2.0, 2.6)
        wall = rng.uniform(8.0, 14.0)
        fat = rng.uniform(8.0, 35.0)  # thinner over the back
        cavity = space.occupancy(space.superellipse_level(cw, cf, cb, exponent))
        under_fat = space.occupancy(space.superellipse_level(cw + wall, cf + wall, cb + wall, exponent))
        skin = (cw + wall + fat, cf + wall + fat, cb + wall + 0.6 * fat)
        body = space.occupancy(space.superellipse_level(*skin, exponent))

        fractions, left = _stack(cavity, self._organs(space, cw, cf, cb))
        # Whatever the organs leave is mesentery: fat with bowel loops in it.
        bowel = np.clip(0.5 + space.field(15.0, 1.0), 0.0, 1.0)
        fractions["bowel"] = left * bowel
        fractions["visceral_fat"] = left * (1.0 - bowel)
        fractions["subcutaneous_fat"] = np.clip(body - under_fat, 0.0, 1.0)
        fractions["muscle"] = fractions["muscle"] + np.clip(under_fat - cavity, 0.0, 1.0)
        fractions.pop("cortical_bone")  # cortical bone gives no signal
        # Adult lumbar marrow is about half fat (MR spectroscopy: Griffith et al., Radiology 2005;236:945-951).
        marrow, fat_share = fractions.pop("marrow"), float(rng.uniform(0.35, 0.55))
        fractions["marrow_fat"] = marrow * fat_share
        fractions["marrow_water"] = marrow * (1.0 - fat_share)
        liver = fractions.pop("liver")
        fractions.update(self._intrahepatic_vessels(space, liver))
        return fractions, body, liver

    @staticmethod
    def _organs(space: _Space, cw: float, cf: float, cb: float) -> list[tuple[str, np.ndarray]]:
        """Organ occupancies in priority order, placed relative to the cavity (half-width cw, depths cf, cb)."""
        rng = space.rng

        def scale():
            return rng.uniform(0.85, 1.15)

        def jitter(width=10.0):  # bounded, so every organ of the slice stays where anatomy puts it
            return rng.uniform(-width, width)

        rv = rng.uniform(15.0, 19.0)  # vertebral body AP radius
        yv = cb - 50.0 - rv  # the posterior elements and paraspinal muscles fill the 50 mm behind it
        vertebra = (0.0, yv)
        ra = rng.uniform(9.0, 12.0)
        aorta = (0.8 * rv + 0.3 * ra, yv - rv - ra - 3.0)
        ivc = (-1.15 * rv - 10.0 + jitter(5.0), yv - rv - 12.0)
        hilum = (-0.15 * cw + jitter(), ivc[1] - 20.0, 15.0)
        confluence = (0.05 * cw + jitter(), ivc[1] - 15.0, -40.0)
        kidney_radii = np.array([28.0, 20.0, 55.0]) * scale()
        # The right kidney sits lower than the left (the liver above it); both upper poles reach the hilum level.
        right_kidney = (-0.5 * cw + jitter(), yv + 5.0 + jitter(), -28.0 + jitter(8.0))
        left_kidney = (0.5 * cw + jitter(), yv + 5.0 + jitter(), -18.0 + jitter(8.0))
        spleen = (0.7 * cw + jitter(), 0.35 * cb + jitter(), 15.0 + jitter(10.0))
        pancreas = (0.25 * cw + jitter(), aorta[1] - ra - 8.0, -10.0 + jitter(8.0))
        liver_scale = scale()
        # The right lobe is generous on purpose: the cavity clips it, so it moulds to the wall as a real liver does.
        right_lobe = (-0.45 * cw + jitter(), 0.05 * cb + jitter(), 25.0 + jitter(10.0))
        left_lobe = (0.05 * cw + jitter(), -0.65 * cf + jitter(), 35.0 + jitter(10.0))
        right_radii = np.array([0.7 * cw, 0.55 * (cf + cb), 95.0]) * liver_scale
        left_radii = np.array([0.45 * cw, 0.3 * cf, 60.0]) * liver_scale

        occupancies = [
            ("aorta", space.ellipsoid(aorta, (ra, ra))),
            ("ivc", space.ellipsoid(ivc, (13.0, 9.0))),
            ("portal_vein", space.tube(hilum, confluence, rng.uniform(6.0, 8.0))),
            ("marrow", space.ellipsoid(vertebra, (1.15 * rv - 2.0, rv - 2.0))),
            ("cortical_bone", space.ellipsoid(vertebra, (1.15 * rv, rv))),
        ]
        for side in (-1, 1):
            occupancies.append(("muscle", space.ellipsoid((side * (0.6 * rv + 18.0), cb - 18.0), (24.0, 20.0))))
            # Psoas: a cone that starts below the hilum and widens caudally.
            psoas = (side * (1.15 * rv + 14.0), yv - 2.0, -150.0)
            occupancies.append(("muscle", space.ellipsoid(psoas, (20.0, 18.0, 130.0))))
        for side, centre in ((-1, right_kidney), (1, left_kidney)):
            # The renal hilum faces antero-medially; the long axis runs postero-medial to antero-lateral.
            angle = -side * 45.0 + jitter(10.0)
            sinus = (centre[0] - side * 0.5 * kidney_radii[1], centre[1] - 0.3 * kidney_radii[1], centre[2])
            occupancies += [
                ("renal_sinus_fat", space.ellipsoid(sinus, kidney_radii * 0.4, angle)),
                ("kidney_medulla", space.ellipsoid(centre, kidney_radii * 0.72, angle)),
                ("kidney_cortex", space.ellipsoid(centre, kidney_radii, angle)),
            ]
        occupancies += [
            ("spleen", space.ellipsoid(spleen, np.array([55.0, 22.0, 60.0]) * scale(), -55.0 + jitter())),
            ("pancreas", space.ellipsoid(pancreas, np.array([50.0, 10.0, 16.0]) * scale(), 20.0 + jitter())),
            (
                "liver",
                np.maximum(space.ellipsoid(right_lobe, right_radii), space.ellipsoid(left_lobe, left_radii)),
            ),
        ]
        return occupancies

    @staticmethod
    def _intrahepatic_vessels(space: _Space, liver: np.ndarray) -> dict[str, np.ndarray]:
        """Split the liver into parenchyma and intrahepatic (portal and hepatic venous) vessels."""
        # Vessels run where two independent smooth fields both cross zero: curves in 3D, dots and short segments
        # in a 2D slice. The threshold keeps ~4 % of the liver vascular: P(|f| < t) = 1 - exp(-t^2/2) for two
        # independent unit normals.
        vessels = space.occupancy(np.hypot(space.field(10.0, 1.0), space.field(10.0, 1.0)) - 0.3)
        return {"liver": liver * (1.0 - vessels), "hepatic_vessels": liver * vessels}

    # ------------------------------------------------------------------------------------------------------
    # Tumours
    # ------------------------------------------------------------------------------------------------------

    def _draw_tumours(self, space: _Space, liver_mask: np.ndarray) -> list[_Tumour]:
        """Draw 1..n large tumours centred well inside the liver."""
        rng = space.rng
        if not liver_mask.any():
            return []
        depth = _depth(liver_mask, space.spacing)
        tumours = []
        for _ in range(rng.integers(self.n_tumors[0], self.n_tumors[1] + 1)):
            radius = float(rng.uniform(*TUMOR_DIAMETER_MM)) / 2.0
            # Centre at least half a radius deep so most of the mass lies in the liver (clipped there anyway).
            candidates = np.flatnonzero(depth >= min(0.5 * radius, 0.8 * depth.max()))
            index = np.unravel_index(rng.choice(candidates), liver_mask.shape)
            centre = tuple(float(a[i]) for a, i in zip(space.axes, index))
            has_capsule = rng.random() < CAPSULE_PROBABILITY
            tumours.append(
                _Tumour(
                    centre=centre,
                    radius=radius,
                    necrosis_fraction=float(rng.uniform(0.0, MAX_NECROSIS_FRACTION)),
                    capsule_mm=float(rng.uniform(2.0, 3.5)) if has_capsule else 0.0,
                    pd=float(rng.uniform(*HCC_RELAXATION["pd"])),
                    t1=float(rng.uniform(*HCC_RELAXATION["t1"])),
                    t2=float(rng.uniform(*HCC_RELAXATION["t2"])),
                    arterial_flow=float(rng.uniform(*KINETIC_RANGES["hcc_arterial_flow_per_min"])),
                    distribution_volume=float(rng.uniform(*KINETIC_RANGES["hcc_distribution_volume"])),
                )
            )
        return tumours

    @staticmethod
    def _place_tumours(
        space: _Space, fractions: dict[str, np.ndarray], tumours: list[_Tumour]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Carve the tumours out of the liver parenchyma (in place) and return the tumour and necrosis masks."""
        liver_total = fractions["liver"] + fractions["hepatic_vessels"]
        free = np.ones(space.shape, np.float32)  # a voxel belongs to the first tumour that claims it
        tumour_total = np.zeros(space.shape, np.float32)
        necrosis_total = np.zeros(space.shape, np.float32)
        for index, tumour in enumerate(tumours, start=1):
            offsets = [space.x - tumour.centre[0], space.y - tumour.centre[1]]
            if len(tumour.centre) == 3:
                offsets.append(space.z - tumour.centre[2])
            # Lobulated outline: a sphere whose radius is modulated by a smooth field of half its size.
            level = np.sqrt(sum(o**2 for o in offsets)) / tumour.radius - 1.0 + space.field(tumour.radius / 2.0, 0.15)
            occupancy = space.occupancy(level) * free
            core = space.occupancy(level + tumour.capsule_mm / tumour.radius) * free
            necrosis = core * _necrosis(space, level, occupancy * liver_total >= 0.5, tumour)
            fractions[f"tumor_{index}"] = liver_total * (core - necrosis)
            fractions["necrosis"] = fractions.get("necrosis", 0.0) + liver_total * necrosis
            fractions["capsule"] = fractions.get("capsule", 0.0) + liver_total * (occupancy - core)
            tumour_total += occupancy
            necrosis_total += necrosis
            free = free - occupancy
        fractions["liver"] = fractions["liver"] * free
        fractions["hepatic_vessels"] = fractions["hepatic_vessels"] * free
        return tumour_total >= 0.5, necrosis_total >= 0.5

    # ------------------------------------------------------------------------------------------------------
    # Signal
    # ------------------------------------------------------------------------------------------------------

    def _images(self, model: _Model) -> dict[str, np.ndarray]:
        """Render every series of ``model`` and pass it through the acquisition."""
        space, fractions, tumours = model.space, model.fractions, model.tumours
        tissues = dict(TISSUES)
        for index, tumour in enumerate(tumours, start=1):
            tissues[f"tumor_{index}"] = Tissue(tumour.pd, tumour.t1, tumour.t2, heterogeneity=HCC_HETEROGENEITY)
        spin_echo_tissues = {**tissues, **{k: replace(tissues[k], pd=tissues[k].pd * FLOW_VOID) for k in FLOWING_BLOOD}}
        texture = {
            name: space.field(6.0 if name.startswith("tumor_") else 15.0, tissues[name].heterogeneity)
            for name in fractions
            if tissues[name].heterogeneity > 0
        }
        curves = _concentration_curves(tumours, model.kinetics)
        # Viable MMHCC enhances unevenly (hypoxic, ischaemic areas): +-20 % smooth variation of its uptake.
        uptake = np.clip(1.0 + space.field(10.0, 0.2), 0.2, None) if tumours else 1.0
        # Torso phased-array shading: +-10 % varying over ~20 cm.
        acquisition = Acquisition(snr=self.snr, bias=0.1, bias_scale=200.0 / self.spacing)
        images = {}
        for key in self.sequences:
            if key in self.phase_times:
                t = self.phase_times[key]
                concentration = {
                    # float32 scalars keep the rendering in single precision (a 0-d float64 would upcast).
                    name: np.float32(physics.sample(curve, t)) * (uptake if name.startswith("tumor_") else 1.0)
                    for name, curve in curves.items()
                }
                signal = physics.render(SEQUENCES[key], fractions, tissues, concentration, texture)
            else:
                signal = physics.render(SEQUENCES[key], fractions, spin_echo_tissues, None, texture)
            images[key] = acquisition(signal, space.rng, model.body >= 0.5)
        return images


def _necrosis(space: _Space, level: np.ndarray, inside: np.ndarray, tumour: _Tumour) -> np.ndarray:
    """Soft necrosis indicator: the deepest ``necrosis_fraction`` of the tumour, with an irregular border."""
    if tumour.necrosis_fraction <= 0.0 or not inside.any():
        return np.zeros(space.shape, np.float32)
    score = -level + space.field(tumour.radius / 3.0, 0.2)  # depth into the tumour, roughened
    threshold = float(np.quantile(score[inside], 1.0 - tumour.necrosis_fraction))
    # score is ~ depth / radius, so (score - threshold) * radius is a distance in mm: a one-pixel soft edge.
    return np.clip(0.5 + (score - threshold) * tumour.radius / space.spacing[0], 0.0, 1.0)


def _depth(mask: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distance (mm) from each voxel of ``mask`` to the outside, computed on the mask's bounding box only."""
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    # One voxel of background around the box keeps the distances exact: everything outside it is background.
    depth = np.zeros(mask.shape)
    depth[box] = ndimage.distance_transform_edt(np.pad(mask[box], 1), sampling=spacing)[(slice(1, -1),) * mask.ndim]
    return depth


def _concentration_curves(tumours: list[_Tumour], kinetics: dict[str, float]) -> dict[str, np.ndarray]:
    """Gd concentration curves (mM, on ``KINETICS_GRID``) of every enhancing structure."""
    arterial = physics.plasma_aif()
    portal = portal_venous_input(kinetics["portal_delay_min"], kinetics["portal_dispersion_min"])
    whole_blood = 1.0 - physics.HEMATOCRIT  # vessels hold whole blood; the agent stays in plasma
    curves = {
        "aorta": arterial * whole_blood,
        "portal_vein": portal * whole_blood,
        "hepatic_vessels": portal * whole_blood,
        "ivc": physics.delayed(arterial, CAVAL_DELAY_MIN, CAVAL_DISPERSION_MIN) * whole_blood,
        "liver": liver_concentration(
            portal,
            kinetics["liver_arterial_fraction"],
            kinetics["liver_flow_per_min"],
            kinetics["liver_distribution_volume"],
        ),
        "spleen": physics.dual_input_one_compartment(
            arterial, portal, SPLEEN_FLOW_PER_MIN, 0.0, SPLEEN_FLOW_PER_MIN / SPLEEN_DISTRIBUTION_VOLUME
        ),
        "capsule": physics.extended_tofts(CAPSULE_KTRANS, CAPSULE_VE, 0.0, portal),
        **{name: physics.extended_tofts(*params, cp=arterial) for name, params in TOFTS.items()},
    }
    for index, tumour in enumerate(tumours, start=1):
        curves[f"tumor_{index}"] = hcc_concentration(tumour.arterial_flow, tumour.distribution_volume)
    return curves


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
