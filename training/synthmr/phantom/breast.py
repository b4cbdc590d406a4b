"""Breast DCE-MRI phantom: prone breasts, chest wall and thorax, with benign and malignant enhancing lesions.

Procedural anatomy (docs/design.md, *The phantom*). Every structure is a shape with a signed distance in patient
millimetres;
distances become partial-volume tissue fractions, fractions are rendered per sequence with the signal equations
of :mod:`synthmr.phantom.physics`, contrast uptake follows the extended Tofts model driven by the Parker AIF,
and the scanner adds a receive-bias field, blur and Rician noise.

Geometry: arrays are ``(x, y[, z])`` on an identity LPS grid, so x runs to the patient's left, y posterior and
z superior. Axial slices look like those of a prone exam in a dedicated breast coil: the pendant breasts fill the
front of the image (small y); behind them lie the pectoral muscle, the ribs and sternum, then the front of the
thorax (heart, lungs, descending aorta, spine), which the posterior edge of the image cuts through.

References
----------
- Edden et al. "Longitudinal and multi-echo transverse relaxation times of normal breast tissue at 3 Tesla",
  JMRI 2010;32:982-987: T1 and multi-echo T2 of fat (423 / 154 ms) and fibroglandular tissue (FGT, 1680 / 71 ms).
- Henkelman et al. "Why fat is bright in RARE and fast spin-echo imaging", JMRI 1992;2:533-540.
- de Bazelaire et al. "MR imaging relaxation times of abdominal and pelvic tissues measured in vivo at 3.0 T",
  Radiology 2004;230:652-659: skeletal muscle.
- Stanisz et al. "T1, T2 relaxation and magnetization transfer in tissue at 3T", MRM 2005;54:507-512: blood,
  myocardium.
- Yu, Xue, Song. "Comparison of lung T2* during free-breathing at 1.5 T and 3.0 T with ultrashort echo time
  imaging", MRM 2011;66:248-254: lung T2* 0.74 ms at 3 T.
- Meng et al. "The diagnostic performance of quantitative mapping in breast cancer patients: a preliminary study
  using synthetic MRI", Cancer Imaging 2020;20:88: cancers T1 1612 ms, T2 81 ms, benign lesions lower T1.
- Liu et al. "Role of quantitative analysis of T2 relaxation time in differentiating benign from malignant
  breast lesions", J Int Med Res 2018;46:1928-1935: T2 83 ms malignant vs 95 ms benign.
- Kuhl et al. "Do T2-weighted pulse sequences help in the differential diagnosis of enhancing lesions in
  dynamic breast MRI?", JMRI 1999;9:187-196: fibroadenomas are T2-bright, cancers are not.
- Kuhl et al. "Dynamic breast MR imaging: are signal intensity time course data useful for differential
  diagnosis of enhancing lesions?", Radiology 1999;211:101-110: curve types I (persistent), II (plateau),
  III (washout) and their shares among benign (83.0 / 11.5 / 5.5 %) and malignant (8.9 / 33.6 / 57.4 %) lesions.
- "Quantitative perfusion parameters of benign inflammatory breast pathologies: a descriptive study", Clin
  Imaging 2020;68:249-256: ve of benign masses 0.48 and of invasive ductal cancers 0.31.
- Tofts et al., JMRI 1999;10:223-232 and Parker et al., MRM 2006;56:993-1000 (see physics.py).
- Schabel et al. "Pharmacokinetic mapping for lesion classification in dynamic breast MRI", JMRI
  2010;31:1371-1378: malignant lesions have higher Ktrans and kep than benign ones.
- Kuhl et al. "Healthy premenopausal breast parenchyma in dynamic contrast-enhanced MR imaging of the breast:
  normal contrast medium enhancement and cyclical-phase dependency", Radiology 1997;203:137-144: background
  parenchymal enhancement is slow and progressive.
- Haaf et al. "Cardiac T1 mapping and extracellular volume (ECV) in clinical practice: a comprehensive review",
  JCMR 2016;18:89: myocardial ECV ~ 0.25.
- Saha et al. "A machine learning approach to radiogenomics of breast cancer: a study of 922 subjects and 529
  DCE-MRI features", Br J Cancer 2018;119:508-516 (Duke-Breast-Cancer-MRI): clinical fat-suppressed 3D
  gradient-echo DCE protocols (TR ~ 3.5-5.5 ms, TE ~ 1.3-2.7 ms, flip 7-12 degrees).
- Wang et al. "Breast tumor movements analysis using MRI scans in prone and supine positions", Sci Rep
  2020;10:4858: the prone breast hangs away from the chest wall.
- Haller, Kramer, Lietman. "Use of CT scans in selection of patients for pectus excavatum surgery", J Pediatr
  Surg 1987;22:904-906: chest width over sternum-to-spine depth ~2.5 in normal chests.
- Griffith et al. "Vertebral bone mineral density, marrow perfusion, and fat content in healthy men and men with
  osteoporosis: dynamic contrast-enhanced MR imaging and MR spectroscopy", Radiology 2005;236:945-951: adult
  marrow is roughly half fat.
- Rooney et al. "Magnetic field and tissue dependencies of human brain longitudinal 1H2O relaxation in vivo",
  MRM 2007;57:308-318: CSF T1 ~4.4 s at 3 T.
- ACR BI-RADS Atlas, 5th ed., 2013, MRI lexicon: spiculated mass margins.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import lru_cache, reduce

import numpy as np
from scipy import ndimage, stats
from scipy.spatial.transform import Rotation

from synthmr.errors import InputError
from synthmr.phantom import physics
from synthmr.phantom._arguments import MAX_SIZE, check_voxels, integer, number
from synthmr.phantom.case import PhantomCase
from synthmr.phantom.physics import Acquisition, SpinEcho, SpoiledGradientEcho, Tissue
from synthmr.phantom.validate import Figure, share_range

# ----------------------------------------------------------------------------------------------------------
# Tissues at 3 T. PD is relative to water (fat and blood water-rich, dermis and lung poor in protons).
# ----------------------------------------------------------------------------------------------------------

TISSUES = {
    # Fat and fibroglandular tissue (FGT): T1 and multi-echo T2 of Edden et al. 2010 at 3 T (fat 423/154 ms,
    # FGT 1680/71 ms). The multi-echo T2 rather than the single-echo one (~53 ms): the clinical T2w series is a
    # fast spin echo, whose echo train suppresses J-coupling dephasing and keeps fat bright (Henkelman et al.
    # 1992). At TE 2 ms the choice is immaterial for the gradient echoes. PD: fat and FGT are water- and
    # lipid-rich soft tissue, PD 0.8-0.9 of water (assumed; no breast PD measurement was found).
    "fat": Tissue(pd=0.9, t1=423.0, t2=154.0, fat=True, heterogeneity=0.03),
    "fgt": Tissue(pd=0.8, t1=1680.0, t2=71.0, heterogeneity=0.06),
    # No 3 T relaxometry of breast skin was found: dermis is collagen-dense and water-poor, so it gets a short
    # T2 and an intermediate T1 (an assumption, visible only as a thin rim).
    "skin": Tissue(pd=0.7, t1=1000.0, t2=35.0),
    "muscle": Tissue(pd=0.8, t1=898.0, t2=29.0),  # de Bazelaire et al. 2004
    # Blood: T1 1932 ms (Stanisz et al. 2005). Its T2 (275 ms at rest) is replaced by a short apparent T2: blood
    # flowing through the slice between excitation and refocusing gives no spin echo (flow void, Bradley, AJR
    # 1988;150:983-994), so the heart and vessels are dark on the fast spin echo. At TE 2 ms this costs the
    # gradient echoes < 10 %, and they keep their bright, enhancing blood.
    "blood": Tissue(pd=0.9, t1=1932.0, t2=25.0, heterogeneity=0.0),
    "myocardium": Tissue(pd=0.8, t1=1471.0, t2=47.0),  # Stanisz et al. 2005
    # Haematopoietic (water) part of rib, sternal and vertebral marrow, assumed muscle-like as in the liver
    # phantom (measurements give only the fat-water mixture); the fat part is rendered as fat (_Layout.marrow_fat).
    "marrow": Tissue(pd=0.75, t1=1000.0, t2=45.0),
    # Cerebrospinal fluid in the spinal canal: free water, T1 ~4.4 s at 3 T (Rooney et al., MRM 2007;57:308-318)
    # and T2 well over 1 s; the exact T2 is immaterial: bright on T2w, dark on T1w.
    "csf": Tissue(pd=1.0, t1=4400.0, t2=1500.0, heterogeneity=0.0),
    # Lung is ~80 % air (low PD) and its T2* is 0.74 ms at 3 T (Yu et al. 2011): dark on every sequence here.
    # T1 ~1.3 s; any value in the published range gives the same near-zero signal.
    "lung": Tissue(pd=0.15, t1=1300.0, t2=0.74, heterogeneity=0.0),
}


@dataclass(frozen=True)
class LesionRelaxation:
    """Population of one lesion class's relaxation times: each lesion draws its own T1 and T2 from normal
    distributions truncated to ``t1_bounds`` and ``t2_bounds`` (ms), so lesions differ as in the cited series."""

    pd: float
    t1: tuple[float, float]  # mean, standard deviation (ms)
    t2: tuple[float, float]
    t1_bounds: tuple[float, float]
    t2_bounds: tuple[float, float]
    heterogeneity: float

    @property
    def mean(self) -> Tissue:
        """The class's typical lesion."""
        return Tissue(pd=self.pd, t1=self.t1[0], t2=self.t2[0], heterogeneity=self.heterogeneity)

    def draw(self, rng: np.random.Generator) -> Tissue:
        def truncated(mean_sd, bounds):
            mean, sd = mean_sd
            low, high = ((b - mean) / sd for b in bounds)
            return float(stats.truncnorm.rvs(low, high, loc=mean, scale=sd, random_state=rng))

        return Tissue(
            pd=self.pd,
            t1=truncated(self.t1, self.t1_bounds),
            t2=truncated(self.t2, self.t2_bounds),
            heterogeneity=self.heterogeneity,
        )


LESION_RELAXATION = {
    # Cancers: T1 1612 +- 216 ms, T2 81 +- 8 ms (Meng et al. 2020, synthetic MRI of 48 cancers), within 2 SD.
    # Against FGT (T2 71 ms) most cancers are then a little brighter on T2w, never as bright as fat, and on the
    # fat-suppressed T1 close to FGT: "most invasive cancers are not T2-hyperintense" (Kuhl et al. JMRI 1999).
    "malignant": LesionRelaxation(
        pd=0.85, t1=(1612.0, 216.0), t2=(81.0, 8.0), t1_bounds=(1180.0, 2044.0), t2_bounds=(65.0, 97.0),
        heterogeneity=0.05,
    ),
    # Benign masses: T2 95.5 +- 26.5 ms (Liu et al. 2018, 21 benign lesions), truncated below at the FGT T2 of
    # 71 ms, since fibroadenomas, the commonest benign mass, are T2-bright (Kuhl et al. JMRI 1999), and above at
    # 2 SD. T1: Meng et al. 2020 report benign lesions' T1 lower than cancers' without a value we could use;
    # 1400 +- 200 ms is assumed (lower than cancers, the spread of the cancer series).
    "benign": LesionRelaxation(
        pd=0.85, t1=(1400.0, 200.0), t2=(95.5, 26.5), t1_bounds=(1000.0, 1800.0), t2_bounds=(71.0, 148.5),
        heterogeneity=0.03,
    ),
}
# PD of lesions: tumours hold more water than the FGT they grow in (cellular, oedematous stroma), so 0.85
# against FGT's 0.8 (assumed; no breast PD measurement was found).
LESION_CLASSES = tuple(LESION_RELAXATION)
# The class's typical lesion, for reference and the class maps of BreastAnatomy.fractions; each lesion is
# rendered with its own draw (BreastLesion.tissue).
TISSUES.update({kind: relaxation.mean for kind, relaxation in LESION_RELAXATION.items()})

# Clinical non-fat-suppressed T2-weighted (fast) spin echo and the fat-suppressed 3D spoiled gradient-echo DCE
# series (Saha et al. 2018 protocols); fat saturation leaves ~10 % of the fat signal.
T2_TSE = SpinEcho(tr=4500.0, te=90.0)
T1_FAT_SAT = SpoiledGradientEcho(tr=4.5, te=2.0, flip_deg=10.0, fat_suppression=0.1)

# ----------------------------------------------------------------------------------------------------------
# Contrast kinetics (extended Tofts, Tofts et al. 1999; rates 1/min)
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KineticRange:
    """Uniform ranges of extended-Tofts parameters (Ktrans 1/min, ve, vp) one kind of tissue is drawn from."""

    ktrans: tuple[float, float]
    ve: tuple[float, float]
    vp: tuple[float, float]

    def draw(self, rng: np.random.Generator) -> dict[str, float]:
        """One parameter set, uniform in each range."""
        return {name: float(rng.uniform(*getattr(self, name))) for name in ("ktrans", "ve", "vp")}


# Kinetic curve types of enhancing lesions (Kuhl et al., Radiology 1999;211:101-110): the signal of the last
# phase against the early post-contrast signal. Type I (persistent) rises by >= 10 %, type II (plateau) stays
# within +-10 %, type III (washout) drops by > 10 %. Kuhl et al. read the early peak in the first 2-3 min after
# injection; here it is the first post-contrast phase (1.5 min by default).
CURVE_TYPES = ("I", "II", "III")
CURVE_TYPE_CHANGE = 0.10
# Share of each curve type per class: 165 benign lesions 83.0 / 11.5 / 5.5 %, 101 malignant 8.9 / 33.6 / 57.4 %
# (Kuhl et al. 1999). Each lesion draws its type from its class's shares, so type and class overlap as there.
CURVE_TYPE_SHARES = {"benign": (0.830, 0.115, 0.055), "malignant": (0.089, 0.336, 0.574)}
# A drawn curve keeps this much from the thresholds (design): partial volume with the surrounding FGT, blur and
# noise move the mean of a lesion ROI by a few per cent, and the ROI should still show the drawn type.
CURVE_TYPE_MARGIN = 0.04


def _normalized(shares: tuple[float, ...]) -> np.ndarray:
    """Shares as probabilities (the published percentages are rounded and need not sum to exactly 1)."""
    return np.asarray(shares) / np.sum(shares)


def draw_curve_type(rng: np.random.Generator, kind: str) -> str:
    """One lesion's kinetic curve type, drawn from its class's shares (CURVE_TYPE_SHARES)."""
    return str(rng.choice(CURVE_TYPES, p=_normalized(CURVE_TYPE_SHARES[kind])))


def classify_curve(early: float, late: float) -> str:
    """Kuhl's curve type of a time course from its early post-contrast and its last-phase signal."""
    change = late / early - 1.0
    return "I" if change >= CURVE_TYPE_CHANGE else "III" if change < -CURVE_TYPE_CHANGE else "II"


# With the Parker AIF the curve type is set mostly by kep = Ktrans/ve, the rate of exchange back to plasma:
# slow exchange keeps accumulating (type I), fast exchange follows the falling plasma curve (type III). kep is
# drawn log-uniform in a range per type; each draw is kept only if it shows its type with the margin above.
# The ve ranges hold the mean ve of benign masses (0.48) and invasive ductal cancers (0.31), so malignant
# lesions reach a higher Ktrans at the same kep ("Quantitative perfusion parameters of benign inflammatory
# breast pathologies: a descriptive study", Clin Imaging 2020;68:249-256; Schabel et al. 2010); plasma volume
# is larger in cancers (neoangiogenesis; the vp ranges are assumed).
KEP_BY_CURVE_TYPE = {"I": (0.03, 0.12), "II": (0.2, 0.7), "III": (0.8, 4.0)}
VE_BY_CLASS = {"malignant": (0.2, 0.7), "benign": (0.3, 0.8)}
VP_BY_CLASS = {"malignant": (0.02, 0.08), "benign": (0.005, 0.03)}
# Every lesion enhances by at least 60 % in the first post-contrast phase (design: the phantom simulates
# enhancing lesions, the population of Kuhl et al. 1999; above the 50 % that separates slow from medium initial
# enhancement in the BI-RADS MRI lexicon).
MIN_EARLY_ENHANCEMENT = 0.6
# Relative uptake (_LesionShape.uptake) at which a drawn curve must show its type: the dim core and the bright
# rim of a heterogeneously enhancing lesion both keep the lesion's type.
UPTAKES_CHECKED = (0.4, 1.0, 1.6)
MAX_KINETIC_DRAWS = 2000


def _phase_signals(tissue: Tissue, concentration: np.ndarray) -> np.ndarray:
    """Fat-suppressed T1w signal of ``tissue`` at each Gd concentration (mM)."""
    t1, t2 = physics.gd_relaxation(np.full(concentration.shape, tissue.t1), np.float64(tissue.t2), concentration)
    return T1_FAT_SAT.signal(tissue.pd, t1, t2)


def _shows_curve_type(kinetics: dict, tissue: Tissue, post_times: tuple[float, ...], curve_type: str) -> bool:
    """Whether a lesion of ``tissue`` with these kinetics shows ``curve_type`` (with CURVE_TYPE_MARGIN) at every
    uptake of UPTAKES_CHECKED, and enhances early by MIN_EARLY_ENHANCEMENT at uptake 1."""
    curve = physics.extended_tofts(**kinetics)
    concentration = np.array([0.0] + [physics.sample(curve, t) for t in (post_times[0], post_times[-1])])
    for uptake in UPTAKES_CHECKED:
        pre, early, late = _phase_signals(tissue, uptake * concentration)
        change = late / early - 1.0
        if uptake == 1.0 and early / pre - 1.0 < MIN_EARLY_ENHANCEMENT:
            return False
        if curve_type == "I" and change < CURVE_TYPE_CHANGE + CURVE_TYPE_MARGIN:
            return False
        if curve_type == "II" and abs(change) > CURVE_TYPE_CHANGE - CURVE_TYPE_MARGIN:
            return False
        if curve_type == "III" and change > -CURVE_TYPE_CHANGE - CURVE_TYPE_MARGIN:
            return False
    return True


def _kinetic_proposal(kind: str, curve_type: str, kep_unit: float, ve_unit: float, vp_unit: float) -> dict:
    """Extended-Tofts parameters from unit coordinates in the (log kep, ve, vp) ranges of a class and type."""
    low, high = np.log(KEP_BY_CURVE_TYPE[curve_type])
    kep = float(np.exp(low + (high - low) * kep_unit))
    ve = VE_BY_CLASS[kind][0] + (VE_BY_CLASS[kind][1] - VE_BY_CLASS[kind][0]) * ve_unit
    vp = VP_BY_CLASS[kind][0] + (VP_BY_CLASS[kind][1] - VP_BY_CLASS[kind][0]) * vp_unit
    return {"ktrans": kep * ve, "ve": ve, "vp": vp}


def draw_kinetics(
    rng: np.random.Generator, kind: str, curve_type: str, tissue: Tissue, post_times: tuple[float, ...]
) -> dict[str, float]:
    """Extended-Tofts ``ktrans``, ``ve``, ``vp`` of a ``kind`` lesion that shows ``curve_type`` on ``post_times``."""
    for _ in range(MAX_KINETIC_DRAWS):
        kinetics = _kinetic_proposal(kind, curve_type, *rng.random(3))
        if _shows_curve_type(kinetics, tissue, post_times, curve_type):
            return {name: float(value) for name, value in kinetics.items()}
    raise InputError(f"post_times_min {post_times!r}: no {kind} lesion shows a type {curve_type} curve")


@lru_cache(maxsize=16)
def _curve_types_drawable(post_times: tuple[float, ...]) -> bool:
    """Whether every class can show every curve type on these phase times: on a grid over each parameter box,
    at least 3 points of 75 pass (>= 4 % of draws, so draw_kinetics ends within MAX_KINETIC_DRAWS)."""
    units = list(itertools.product(np.linspace(0, 1, 5), np.linspace(0, 1, 5), np.linspace(0, 1, 3)))
    for kind, relaxation in LESION_RELAXATION.items():
        for curve_type in CURVE_TYPES:
            passed = sum(
                _shows_curve_type(_kinetic_proposal(kind, curve_type, *unit), relaxation.mean, post_times, curve_type)
                for unit in units
            )
            if passed < 3:
                return False
    return True


# Background parenchymal enhancement: slow, progressive and mild (Kuhl et al. 1997); these Ktrans values raise
# the FGT signal by roughly 15-70 % at 6 min (before the patchy spatial modulation), minimal to moderate BPE.
BPE_KINETICS = KineticRange(ktrans=(0.003, 0.02), ve=(0.3, 0.5), vp=(0.0, 0.01))
# Skeletal muscle: low Ktrans and ve, the order of the reference-region values used for muscle in DCE work
# (Yankeelov et al. MRI 2005: Ktrans ~0.1 /min, ve ~0.1).
MUSCLE_KINETICS = {"ktrans": 0.08, "ve": 0.12, "vp": 0.01}
# Myocardium: high flow (Ktrans ~ perfusion 1 ml/g/min times extraction ~0.5), ECV 0.25 (Haaf et al. 2016),
# blood volume ~0.1.
MYOCARDIUM_KINETICS = {"ktrans": 0.6, "ve": 0.25, "vp": 0.1}
# Red marrow enhances moderately (the values of the liver phantom).
MARROW_KINETICS = {"ktrans": 0.2, "ve": 0.2, "vp": 0.05}

# BI-RADS density categories by fibroglandular fraction (quartiles of the 4th edition).
DENSITY_BANDS = {"a": (0.03, 0.25), "b": (0.25, 0.5), "c": (0.5, 0.75), "d": (0.75, 0.9)}

DEFAULT_FOV_MM = 358.4  # 256 x 1.4 mm, a typical bilateral axial breast field of view
MIN_FOV_MM = 300.0  # both breasts side by side and the chest wall need about this much
LESION_MARGIN_MM = 2.0  # tissue kept between a lesion and the skin, the chest wall or another lesion
# Mass effect: the share of the tissue in a lesion's place that it pushes aside (compressing the FGT and fat
# around it) rather than replaces. A fibroadenoma grows expansively and pushes its surroundings into a
# compressed rim (circumscribed margin, BI-RADS MRI lexicon); an invasive cancer infiltrates and replaces
# part of the tissue it grows into. The values are assumed (no measurement of displacement was found).
MASS_EFFECT = {"benign": 1.0, "malignant": 0.5}
MASS_EFFECT_REACH = 3.0  # the displacement fades out between 2 and 3 lesion radii from the centre


# ----------------------------------------------------------------------------------------------------------
# Geometry: signed distances in mm (negative inside) on an open grid of patient coordinates
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    """The simulation grid, always 3D: a 2D (``planar``) case is one axial slice at z = 0."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    planar: bool

    @property
    def voxel_mm(self) -> float:
        """Width of the partial-volume ramp: the in-plane spacing in 2D, the mean voxel size in 3D."""
        return self.spacing[0] if self.planar else float(np.prod(self.spacing) ** (1 / 3))

    def axes(self, box: tuple[slice, ...] | None = None) -> tuple[np.ndarray, ...]:
        """Broadcastable x, y, z coordinate arrays (mm) of the grid or of a box of it.

        Single precision (0.01 mm at 200 mm, far below a voxel) halves the memory traffic of the geometry.
        """
        box = box or (slice(None),) * 3
        out = []
        for axis, (n, step, start, part) in enumerate(zip(self.shape, self.spacing, self.origin, box)):
            shape = [1, 1, 1]
            shape[axis] = -1
            out.append((start + step * np.arange(n, dtype=np.float32))[part].reshape(shape))
        return tuple(out)

    def box(self, center: np.ndarray, half_extent: float) -> tuple[slice, ...]:
        """Index slices covering ``center`` +- ``half_extent`` mm, clipped to the grid."""
        low = np.floor((center - half_extent - self.origin) / self.spacing).astype(int)
        high = np.ceil((center + half_extent - self.origin) / self.spacing).astype(int) + 1
        return tuple(slice(max(0, lo), min(n, hi)) for lo, hi, n in zip(low, high, self.shape))

    def position(self, index: np.ndarray) -> np.ndarray:
        """Patient coordinates (mm) of voxel indices, one row per voxel."""
        return np.asarray(self.origin) + np.asarray(index) * np.asarray(self.spacing)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """0 at t <= 0, 1 at t >= 1, with zero slope at both ends: a seamless blend."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ramp(distance: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume fraction of a shape from the signed distance of a voxel centre to its surface."""
    return np.clip(0.5 - distance / width, 0.0, 1.0)


def _smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Union of two shapes with a fillet of radius ~k mm (polynomial smooth minimum of the distances), which
    rounds the fold where a breast meets the chest."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


@dataclass(frozen=True)
class _Bumps:
    """Smooth random radial modulation of a star-shaped body: 1 + sum_k a_k exp(kappa (u . n_k - 1)).

    ``u`` is the unit direction from the centre; each term is a lobe of angular width ~1/sqrt(kappa) around
    ``n_k``, bulging out (a_k > 0) or in (a_k < 0).
    """

    normals: np.ndarray
    amplitudes: np.ndarray
    kappa: float

    @classmethod
    def draw(cls, rng: np.random.Generator, count: int, amplitude: float, kappa: float, dims: int = 3) -> _Bumps:
        normals = rng.standard_normal((count, dims))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return cls(normals, rng.uniform(-amplitude, amplitude, count), kappa)

    def __call__(self, unit: list[np.ndarray]) -> np.ndarray:
        out = 1.0
        for normal, amplitude in zip(self.normals.tolist(), self.amplitudes.tolist()):
            out = out + amplitude * np.exp(self.kappa * (sum(u * n for u, n in zip(unit, normal)) - 1.0))
        # Inward lobes may overlap; the floor keeps the body star-shaped and non-empty in every direction.
        return np.maximum(out, 0.5)


def _star_distance(offsets: list[np.ndarray], radii, bumps: _Bumps | None = None, power: float = 2.0) -> np.ndarray:
    """Signed distance (mm) to an ellipsoid (ellipse for two offsets) whose radius is modulated by ``bumps``.

    Measured along the ray from the centre: exact for a sphere, close enough elsewhere for partial volume.
    ``radii`` may hold arrays (a radius that differs front and back). ``power`` > 2 gives a superellipsoid,
    flatter across its faces (the front of the chest).
    """
    r = np.sqrt(sum(o * o for o in offsets))
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = [o / r for o in offsets]
        if power == 2.0:
            reach = 1.0 / np.sqrt(sum((u / a) ** 2 for u, a in zip(unit, radii)))
        else:
            reach = sum(np.abs(u / a) ** power for u, a in zip(unit, radii)) ** (-1.0 / power)
        if bumps is not None:
            reach = reach * bumps(unit)
        # The centre has no direction; it is inside by the smallest radius.
        return np.where(r > 0, r - reach, -float(min(np.min(a) for a in radii)))


def _body_frame(offsets: list[np.ndarray], rotation: np.ndarray) -> list[np.ndarray]:
    """Offsets expressed along the columns of ``rotation`` (the axes of a rotated body)."""
    # Python floats keep the single precision of the offsets.
    return [sum(float(rotation[j, i]) * offsets[j] for j in range(len(offsets))) for i in range(rotation.shape[1])]


def _planar_rotation(angle: float) -> np.ndarray:
    """Rotation by ``angle`` radians about z, as a 3x3 matrix."""
    return Rotation.from_rotvec([0.0, 0.0, angle]).as_matrix()


@dataclass(frozen=True)
class _Ellipsoid:
    """An ellipsoid, or an elliptic cylinder along z when ``radii`` has two entries, optionally rotated, bumpy or
    superelliptic (``power`` > 2)."""

    center: tuple[float, float, float]
    radii: tuple[float, ...]
    rotation: np.ndarray | None = None
    bumps: _Bumps | None = None
    power: float = 2.0

    def distance(self, axes: tuple[np.ndarray, ...]) -> np.ndarray:
        offsets = [a - float(c) for a, c in zip(axes, self.center)][: len(self.radii)]
        if self.rotation is not None:
            offsets = _body_frame(offsets, self.rotation)
        return _star_distance(offsets, self.radii, self.bumps, self.power)

    def moved(self, dy: float) -> _Ellipsoid:
        """The same shape ``dy`` mm further back."""
        x, y, z = self.center
        return replace(self, center=(x, y + dy, z))


@dataclass(frozen=True)
class _Capsule:
    """A straight tube from ``start`` along unit ``direction``, its radius tapering linearly (vessel, spicule)."""

    start: np.ndarray
    direction: np.ndarray
    length: float
    radius_start: float
    radius_end: float

    def distance(self, axes: tuple[np.ndarray, ...]) -> np.ndarray:
        offsets = [a - float(s) for a, s in zip(axes, self.start)]
        direction = [float(d) for d in self.direction]
        t = np.clip(sum(o * d for o, d in zip(offsets, direction)) / self.length, 0.0, 1.0)
        gap = np.sqrt(sum((o - t * self.length * d) ** 2 for o, d in zip(offsets, direction)))
        return gap - (self.radius_start + (self.radius_end - self.radius_start) * t)

    @property
    def extent(self) -> float:
        """Distance from ``start`` to the farthest point of the tube."""
        return self.length + max(self.radius_start, self.radius_end)

    @property
    def middle(self) -> np.ndarray:
        """Midpoint of the axis; every point of the tube lies within ``length / 2 + radius`` of it."""
        return np.asarray(self.start) + 0.5 * self.length * np.asarray(self.direction)


def _random_direction(rng: np.random.Generator, planar: bool) -> np.ndarray:
    """A random unit vector; in the axial plane for 2D cases, where only in-plane structures are visible."""
    vector = rng.standard_normal(3)
    if planar:
        vector[2] = 0.0
    return vector / np.linalg.norm(vector)


def _random_field(
    shape: tuple[int, ...], spacing: tuple[float, ...], rng: np.random.Generator, sigma_mm: float, amplitude=1.0
) -> np.ndarray:
    """Smooth zero-mean random field with correlation length ``sigma_mm`` along every axis.

    physics.smooth_field works in voxels; on anisotropic (thick-slice) grids the field is drawn on an isotropic
    grid at the finest spacing and resampled, which keeps structures round. Singleton axes are left out.
    """
    used = [s for n, s in zip(shape, spacing) if n > 1]
    fine = min(used)
    if max(used) <= 1.1 * fine:  # near-isotropic: resampling would cost more than the distortion it removes
        fine = float(np.mean(used))
        iso = tuple(shape)
    else:
        iso = tuple(max(2, round(n * s / fine)) if n > 1 else 1 for n, s in zip(shape, spacing))
    field = physics.smooth_field(tuple(n for n in iso if n > 1), rng, sigma_mm / fine, amplitude).reshape(iso)
    if iso != tuple(shape):
        field = ndimage.zoom(field, [n / m for n, m in zip(shape, iso)], order=1, mode="nearest", grid_mode=True)
    return field.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# Anatomy
#
# The axial slice of a prone bilateral exam in a dedicated breast coil: the pendant breasts fill the front of
# the image; behind them lie the pectoral muscle, the chest wall (ribs and intercostal muscle, the sternum in the
# midline) and the front of the thorax: the heart just behind the sternum, the lungs on either side, the aorta
# and the spine behind the heart. The posterior edge of the field of view cuts through the thorax, so the back
# is never imaged. Shapes are drawn in a frame whose y = 0 is the inner surface of the sternum, then the whole
# patient is moved front to back into the field of view (_place).
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Breast:
    """A prone breast: a rounded cone hanging anteriorly from its base on the chest wall.

    An ellipsoid in a frame tilted by ``tilt`` radians about z (the nipple points slightly outwards), deep
    (``depth``) in front of its base and shallow (``back``) behind it, so it roots into the chest wall without
    bulging out behind the torso; its width narrows by up to ``taper`` towards the nipple.
    """

    side: str
    center: tuple[float, float, float]
    half_width: float
    depth: float
    half_height: float
    back: float
    tilt: float
    bumps: _Bumps
    taper: float

    def _frame(self, axes: tuple[np.ndarray, ...]) -> list[np.ndarray]:
        offsets = [a - float(c) for a, c in zip(axes, self.center)]
        return _body_frame(offsets, _planar_rotation(self.tilt))

    def distance(self, axes: tuple[np.ndarray, ...]) -> np.ndarray:
        u, v, w = self._frame(axes)
        return _star_distance([u, v, w], self._radii(u, v, w), self.bumps)

    def _radii(self, u, v, w) -> tuple:
        """Radii towards (u, v, w) of the breast frame: deep in front, shallow behind, and narrower the more the
        direction points to the nipple, so the pendant breast is a rounded cone rather than a half-ellipsoid."""
        with np.errstate(divide="ignore", invalid="ignore"):
            forward = np.clip(np.nan_to_num(-v / np.sqrt(u * u + v * v + w * w)), 0.0, 1.0)
        narrowing = 1.0 - self.taper * forward
        depth = np.where(v < 0, np.float32(self.depth), np.float32(self.back))  # single precision kept
        return (self.half_width * narrowing, depth, self.half_height * narrowing)

    def central_weight(self, axes: tuple[np.ndarray, ...]) -> np.ndarray:
        """~1 along the nipple axis, falling off towards the periphery: where fibroglandular tissue gathers."""
        u, _, w = self._frame(axes)
        q2 = (u / self.half_width) ** 2 + (w / self.half_height) ** 2
        return np.exp(-q2 / (2 * 0.4**2))

    def reach(self, axis: int) -> float:
        """How far (mm) the breast reaches from its centre along -y (``axis`` 1, to the nipple) or +-x (``axis``
        0, to its medial or lateral border, the larger), bumps included, measured over the direction lattice."""
        u, v, w = _SPHERE
        radii = self._radii(u, v, w)
        reach = self.bumps([u, v, w]) / np.sqrt(sum((c / a) ** 2 for c, a in zip((u, v, w), radii)))
        rotation = _planar_rotation(self.tilt)
        world = rotation[axis, 0] * u + rotation[axis, 1] * v  # the tilt is about z, so w does not contribute
        along = -world if axis == 1 else np.abs(world)
        return 1.02 * float(np.max(along * reach))  # 2 % for the gaps between lattice directions

    def moved(self, dy: float) -> _Breast:
        x, y, z = self.center
        return replace(self, center=(x, y + dy, z))


@dataclass(frozen=True)
class _ChestWall:
    """The chest wall from the inside out: the pleural surface (``cavity``), a layer of ribs and intercostal
    muscle with the sternum in the midline, then the pectoral muscle, which thins over the sternum where it
    arises.

    Ribs descend as they run forward round the chest, so an axial slice cuts each obliquely into a short
    segment: they are drawn as bands whose height z drops by ``rib_slope`` per mm of arc towards the front,
    one every ``rib_period`` mm, bone over ``rib_duty`` of the period and intercostal muscle between.
    """

    cavity: _Ellipsoid  # superelliptic cylinder: flat across the front, rounded at the sides
    ribs: float  # thickness of the rib layer
    pectoralis: float  # thickness of the pectoral muscle under the breasts
    sternum_half_width: float
    rib_period: float
    rib_slope: float
    rib_duty: float
    rib_phase: float  # fraction of a period, so every case cuts the ribs at a different level

    def _polar(self, axes: tuple[np.ndarray, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Offset from the midline (mm) and angle round the wall from straight ahead (radians, 0 to pi)."""
        dx, dy = axes[0] - float(self.cavity.center[0]), axes[1] - float(self.cavity.center[1])
        return dx, np.abs(np.arctan2(dx, -dy))

    def pectoral_thickness(self, axes: tuple[np.ndarray, ...]) -> np.ndarray:
        """Pectoral muscle thickness: a thin origin over the sternum, full ~25 mm out under the breasts, then
        thinning again round the side of the chest (serratus anterior) from ~45 to ~80 degrees."""
        dx, angle = self._polar(axes)
        medial = np.clip((np.abs(dx) - self.sternum_half_width) / 25.0, 0.0, 1.0)
        lateral = np.clip((angle - 0.8) / 0.6, 0.0, 1.0)
        return self.pectoralis * (0.2 + 0.8 * _smoothstep(medial)) * (1.0 - 0.6 * _smoothstep(lateral))

    def round_the_side(self, axes: tuple[np.ndarray, ...], front: float, side: float) -> np.ndarray:
        """A thickness that blends from ``front`` over the sternum to ``side`` from ~35 to ~80 degrees round the
        chest (subcutaneous fat is thin over the sternum, thicker at the sides and in the axilla)."""
        return front + (side - front) * _smoothstep((self._polar(axes)[1] - 0.6) / 0.8)

    def thorax_distance(self, axes: tuple[np.ndarray, ...], cavity: np.ndarray) -> np.ndarray:
        """Signed distance to the outer muscle surface: the pleural surface pushed out by ribs and pectoralis."""
        return cavity - self.ribs - self.pectoral_thickness(axes)

    def front(self, x: float) -> float:
        """y (mm) of the outer muscle surface at ``x`` in the plane z = 0: where a breast based there sits."""
        cy, half_depth = float(self.cavity.center[1]), float(self.cavity.radii[1])
        y = np.arange(cy - half_depth - 60.0, cy, 0.25, dtype=np.float32)
        axes = (np.full((1, y.size, 1), x, np.float32), y.reshape(1, -1, 1), np.zeros((1, 1, 1), np.float32))
        inside = self.thorax_distance(axes, self.cavity.distance(axes)).ravel() < 0
        return float(y[np.argmax(inside)])

    def bone(self, axes: tuple[np.ndarray, ...], cavity: np.ndarray, width: float) -> np.ndarray:
        """Share of each voxel taken by rib or sternal marrow, within the rib layer outside ``cavity``."""
        dx, angle = self._polar(axes)
        arc = float(self.cavity.radii[0]) * angle  # mm round the wall from the front
        level = (axes[2] - self.rib_slope * arc) / self.rib_period + self.rib_phase  # constant along one rib
        # 1 on a rib's centre line, 0 at its edges; the rib is as thick as the layer there, thinning to its edges
        # with an elliptic profile, so the slice cuts it into an oval.
        floor = np.cos(np.pi * self.rib_duty)
        along = np.clip((np.cos(2 * np.pi * level) - floor) / (1.0 - floor), 0.0, 1.0)
        across = np.abs(cavity - self.ribs / 2)  # from the middle of the rib layer
        half = self.ribs / 2 * np.sqrt(along)
        # A rib thinner than a voxel takes at most its thickness's share (the ramp alone would give half a
        # voxel to the vanishing rib between two ribs).
        ribs = _ramp(across - half, width) * np.minimum(1.0, 2.0 * half / width)
        sternum = _ramp(np.maximum(np.abs(dx) - self.sternum_half_width, across - self.ribs / 2), width)
        return np.maximum(ribs, sternum)

    def moved(self, dy: float) -> _ChestWall:
        return replace(self, cavity=self.cavity.moved(dy))


@dataclass(frozen=True)
class _Mediastinum:
    """What lies between the lungs: the heart behind the sternum, the descending aorta beside the spine, the
    spine (vertebral body, spinal canal in its bony arch, back muscles behind it), all wrapped in fat.

    The heart is cut through its ventricles: the left ventricle, a thick-walled oval at the back and left of the
    heart, and the right ventricle, the thin-walled rest in front and to the right of the septum.
    """

    heart: _Ellipsoid
    heart_wall: float  # right ventricular free wall
    left_ventricle: _Ellipsoid  # its blood pool
    left_wall: float  # left ventricular wall and septum
    pericardial_fat: float
    aorta: _Ellipsoid
    vertebra: _Ellipsoid
    canal: _Ellipsoid
    arch: float  # bone round the canal (pedicles and laminae)
    back_muscles: _Ellipsoid  # erector spinae
    column: _Ellipsoid  # retrosternal fat between the lungs in front of the heart

    def layers(self, axes: tuple[np.ndarray, ...], width: float) -> list[tuple[str, np.ndarray]]:
        """Tissue indicators for _paint, innermost first; the lungs fill the rest of the chest cavity."""
        heart, left, aorta = self.heart.distance(axes), self.left_ventricle.distance(axes), self.aorta.distance(axes)
        vertebra, canal = self.vertebra.distance(axes), self.canal.distance(axes)
        column = self.column.distance(axes)
        fat = reduce(
            np.minimum, [heart - self.pericardial_fat, aorta - 3.0, vertebra - 3.0, canal - self.arch - 3.0, column]
        )
        return [
            ("blood", _ramp(aorta, width)),
            ("blood", _ramp(left, width)),
            ("myocardium", _ramp(np.maximum(left - self.left_wall, heart), width)),
            ("blood", _ramp(heart + self.heart_wall, width)),
            ("myocardium", _ramp(heart, width)),
            ("csf", _ramp(canal, width)),
            ("marrow", _ramp(np.minimum(vertebra, canal - self.arch), width)),
            ("muscle", _ramp(self.back_muscles.distance(axes), width)),
            ("fat", _ramp(fat, width)),
        ]

    def moved(self, dy: float) -> _Mediastinum:
        shapes = ("heart", "left_ventricle", "aorta", "vertebra", "canal", "back_muscles", "column")
        return replace(self, **{name: getattr(self, name).moved(dy) for name in shapes})


@dataclass(frozen=True)
class _Layout:
    """Drawn shapes and layer thicknesses (mm) of one case."""

    chest: _ChestWall
    mediastinum: _Mediastinum
    subcutaneous: tuple[float, float]  # fat over the chest wall: over the sternum, and round the sides
    skin: float
    premammary: float  # FGT-free fat under the breast skin
    retromammary: float  # FGT-free fat in front of the pectoral muscle
    marrow_fat: float  # fat share of rib, sternal and vertebral marrow
    breasts: list[_Breast]
    vessels: list[_Capsule]


def _draw_chest_wall(rng: np.random.Generator, shift: float) -> _ChestWall:
    """The chest wall, its inner (pleural) surface touching y = 0 at the sternum.

    Inner chest width 25-28 cm; ribs ~8 mm thick, one every 24-30 mm of height, descending forward at 20-30
    degrees; pectoralis major 7-12 mm under the breasts. Typical adult values, assumed rather than measured.
    """
    half_width, half_depth = rng.uniform(125.0, 140.0), rng.uniform(105.0, 125.0)
    cavity = _Ellipsoid(
        (shift, half_depth, 0.0),
        (half_width, half_depth),
        bumps=_Bumps.draw(rng, 4, 0.02, 2.0, dims=2),
        power=rng.uniform(2.2, 2.6),  # flatter across the front than an ellipse
    )
    return _ChestWall(
        cavity=cavity,
        ribs=rng.uniform(7.0, 9.0),
        pectoralis=rng.uniform(7.0, 12.0),
        sternum_half_width=rng.uniform(12.0, 16.0),
        rib_period=rng.uniform(24.0, 30.0),
        rib_slope=rng.uniform(0.35, 0.6),
        rib_duty=rng.uniform(0.35, 0.45),
        rib_phase=rng.random(),
    )


def _draw_mediastinum(rng: np.random.Generator, chest: _ChestWall) -> tuple[_Mediastinum, float, float]:
    """Heart, aorta and spine behind the sternum; also return the y of the back of the heart and of the back of
    the spinal canal's bony arch (in the frame where the sternum's inner surface is at y = 0)."""
    midline = float(chest.cavity.center[0])
    # Sternum-to-spine depth from the Haller index, inner transverse over antero-posterior chest diameter, ~2.5 in
    # adults without chest-wall deformity (Haller et al., J Pediatr Surg 1987;22:904-906).
    spine_front = 2.0 * float(chest.cavity.radii[0]) / rng.uniform(2.2, 2.7)
    # Heart: long axis pointing left and forward to the apex, centred a little below the breasts.
    radii = np.array([rng.uniform(46.0, 56.0), rng.uniform(36.0, 45.0), rng.uniform(48.0, 58.0)])
    angle, z, gap = -rng.uniform(0.35, 0.8), rng.uniform(-35.0, -15.0), rng.uniform(3.0, 8.0)
    section = np.sqrt(1.0 - (z / radii[2]) ** 2)  # the plane z = 0 cuts the ellipsoid this much smaller
    half_depth = section * np.hypot(radii[0] * np.sin(angle), radii[1] * np.cos(angle))
    # Leave >= 6 mm behind the heart for the oesophagus and aorta in front of the spine.
    radii[:2] *= min(1.0, (spine_front - gap - 6.0) / (2.0 * half_depth))
    half_depth = section * np.hypot(radii[0] * np.sin(angle), radii[1] * np.cos(angle))
    rotation = _planar_rotation(angle)
    center = np.array([midline + rng.uniform(15.0, 35.0), gap + half_depth, z])
    heart = _Ellipsoid(tuple(center.tolist()), tuple(radii.tolist()), rotation)
    # The left ventricle sits towards the apex and the back of the heart (+u, +v in the heart's frame).
    offset = rotation @ (radii * [rng.uniform(0.05, 0.15), rng.uniform(0.25, 0.4), 0.0])
    left_ventricle = _Ellipsoid(
        tuple((center + offset).tolist()), tuple((radii * [0.7, 0.5, 0.7]).tolist()), rotation
    )
    # Thoracic vertebral body ~3 cm deep and a little wider; the canal (~15 mm) in its bony arch behind it; the
    # descending aorta (2-2.5 cm) against the left front of the vertebral body.
    depth = rng.uniform(14.0, 17.0)
    vertebra = _Ellipsoid((midline, spine_front + depth, 0.0), (1.15 * depth, depth))
    arch, canal_radius = rng.uniform(4.0, 6.0), rng.uniform(7.0, 8.5)
    canal_y = spine_front + 2.0 * depth + arch + canal_radius
    aorta_radius = rng.uniform(10.0, 13.0)
    aorta = _Ellipsoid(
        (midline + 1.15 * depth + rng.uniform(-2.0, 3.0), spine_front + rng.uniform(0.0, 8.0), 0.0),
        (aorta_radius, aorta_radius),
    )
    mediastinum = _Mediastinum(
        heart=heart,
        heart_wall=rng.uniform(4.0, 6.0),
        left_ventricle=left_ventricle,
        left_wall=rng.uniform(9.0, 12.0),
        pericardial_fat=rng.uniform(2.0, 6.0),
        aorta=aorta,
        vertebra=vertebra,
        canal=_Ellipsoid((midline, canal_y, 0.0), (canal_radius, canal_radius)),
        arch=arch,
        back_muscles=_Ellipsoid(
            (midline, canal_y + rng.uniform(20.0, 26.0), 0.0), (rng.uniform(40.0, 50.0), rng.uniform(30.0, 38.0))
        ),
        column=_Ellipsoid((midline, 0.0, 0.0), (rng.uniform(6.0, 12.0), rng.uniform(20.0, 35.0))),
    )
    return mediastinum, gap + 2.0 * half_depth, canal_y + canal_radius + arch


def _draw_breasts(rng: np.random.Generator, chest: _ChestWall, bilateral_probability: float, room: float):
    """One or two breasts based on the chest wall, both sides of one overall size (breasts are near-symmetric),
    the lateral border at most ``room`` mm from the midline.

    Prone, the breast hangs into the coil: 8-15 cm wide and 8-17 cm from chest wall to nipple from small to
    large breasts (prone tumours lie farther from the chest wall than supine ones: Wang et al., Sci Rep
    2020;10:4858).
    """
    sides = ["right", "left"] if rng.random() < bilateral_probability else [str(rng.choice(["right", "left"]))]
    size = rng.random()
    midline = float(chest.cavity.center[0])
    breasts = []
    for side in sides:
        sign = 1.0 if side == "left" else -1.0  # +x is the patient's left
        jitter = rng.uniform(0.92, 1.08, 3).tolist()
        cleavage = rng.uniform(12.0, 28.0)  # midline to the medial border of the breast
        breast = _Breast(
            side=side,
            center=(0.0, 0.0, rng.uniform(-12.0, 12.0)),
            half_width=(42.0 + 33.0 * size) * jitter[1],
            depth=(80.0 + 90.0 * size) * jitter[0],
            half_height=(42.0 + 33.0 * size) * jitter[2],
            back=30.0,
            tilt=sign * rng.uniform(0.0, 0.2),  # nipples point slightly outwards
            bumps=_Bumps.draw(rng, 5, 0.04, 3.0),
            taper=rng.uniform(0.05, 0.2),
        )
        # Narrow a breast that would not fit beside the midline (only in the narrowest fields of view).
        for _ in range(20):
            if cleavage + breast.half_width + breast.reach(0) <= room:
                break
            breast = replace(breast, half_width=0.9 * breast.half_width)
        x = midline + sign * (cleavage + breast.half_width)
        breasts.append(replace(breast, center=(x, chest.front(x) + 5.0, breast.center[2])))
    return breasts


def _place(
    rng: np.random.Generator, grid: _Grid, breasts: list[_Breast], heart_back: float, spine_back: float
) -> tuple[float, list[_Breast]]:
    """How far back (mm) to move the patient, and the breasts, shortened if the field of view is too small.

    The field of view is centred on the breasts: the nipples lie just behind its anterior edge and its posterior
    edge cuts the thorax behind them, wherever that falls, but no further back than the spine, so the back is
    never imaged; small breasts therefore leave air in front of them. At most the back of the heart is cut off:
    breasts too deep for that are shortened (only in the smallest fields of view).
    """
    front = grid.origin[1] - grid.spacing[1] / 2
    back = front + grid.shape[1] * grid.spacing[1]
    margin = rng.uniform(5.0, 20.0)  # air in front of the nipples
    deepest = spine_back + rng.uniform(-10.0, 20.0)  # farthest the posterior edge may lie behind the sternum
    for _ in range(10):
        nipple = min(b.center[1] - b.reach(1) for b in breasts)
        dy = max(front + margin - nipple, back - deepest)
        excess = dy - (back - heart_back + 20.0)
        if excess <= 0:
            break
        breasts = [replace(b, depth=max(30.0, b.depth - 1.1 * excess)) for b in breasts]
    return dy, breasts


def _draw_layout(rng: np.random.Generator, grid: _Grid, bilateral_probability: float) -> _Layout:
    """Draw the anatomy of one case and place it in the field of view."""
    shift = rng.uniform(-5.0, 5.0)  # patient not exactly centred
    chest = _draw_chest_wall(rng, shift)
    mediastinum, heart_back, spine_back = _draw_mediastinum(rng, chest)
    room = grid.shape[0] * grid.spacing[0] / 2 - abs(shift) - 8.0  # keep breasts ~1 cm inside the sides
    breasts = _draw_breasts(rng, chest, bilateral_probability, room)
    dy, breasts = _place(rng, grid, breasts, heart_back, spine_back)
    breasts = [b.moved(dy) for b in breasts]
    return _Layout(
        chest=chest.moved(dy),
        mediastinum=mediastinum.moved(dy),
        subcutaneous=(rng.uniform(5.0, 12.0), rng.uniform(10.0, 30.0)),
        skin=rng.uniform(1.5, 2.0),
        premammary=rng.uniform(3.0, 6.0),
        retromammary=rng.uniform(2.0, 5.0),
        # Adult marrow is about half fat (MR spectroscopy of vertebral marrow: Griffith et al., Radiology
        # 2005;236:945-951); ribs and sternum are taken to match.
        marrow_fat=rng.uniform(0.35, 0.55),
        breasts=breasts,
        vessels=[v for b in breasts for v in _draw_vessels(rng, b, grid.planar)],
    )


def _draw_vessels(rng: np.random.Generator, breast: _Breast, planar: bool) -> list[_Capsule]:
    """Up to two thin enhancing vessels, each a winding path of three short tubes from the deep breast towards
    the nipple. Radii 0.35-0.6 mm, tapering: thinner than a voxel, so partial volume keeps them dimmer than the
    heart, as on clinical slices. A 2D case only shows vessels lying in its slice."""
    vessels = []
    for _ in range(rng.integers(0, 3)):
        x, y, z = breast.center
        point = np.array(
            [
                x + rng.uniform(-0.5, 0.5) * breast.half_width,
                y - rng.uniform(0.0, 0.3) * breast.depth,
                0.0 if planar else z + rng.uniform(-0.5, 0.5) * breast.half_height,
            ]
        )
        heading = np.array([rng.uniform(-0.5, 0.5), -1.0, 0.0 if planar else rng.uniform(-0.4, 0.4)])
        radius = rng.uniform(0.35, 0.6)
        for _ in range(3):
            heading = heading / np.linalg.norm(heading)
            length = rng.uniform(6.0, 14.0)
            vessels.append(_Capsule(point, heading, length, radius, 0.85 * radius))
            point, radius = point + length * heading, 0.85 * radius
            heading = heading + rng.normal(0.0, 0.5, 3) * (1.0, 1.0, 0.0 if planar else 1.0)
    return vessels


# ----------------------------------------------------------------------------------------------------------
# Lesions
# ----------------------------------------------------------------------------------------------------------


def _fibonacci_sphere(count: int) -> np.ndarray:
    """``count`` unit vectors spread evenly over the sphere (Fibonacci lattice), shape (3, count)."""
    k = np.arange(count) + 0.5
    z = 1.0 - 2.0 * k / count
    azimuth = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.stack([np.sqrt(1 - z**2) * np.cos(azimuth), np.sqrt(1 - z**2) * np.sin(azimuth), z])


_SPHERE = _fibonacci_sphere(512)  # directions along which the reach of a bumpy lesion is measured


@dataclass(frozen=True)
class _LesionShape:
    """A lesion about its centre: a rotated, radially perturbed ellipsoid plus spicules starting at the centre."""

    kind: str
    radii: tuple[float, float, float]
    rotation: np.ndarray
    bumps: _Bumps
    spicules: tuple[_Capsule, ...]

    @property
    def radius(self) -> float:
        return float(np.mean(self.radii))

    @property
    def extent(self) -> float:
        """Farthest reach from the centre (mm), spicules included, with a 5 % allowance between lattice rays."""
        unit = list(_SPHERE)
        reach = self.bumps(unit) / np.sqrt(sum((u / a) ** 2 for u, a in zip(unit, self.radii)))
        return max([1.05 * float(reach.max())] + [s.extent for s in self.spicules])

    def reach(self, direction: np.ndarray) -> float:
        """Distance (mm) from the centre to the margin of the body along unit ``direction`` (patient axes)."""
        unit = [np.array([c]) for c in self.rotation.T @ direction]  # into the lesion's own frame
        return float(self.bumps(unit)[0] / np.sqrt(sum((u[0] / a) ** 2 for u, a in zip(unit, self.radii))))

    def scaled(self, factor: float) -> _LesionShape:
        """The same lesion ``factor`` times smaller or larger (spicules keep their thickness)."""
        return replace(
            self,
            radii=tuple(r * factor for r in self.radii),
            spicules=tuple(replace(s, length=s.length * factor) for s in self.spicules),
        )

    def distance(self, axes: tuple[np.ndarray, ...], center: np.ndarray) -> np.ndarray:
        offsets = [a - float(c) for a, c in zip(axes, center)]
        distance = _star_distance(_body_frame(offsets, self.rotation), self.radii, self.bumps)
        for spicule in self.spicules:
            distance = np.minimum(distance, spicule.distance(offsets))
        return distance

    def uptake(self, distance: np.ndarray, spacing: tuple[float, ...], rng: np.random.Generator) -> np.ndarray:
        """Relative contrast uptake over the lesion box: smooth heterogeneity, plus a brighter rim for cancers
        (heterogeneous and rim enhancement are malignant features). Every voxel keeps the lesion's curve shape."""
        if self.kind == "benign":
            return np.clip(1.0 + _random_field(distance.shape, spacing, rng, 2.5, 0.12), 0.5, None)
        rim = np.exp(np.minimum(distance, 0.0) / (0.3 * self.radius))
        return np.clip((0.5 + 0.5 * rim) * (1.0 + _random_field(distance.shape, spacing, rng, 2.5, 0.25)), 0.2, None)


def _draw_lesion_shape(rng: np.random.Generator, kind: str, planar: bool) -> _LesionShape:
    """Benign: round or oval, smooth or gently lobulated (fibroadenoma-like), mean radius 4-12 mm.
    Malignant: irregular margin, mean radius 5-15 mm, plus 4-8 spicules: thin strands (~1 mm) reaching 3-10 mm
    beyond the margin, the spiculated margin of the BI-RADS MRI lexicon (ACR BI-RADS Atlas, 5th ed., 2013)."""
    rotation = Rotation.random(rng=rng).as_matrix()
    if kind == "benign":
        radius = rng.uniform(4.0, 12.0)
        radii = radius * np.array([1.0, rng.uniform(0.6, 0.9), rng.uniform(0.7, 1.0)])
        return _LesionShape(kind, tuple(radii.tolist()), rotation, _Bumps.draw(rng, 3, 0.05, 3.0), ())
    radius = rng.uniform(5.0, 15.0)
    radii = radius * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)])
    body = _LesionShape(kind, tuple(radii.tolist()), rotation, _Bumps.draw(rng, 10, 0.25, 8.0), ())
    spicules = []
    for _ in range(rng.integers(4, 9)):
        direction = _random_direction(rng, planar)
        # Each runs from the centre and tapers from 0.8-1.4 mm across where it leaves the margin to a point.
        inside, tip = body.reach(direction), 0.2
        length, at_margin = inside + rng.uniform(3.0, 10.0), rng.uniform(0.4, 0.7)
        t = inside / length
        spicules.append(_Capsule(np.zeros(3), direction, length, (at_margin - tip * t) / (1.0 - t), tip))
    return replace(body, spicules=tuple(spicules))


@dataclass
class BreastLesion:
    """One placed lesion.

    Args:
        label: its value in the ``lesion`` mask.
        kind: ``benign`` or ``malignant``.
        side: the breast it lies in, ``left`` or ``right``.
        center_mm: centre in patient coordinates (LPS mm).
        radius_mm: mean radius of its body (spicules not included).
        kinetics: extended-Tofts ``ktrans`` (1/min), ``ve``, ``vp``.
        fraction: partial-volume fraction map of the lesion on the case grid.
        uptake: relative contrast uptake map (1 = the lesion's curve), zero outside the lesion.
        curve_type: its kinetic curve type, ``I`` (persistent), ``II`` (plateau) or ``III`` (washout).
        tissue: its own relaxation times and PD (drawn from LESION_RELAXATION of its class).
    """

    label: int
    kind: str
    side: str
    center_mm: tuple[float, ...]
    radius_mm: float
    kinetics: dict[str, float]
    fraction: np.ndarray
    uptake: np.ndarray
    curve_type: str
    tissue: Tissue

    @property
    def tissue_name(self) -> str:
        """Its key among the rendered tissues: every lesion has its own relaxation times."""
        return f"lesion{self.label}"


def _clearance(mask: np.ndarray, grid: _Grid) -> np.ndarray:
    """Distance (mm) from each voxel of ``mask`` to the nearest voxel outside it. Beyond the grid counts as
    outside (in 3D the ends of the slab too), so lesions stay whole inside the image."""
    pad = [(1, 1), (1, 1), (0, 0) if grid.planar else (1, 1)]
    inside = tuple(slice(before, mask.shape[axis] + before) for axis, (before, _) in enumerate(pad))
    return ndimage.distance_transform_edt(np.pad(mask, pad), sampling=grid.spacing)[inside]


def _place_lesions(
    rng: np.random.Generator,
    grid: _Grid,
    kinds: list[str],
    interior: np.ndarray,
    owner: np.ndarray,
    n_breasts: int,
    glandular: np.ndarray,
) -> list[tuple[_LesionShape, np.ndarray, int]]:
    """Choose each lesion's shape, breast and centre: inside the breast's fat and FGT, clear of skin, chest wall
    and other lesions by LESION_MARGIN_MM, preferring glandular tissue where cancers and fibroadenomas arise.

    A lesion too large for the room available is shrunk (by 20 % steps, at most three times); one that still
    does not fit is left out.
    """
    room = _clearance(interior, grid)[interior]
    positions = grid.position(np.argwhere(interior))
    weight = 0.25 + glandular[interior]
    placed = []
    for kind in kinds:
        breast = int(rng.integers(n_breasts))
        shape = _draw_lesion_shape(rng, kind, grid.planar)
        for _ in range(4):
            slack = LESION_MARGIN_MM + grid.voxel_mm
            ok = (owner == breast) & (room >= shape.extent + slack)
            for other, center, _ in placed:
                ok &= np.linalg.norm(positions - center, axis=1) >= shape.extent + other.extent + slack
            if ok.any():
                choice = rng.choice(np.flatnonzero(ok), p=weight[ok] / weight[ok].sum())
                placed.append((shape, positions[choice], breast))
                break
            shape = shape.scaled(0.8)
    return placed


def _displaced(glandular: np.ndarray, grid: _Grid, placed: list[tuple[_LesionShape, np.ndarray, int]]) -> np.ndarray:
    """The FGT share after each lesion has pushed aside MASS_EFFECT of the tissue in its place (mass effect).

    Radial displacement that conserves tissue: along each ray from the centre, with ``s`` the distance in units
    of the lesion's radius along that ray, the tissue now at ``s`` >= 1 came from ``(s^n - push)^(1/n)``
    (n = 3 in a volume, 2 in a slice), so what filled the lesion is squeezed into a denser rim around it and FGT
    strands bend round it. The displacement fades out from 2 to MASS_EFFECT_REACH radii. Spicules do not push.
    """
    out = glandular
    n = 2 if grid.planar else 3
    for shape, center, _ in placed:
        push = MASS_EFFECT[shape.kind]
        body = replace(shape, spicules=())
        box = grid.box(center, MASS_EFFECT_REACH * body.extent)
        axes = grid.axes(box)
        offsets = np.broadcast_arrays(*[a - float(c) for a, c in zip(axes, center)])
        radius = np.sqrt(sum(o * o for o in offsets))
        reach = radius - body.distance(axes, center)  # the margin's distance from the centre along each ray
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(reach > 0, radius / reach, 0.0)
            source = np.where(s >= 1.0, np.maximum(s**n - push, 0.0) ** (1.0 / n), s * (1.0 - push) ** (1.0 / n))
            fade = 1.0 - _smoothstep((s - 2.0) / (MASS_EFFECT_REACH - 2.0))
            source = s - fade * (s - source)
            scale = np.where(s > 0, source / s, 1.0)
        coordinates = [
            (float(c) + o * scale - origin) / step
            for o, c, origin, step in zip(offsets, center, grid.origin, grid.spacing)
        ]
        moved = ndimage.map_coordinates(out, np.stack(coordinates), order=1, mode="nearest")
        out = out.copy() if out is glandular else out
        out[box] = moved.astype(out.dtype)
    return out


# ----------------------------------------------------------------------------------------------------------
# Tissue fractions
# ----------------------------------------------------------------------------------------------------------


def _paint(region: np.ndarray, layers: list[tuple[str, np.ndarray]], fill: str, fractions: dict) -> None:
    """Share ``region`` among tissues: each layer takes its indicator's share of what earlier layers left, the
    rest goes to ``fill``. Fractions therefore never sum to more than the region."""
    remaining = region
    for name, indicator in layers:
        part = remaining * indicator
        fractions[name] = fractions.get(name, 0.0) + part
        remaining = remaining - part
    fractions[fill] = fractions.get(fill, 0.0) + remaining


def _fibroglandular(
    rng: np.random.Generator,
    grid: _Grid,
    layout: _Layout,
    distances: dict[str, np.ndarray],
    interior: np.ndarray,
) -> tuple[np.ndarray, str, float]:
    """FGT share of the breast soft tissue, its BI-RADS density category and its fraction of the breast.

    A smooth random field, raised along the nipple axis, is thresholded so the FGT fills a drawn fraction of
    the breast; FGT is kept out of the premammary and retromammary fat. The category is the one the resulting
    fraction falls in.
    """
    width = grid.voxel_mm
    allowed = (
        _ramp(distances["body"] + layout.premammary, width)
        * _ramp(layout.retromammary - distances["thorax"], width)
        * _ramp(distances["breasts"], width)
    )
    axes = grid.axes()
    central = np.maximum.reduce([b.central_weight(axes) for b in layout.breasts])
    score = (
        _random_field(grid.shape, grid.spacing, rng, 8.0)
        + 0.6 * _random_field(grid.shape, grid.spacing, rng, 2.5)
        + 1.5 * central
    )
    target = rng.uniform(*DENSITY_BANDS[str(rng.choice(list(DENSITY_BANDS)))])
    eligible = allowed > 0.5
    threshold = float(np.quantile(score[eligible], 1.0 - min(1.0, target * interior.sum() / eligible.sum())))
    share = allowed * np.clip((score - threshold) / 0.3 + 0.5, 0.0, 1.0)
    fraction = float(share[interior].mean())
    density = "abcd"[int(np.searchsorted([0.25, 0.5, 0.75], fraction, side="right"))]
    return share, density, fraction


@dataclass
class BreastAnatomy:
    """The ground truth of one case, before imaging, on the case grid (2D arrays for a 2D case).

    Args:
        fractions: tissue name (a key of :data:`TISSUES`) -> partial-volume fraction.
        body: the patient (skin and everything inside), bool.
        breast: skin, fat and FGT of the breasts, uint8.
        lesion: lesion instance labels, uint8.
        lesions: the lesions, aligned with labels 1..k.
        laterality: breasts present, ``bilateral``, ``left`` or ``right``.
        density: BI-RADS density category ``a``-``d`` of the FGT fraction.
        fgt_fraction: FGT share of the breast soft tissue (skin excluded), before lesions.
        spacing, origin: the grid (mm, LPS; identity direction).
    """

    fractions: dict[str, np.ndarray]
    body: np.ndarray
    breast: np.ndarray
    lesion: np.ndarray
    lesions: list[BreastLesion]
    laterality: str
    density: str
    fgt_fraction: float
    spacing: tuple[float, ...]
    origin: tuple[float, ...]


def _distances(grid: _Grid, layout: _Layout) -> dict:
    """Signed distances (mm) to the surfaces the tissue layers are cut from."""
    axes = grid.axes()
    cavity = layout.chest.cavity.distance(axes)
    thorax = layout.chest.thorax_distance(axes, cavity)
    per_breast = [b.distance(axes) for b in layout.breasts]
    body = thorax - layout.chest.round_the_side(axes, *layout.subcutaneous)
    for breast in per_breast:
        body = _smooth_union(body, breast, k=12.0)
    return {
        "cavity": cavity,
        "thorax": thorax,
        "body": body,
        "breasts": np.minimum.reduce(per_breast),
        "per_breast": per_breast,
    }


def _rasterize_lesions(
    rng: np.random.Generator,
    grid: _Grid,
    placed: list[tuple[_LesionShape, np.ndarray, int]],
    sides: list[str],
    post_times: tuple[float, ...],
) -> tuple[np.ndarray, list[BreastLesion]]:
    """Exact label map (voxel centres inside the surface) and, per lesion, partial-volume fraction, uptake map,
    relaxation times, curve type (drawn from its class's shares) and kinetic parameters that show that type on
    ``post_times``. Only a box around each lesion is computed."""
    width = grid.voxel_mm
    labels = np.zeros(grid.shape, np.uint8)
    lesions = []
    for label, (shape, center, breast_index) in enumerate(placed, start=1):
        box = grid.box(center, shape.extent + 2 * width)
        distance = shape.distance(grid.axes(box), center)
        labels[box][distance < 0] = label
        fraction, uptake = np.zeros(grid.shape, np.float32), np.zeros(grid.shape, np.float32)
        fraction[box] = _ramp(distance, width)
        uptake[box] = np.where(distance < width / 2, shape.uptake(distance, grid.spacing, rng), 0.0)
        tissue = LESION_RELAXATION[shape.kind].draw(rng)
        curve_type = draw_curve_type(rng, shape.kind)
        lesions.append(
            BreastLesion(
                label=label,
                kind=shape.kind,
                side=sides[breast_index],
                center_mm=tuple(float(c) for c in (center[:2] if grid.planar else center)),
                radius_mm=shape.radius,
                kinetics=draw_kinetics(rng, shape.kind, curve_type, tissue, post_times),
                fraction=fraction,
                uptake=uptake,
                curve_type=curve_type,
                tissue=tissue,
            )
        )
    return labels, lesions


def _vessel_share(grid: _Grid, vessels: list[_Capsule]) -> np.ndarray:
    """Partial-volume share of the breast vessels, each computed only in the box around it."""
    share = np.zeros(grid.shape, np.float32)
    for vessel in vessels:
        box = grid.box(vessel.middle, vessel.length / 2 + vessel.radius_start + 2 * grid.voxel_mm)
        share[box] = np.maximum(share[box], _ramp(vessel.distance(grid.axes(box)), grid.voxel_mm))
    return share


def _tissue_fractions(
    grid: _Grid, layout: _Layout, d: dict, glandular: np.ndarray, lesions: list[BreastLesion]
) -> dict[str, np.ndarray]:
    """Partial-volume fraction of every tissue, layer by layer: skin; the chest wall (rib and sternal marrow in
    muscle); inside the chest, the mediastinum (see _Mediastinum) and the lungs; outside it, lesions, vessels,
    FGT and fat."""
    axes, width = grid.axes(), grid.voxel_mm
    body = _ramp(d["body"], width)
    inner = _ramp(d["body"] + layout.skin, width)
    chest = inner * _ramp(d["thorax"], width)
    cavity = chest * _ramp(d["cavity"], width)
    fractions = {"skin": body - inner}
    _paint(chest - cavity, [("marrow", layout.chest.bone(axes, d["cavity"], width))], "muscle", fractions)
    _paint(cavity, layout.mediastinum.layers(axes, width), "lung", fractions)
    _paint(
        inner - chest,
        [(lesion.tissue_name, lesion.fraction) for lesion in lesions]
        + [("blood", _vessel_share(grid, layout.vessels)), ("fgt", glandular)],
        "fat",
        fractions,
    )
    # Each lesion keeps its own painted share (rendered with its own relaxation times); the class maps sum them.
    for lesion in lesions:
        lesion.fraction = fractions.pop(lesion.tissue_name)
        fractions[lesion.kind] = fractions.get(lesion.kind, 0.0) + lesion.fraction
    # Marrow is part fat: that part is fat-suppressed and bright on T2 like any other fat.
    marrow = fractions.pop("marrow")
    fractions["fat"] = fractions["fat"] + layout.marrow_fat * marrow
    fractions["marrow"] = (1.0 - layout.marrow_fat) * marrow
    return fractions


def _anatomy(
    rng: np.random.Generator,
    grid: _Grid,
    bilateral_probability: float,
    kinds: list[str],
    post_times: tuple[float, ...],
) -> BreastAnatomy:
    """Draw one case's anatomy and lesions (their kinetics to show their curve types on ``post_times``) and turn
    them into tissue fractions and masks."""
    layout = _draw_layout(rng, grid, bilateral_probability)
    d = _distances(grid, layout)
    breast = (d["body"] < 0) & (d["thorax"] >= 0) & (d["breasts"] < 0)
    interior = breast & (d["body"] < -layout.skin)  # the breasts' fat and FGT
    glandular, density, fgt_fraction = _fibroglandular(rng, grid, layout, d, interior)
    owner = np.argmin(np.stack([p[interior] for p in d["per_breast"]]), axis=0)
    placed = _place_lesions(rng, grid, kinds, interior, owner, len(layout.breasts), glandular)
    sides = [b.side for b in layout.breasts]
    labels, lesions = _rasterize_lesions(rng, grid, placed, sides, post_times)
    glandular = _displaced(glandular, grid, placed)
    fractions = _tissue_fractions(grid, layout, d, glandular, lesions)

    def on_case_grid(array: np.ndarray) -> np.ndarray:
        return array[:, :, 0] if grid.planar else array

    for lesion in lesions:
        lesion.fraction, lesion.uptake = on_case_grid(lesion.fraction), on_case_grid(lesion.uptake)
    dims = 2 if grid.planar else 3
    return BreastAnatomy(
        fractions={name: on_case_grid(f) for name, f in fractions.items()},
        body=on_case_grid(d["body"] < 0),
        breast=on_case_grid(breast).astype(np.uint8),
        lesion=on_case_grid(labels),
        lesions=lesions,
        laterality="bilateral" if len(sides) == 2 else sides[0],
        density=density,
        fgt_fraction=fgt_fraction,
        spacing=grid.spacing[:dims],
        origin=grid.origin[:dims],
    )


# ----------------------------------------------------------------------------------------------------------
# Imaging
# ----------------------------------------------------------------------------------------------------------


def _concentrations(lesions: list[BreastLesion], uptakes: list[np.ndarray], bpe: dict[str, float], bpe_map):
    """A function of time (min) giving each enhancing tissue's Gd concentration (mM), scalar or map."""
    blood = physics.parker_aif(physics.KINETICS_GRID)  # whole blood: the heart, aorta and breast vessels
    muscle = physics.extended_tofts(**MUSCLE_KINETICS)
    myocardium = physics.extended_tofts(**MYOCARDIUM_KINETICS)
    marrow = physics.extended_tofts(**MARROW_KINETICS)
    parenchyma = physics.extended_tofts(**bpe)
    lesion_curves = [physics.extended_tofts(**lesion.kinetics) for lesion in lesions]

    def at(time: float) -> dict[str, np.ndarray | float]:
        out = {
            "blood": physics.sample(blood, time),
            "muscle": physics.sample(muscle, time),
            "myocardium": physics.sample(myocardium, time),
            "marrow": physics.sample(marrow, time),
            "fgt": physics.sample(parenchyma, time) * bpe_map,
        }
        for lesion, uptake, curve in zip(lesions, uptakes, lesion_curves):
            out[lesion.tissue_name] = physics.sample(curve, time) * uptake
        return out

    return at


def _image(
    anatomy: BreastAnatomy, rng: np.random.Generator, post_times: tuple[float, ...], snr: float
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Render and acquire every sequence of the case; also return the drawn BPE kinetics."""
    shape, spacing = anatomy.body.shape, anatomy.spacing
    # Signals are computed only where there is tissue (about half the field of view), then put back in place.
    support = np.add.reduce(list(anatomy.fractions.values())) > 0
    # Lesions are rendered one by one with their own relaxation times, not as the class maps.
    present = {
        name: f[support] for name, f in anatomy.fractions.items() if f.any() and name not in LESION_CLASSES
    }
    tissues = dict(TISSUES)
    for lesion in anatomy.lesions:
        present[lesion.tissue_name] = lesion.fraction[support]
        tissues[lesion.tissue_name] = lesion.tissue
    # One texture field serves every tissue: tissues barely overlap, and each scales it by its own heterogeneity.
    texture_field = _random_field(shape, spacing, rng, 3.0)[support]
    texture = {name: tissues[name].heterogeneity * texture_field for name in present if tissues[name].heterogeneity}
    bpe = BPE_KINETICS.draw(rng)
    bpe_map = np.clip(1.0 + _random_field(shape, spacing, rng, 10.0, 0.3), 0.3, None)[support]  # patchy BPE
    uptakes = [lesion.uptake[support] for lesion in anatomy.lesions]
    concentration = _concentrations(anatomy.lesions, uptakes, bpe, bpe_map)

    def render(sequence, concentrations=None) -> np.ndarray:
        signal = np.zeros(shape, np.float32)
        signal[support] = physics.render(sequence, present, tissues, concentrations, texture)
        return signal

    signals = {"t2": render(T2_TSE), "t1_pre": render(T1_FAT_SAT)}
    for phase, time in enumerate(post_times, start=1):
        signals[f"t1_post{phase}"] = render(T1_FAT_SAT, concentration(time))

    # One exam, one coil: every series shares the receive-bias field. The dynamic series also shares one
    # receiver gain, so its noise level and intensity scale are those of the pre-contrast phase and enhancement
    # shows as brighter values.
    bias = np.exp(_random_field(shape, spacing, rng, 120.0, 0.1))
    acquire = Acquisition(snr=snr, bias=0.0, blur=(0.5, 0.5) + (() if len(shape) == 2 else (0.25,)))
    t1_reference = float(np.percentile((signals["t1_pre"] * bias)[anatomy.body], 99))
    images = {}
    for key, signal in signals.items():
        reference = None if key == "t2" else t1_reference
        images[key] = acquire(signal * bias, rng, anatomy.body, reference=reference)
    return images, bpe


# ----------------------------------------------------------------------------------------------------------
# The phantom
# ----------------------------------------------------------------------------------------------------------


class BreastPhantom:
    """Simulated bilateral breast DCE-MRI: T2-weighted and fat-suppressed T1 before and after contrast.

    Prone axial anatomy drawn procedurally per seed, framed as in a breast coil: one or two breasts (skin, fat,
    fibroglandular tissue whose amount spans BI-RADS density a-d, enhancing vessels) fill the front of the
    field of view; behind them the pectoral muscle, ribs and sternum, then the front of the thorax (heart,
    lungs, aorta, spine), cut by the posterior edge of the field of view. Lesions are benign (oval,
    circumscribed, pushing the tissue around them aside) or malignant (irregular and spiculated); each draws its
    kinetic curve type (persistent, plateau, washout) from its class's shares in Kuhl et al. (Radiology 1999), so
    type and class overlap as in patients, and its own T1 and T2 from the published spread of its class, so
    lesions show before contrast as in patients (benign masses T2-bright, cancers close to FGT). Signals come
    from 3 T tissue properties through the signal equations and extended-Tofts kinetics of
    :mod:`synthmr.phantom.physics` (see the module docstring for the literature).

    Args:
        dims: 2 for one axial slice through the breasts, 3 for an axial volume.
        size: in-plane matrix, ``size x size``, 16 to 1024. Default 256 in 2D and 128 in 3D (3D stays fast).
        spacing: in-plane voxel size, mm. Default: the one that gives a 358 mm field of view (1.4 mm at 256).
            ``size * spacing`` must be at least 300 mm, room for both breasts and the chest wall.
        slices: number of axial slices (3D only); ``size x size x slices`` is at most 2**24 voxels.
        slice_spacing: slice distance, mm (3D only).
        n_lesions: inclusive range the number of lesions is drawn from. A lesion that does not fit in its
            breast, even shrunk, is left out, so a case can hold fewer.
        malignant_fraction: probability that a lesion is malignant.
        bilateral_probability: probability that both breasts are present (otherwise one, as after mastectomy).
        post_times_min: minutes after injection of the four post-contrast phases, increasing, within 12 min.
            They must allow every kinetic curve type (persistent, plateau, washout) to show.
        snr: signal-to-noise ratio of the brightest tissue of each series (pre-contrast phase for the DCE series).
    """

    organ = "breast"
    sequences = ("t2", "t1_pre", "t1_post1", "t1_post2", "t1_post3", "t1_post4")
    # fgt: voxels that are mostly fibroglandular tissue (fraction >= 0.5) outside the lesions, the region in
    # which background parenchymal enhancement is judged.
    masks = ("lesion", "breast", "fgt")
    lesion_mask = "lesion"

    def __init__(
        self,
        dims: int = 2,
        size: int | None = None,
        spacing: float | None = None,
        slices: int = 48,
        slice_spacing: float = 3.0,
        n_lesions: tuple[int, int] = (0, 2),
        malignant_fraction: float = 0.5,
        bilateral_probability: float = 0.8,
        post_times_min: tuple[float, ...] = (1.5, 3.0, 4.5, 6.0),
        snr: float = 30.0,
    ):
        self.dims = integer(dims, "dims", 2, 3)
        self.size = integer((256 if self.dims == 2 else 128) if size is None else size, "size", 16, MAX_SIZE)
        self.spacing = number(DEFAULT_FOV_MM / self.size if spacing is None else spacing, "spacing", 0, low_open=True)
        if self.size * self.spacing < MIN_FOV_MM:
            raise InputError(
                f"size * spacing = {self.size * self.spacing:g} mm: the field of view must be at least "
                f"{MIN_FOV_MM:g} mm to hold both breasts and the chest wall"
            )
        self.slices = integer(slices, "slices", 1, MAX_SIZE)
        if self.dims == 3:
            check_voxels((self.size, self.size, self.slices), "size x size x slices")
        self.slice_spacing = number(slice_spacing, "slice_spacing", 0, low_open=True)
        if not isinstance(n_lesions, (tuple, list)) or len(n_lesions) != 2:
            raise InputError(f"n_lesions must be a (min, max) pair, got {n_lesions!r}")
        low = integer(n_lesions[0], "n_lesions[0]", 0, 255)
        self.n_lesions = (low, integer(n_lesions[1], "n_lesions[1]", low, 255))
        self.malignant_fraction = number(malignant_fraction, "malignant_fraction", 0.0, 1.0)
        self.bilateral_probability = number(bilateral_probability, "bilateral_probability", 0.0, 1.0)
        self.post_times_min = self._checked_post_times(post_times_min)
        self.snr = number(snr, "snr", 0, low_open=True)

    def _checked_post_times(self, post_times) -> tuple[float, ...]:
        if not isinstance(post_times, (tuple, list)) or len(post_times) != 4:
            raise InputError(f"post_times_min must hold 4 times (minutes), got {post_times!r}")
        times = tuple(number(t, "post_times_min", 0, physics.KINETICS_GRID[-1], low_open=True) for t in post_times)
        if any(b <= a for a, b in zip(times, times[1:])):
            raise InputError(f"post_times_min must increase, got {post_times!r}")
        if not _curve_types_drawable(times):
            raise InputError(
                f"post_times_min {post_times!r}: too early or too short for lesions to show every kinetic curve "
                f"type (persistent, plateau and washout: last phase against the first, +-{CURVE_TYPE_CHANGE:.0%})"
            )
        return times

    def _grid(self) -> _Grid:
        n_z = self.slices if self.dims == 3 else 1
        spacing = (self.spacing, self.spacing, self.slice_spacing)
        shape = (self.size, self.size, n_z)
        return _Grid(shape, spacing, tuple(-(n - 1) / 2 * s for n, s in zip(shape, spacing)), self.dims == 2)

    @staticmethod
    def _streams(seed) -> tuple[np.random.Generator, np.random.Generator]:
        """Independent generators for anatomy and imaging, so :meth:`anatomy` matches :meth:`__call__`."""
        seed = integer(seed, "seed", 0)
        return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))

    def anatomy(self, seed: int) -> BreastAnatomy:
        """The ground truth of case ``seed``: tissue fractions, masks and lesions, before imaging."""
        rng = self._streams(seed)[0]
        count = int(rng.integers(self.n_lesions[0], self.n_lesions[1] + 1))
        kinds = ["malignant" if rng.random() < self.malignant_fraction else "benign" for _ in range(count)]
        return _anatomy(rng, self._grid(), self.bilateral_probability, kinds, self.post_times_min)

    def __call__(self, seed: int) -> PhantomCase:
        """Simulate case ``seed``."""
        anatomy = self.anatomy(seed)
        images, bpe = _image(anatomy, self._streams(seed)[1], self.post_times_min, self.snr)
        classes = [lesion.kind for lesion in anatomy.lesions]
        meta = {
            "seed": int(seed),
            "organ": self.organ,
            "class": "malignant" if "malignant" in classes else "benign" if classes else "healthy",
            "lesion_classes": classes,
            "curve_types": [lesion.curve_type for lesion in anatomy.lesions],
            "lesion_relaxation": [
                {"pd": lesion.tissue.pd, "t1_ms": lesion.tissue.t1, "t2_ms": lesion.tissue.t2}
                for lesion in anatomy.lesions
            ],
            "kinetics": [
                {**lesion.kinetics, "kep": lesion.kinetics["ktrans"] / lesion.kinetics["ve"]}
                for lesion in anatomy.lesions
            ],
            "lesion_sides": [lesion.side for lesion in anatomy.lesions],
            "lesion_centers_mm": [list(lesion.center_mm) for lesion in anatomy.lesions],
            "lesion_radii_mm": [lesion.radius_mm for lesion in anatomy.lesions],
            "post_times_min": list(self.post_times_min),
            "laterality": anatomy.laterality,
            "density": anatomy.density,
            "fgt_fraction": anatomy.fgt_fraction,
            "bpe_kinetics": bpe,
        }
        return PhantomCase(
            images=images,
            masks={
                "lesion": anatomy.lesion,
                "breast": anatomy.breast,
                "fgt": ((anatomy.fractions["fgt"] >= 0.5) & (anatomy.lesion == 0)).astype(np.uint8),
            },
            spacing=anatomy.spacing,
            origin=anatomy.origin,
            direction=np.eye(self.dims),
            meta=meta,
        )


# ----------------------------------------------------------------------------------------------------------
# Validation: `synthmr phantom validate breast` (synthmr.phantom.validate)
# ----------------------------------------------------------------------------------------------------------

# The validation cases hold 4-6 lesions each (default options otherwise), so five cases give ~25 lesions,
# ~12 per class: enough for the curve-type shares to be tested with the tolerance share_range allows.
VALIDATION_LESIONS = (4, 6)


def _tissue_signal(sequence, tissue: Tissue) -> float:
    """Noise-free signal of pure ``tissue`` on ``sequence`` (fat suppression applied to fat)."""
    signal = float(sequence.signal(tissue.pd, tissue.t1, tissue.t2))
    return signal * sequence.fat_suppression if tissue.fat else signal


def _expected_ratio_range(sequence, kind: str, reference: Tissue) -> tuple[float, float]:
    """Range of lesion / ``reference`` signal from the signal equation with the lesion's T1 and T2 at the
    published mean +- 1 SD of its class (within its drawing bounds), the reference tissue at its mean: where the
    median over lesions of a class should lie."""
    relaxation = LESION_RELAXATION[kind]
    ratios = [
        _tissue_signal(sequence, Tissue(relaxation.pd, float(np.clip(t1, *relaxation.t1_bounds)),
                                        float(np.clip(t2, *relaxation.t2_bounds))))
        / _tissue_signal(sequence, reference)
        for t1 in (relaxation.t1[0] - relaxation.t1[1], relaxation.t1[0] + relaxation.t1[1])
        for t2 in (relaxation.t2[0] - relaxation.t2[1], relaxation.t2[0] + relaxation.t2[1])
    ]
    return min(ratios), max(ratios)


def _pure(fraction: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Voxels (nearly) filled by one tissue inside ``within``, one voxel in from its edge, where blur does not
    mix in the neighbours."""
    return ndimage.binary_erosion((fraction > 0.99) & within)


def _measure_case(case: PhantomCase, anatomy: BreastAnatomy) -> dict:
    """Per-lesion and per-case measurements on the images of one validation case."""
    images, labels = case.images, case.masks["lesion"]
    breast = case.masks["breast"] > 0
    near_lesion = ndimage.binary_dilation(labels > 0, iterations=3)
    fgt = _pure(anatomy.fractions["fgt"], breast & ~near_lesion)
    fat = _pure(anatomy.fractions["fat"], breast & ~near_lesion)
    phases = ("t1_pre",) + tuple(f"t1_post{k}" for k in range(1, len(case.meta["post_times_min"]) + 1))
    out = {"lesions": [], "bpe": None}
    if fgt.sum() >= 10:
        pre, early, late = (float(images[key][fgt].mean()) for key in ("t1_pre", phases[1], phases[-1]))
        out["bpe"] = {"early": early / pre - 1.0, "late_over_early": late / early}
    voxel_area = float(np.prod(case.spacing))
    for lesion in anatomy.lesions:
        roi = labels == lesion.label
        if not roi.any():
            continue
        curve = [float(images[key][roi].mean()) for key in phases]
        measured = {
            "kind": lesion.kind,
            "curve_type": classify_curve(curve[1], curve[-1]),
            "enhancement": curve[1] / curve[0] - 1.0,
            "diameter_mm": (
                2.0 * np.sqrt(roi.sum() * voxel_area / np.pi)
                if roi.ndim == 2
                else 2.0 * (3.0 * roi.sum() * voxel_area / (4.0 * np.pi)) ** (1 / 3)
            ),
        }
        core = _pure(lesion.fraction, roi)
        for key in ("t2", "t1_pre"):
            if core.sum() >= 3:
                value = float(images[key][core].mean())
                if fgt.sum() >= 10:
                    measured[f"{key}/fgt"] = value / float(images[key][fgt].mean())
                if fat.sum() >= 10:
                    measured[f"{key}/fat"] = value / float(images[key][fat].mean())
        out["lesions"].append(measured)
    return out


def validation_figures(n: int, seed: int) -> list[Figure]:
    """Measure ``n`` cases (seeds ``seed ..``, default options with VALIDATION_LESIONS lesions per case) against
    the literature: curve-type shares per class (Kuhl et al. 1999), lesion and background enhancement, the
    pre-contrast contrast of lesions against FGT and fat on T2w and fat-suppressed T1w, and lesion sizes."""
    phantom = BreastPhantom(n_lesions=VALIDATION_LESIONS)
    measured = [_measure_case(phantom(s), phantom.anatomy(s)) for s in range(seed, seed + n)]
    lesions = [lesion for case in measured for lesion in case["lesions"]]
    bpe = [case["bpe"] for case in measured if case["bpe"] is not None]

    def median(kind: str, key: str) -> float:
        values = [lesion[key] for lesion in lesions if lesion["kind"] == kind and key in lesion]
        return float(np.median(values)) if values else float("nan")

    figures = []
    kuhl = "Kuhl et al., Radiology 1999;211:101-110"
    for kind in LESION_CLASSES:
        types = [lesion["curve_type"] for lesion in lesions if lesion["kind"] == kind]
        for curve_type, share in zip(CURVE_TYPES, _normalized(CURVE_TYPE_SHARES[kind])):
            low, high = share_range(float(share), max(len(types), 1))
            value = types.count(curve_type) / len(types) if types else float("nan")
            figures.append(Figure(f"{kind} lesions with a type {curve_type} curve (images)", value, low, high, kuhl))
    for kind in LESION_CLASSES:
        figures.append(
            Figure(
                f"{kind} early enhancement post1/pre - 1, median", median(kind, "enhancement"),
                MIN_EARLY_ENHANCEMENT - 0.1, np.inf,
                "design: enhancing lesions, >= 50 % (BI-RADS medium/rapid initial phase)",
            )
        )
    figures.append(
        Figure(
            "early enhancement malignant / benign, medians",
            median("malignant", "enhancement") / median("benign", "enhancement"), 1.0, np.inf,
            "Schabel et al., JMRI 2010 (higher Ktrans in cancers)",
        )
    )
    bpe_early = float(np.median([b["early"] for b in bpe])) if bpe else float("nan")
    bpe_trend = float(np.median([b["late_over_early"] for b in bpe])) if bpe else float("nan")
    figures += [
        Figure("FGT early enhancement (BPE) post1/pre - 1, median over cases", bpe_early, 0.0, 0.5,
               "design: minimal-moderate BPE, below lesions (Kuhl et al., Radiology 1997)"),
        Figure("FGT last / first post-contrast signal, median over cases", bpe_trend, 1.0, np.inf,
               "Kuhl et al., Radiology 1997 (slow progressive BPE)"),
    ]
    sources = {
        "malignant": "Meng et al. 2020 vs Edden et al. 2010, +-1 SD",
        "benign": "Liu et al. 2018 (T2; T1 assumed) vs Edden et al. 2010, +-1 SD",
    }
    for key, sequence in (("t2", T2_TSE), ("t1_pre", T1_FAT_SAT)):
        for reference in ("fgt", "fat"):
            for kind in LESION_CLASSES:
                low, high = _expected_ratio_range(sequence, kind, TISSUES[reference])
                figures.append(
                    Figure(f"{key} {kind} lesion / {reference.upper() if reference == 'fgt' else 'fat'}, median",
                           median(kind, f"{key}/{reference}"), low, high, sources[kind])
                )
    figures.append(
        Figure(
            "t2 benign / malignant lesion signal, medians",
            median("benign", "t2/fgt") / median("malignant", "t2/fgt"), 1.0, np.inf,
            "Liu et al. 2018; Kuhl et al., JMRI 1999 (fibroadenomas T2-bright)",
        )
    )
    for kind, (low, high) in (("benign", (8.0, 24.0)), ("malignant", (10.0, 30.0))):
        figures.append(
            Figure(f"{kind} lesion equivalent diameter, median", median(kind, "diameter_mm"), low, high,
                   "design: mean radius 4-12 mm benign, 5-15 mm malignant", "mm")
        )
    return figures
