"""Brain tumour phantom: BraTS-like t1n, t1c, t2w, t2f and an APT-weighted map from MNI anatomy.

Pipeline (docs/design.md, *The phantom*): the ICBM152 grey/white-matter probability maps that ship with nilearn give
the anatomy;
each subject is a random smooth deformation and a small global scaling of it; a glioma (necrotic core,
enhancing rim, edema spreading along white matter, mass effect) and optionally a resection cavity replace the
normal tissue fractions; :func:`synthmr.phantom.physics.render` turns fractions into the signal of each
sequence and :class:`synthmr.phantom.physics.Acquisition` adds noise. Images are skull-stripped (zero outside
the intracranial mask) like BraTS.

Geometry: the grid is the template's own (MNI world coordinates), resampled to isotropic ``spacing`` and
cropped to the brain, so ``case.volume(key).affine`` equals :attr:`BrainTemplate.affine`.

References
----------
- Fonov et al. "Unbiased average age-appropriate atlases for pediatric studies", NeuroImage 2011;54:313-327:
  the ICBM152 2009 nonlinear symmetric template and its tissue probability maps.
- Wansapura et al. "NMR relaxation times in the human brain at 3.0 tesla", JMRI 1999;9:531-538.
- Lu et al. "Routine clinical brain MRI sequences for use at 3.0 Tesla", JMRI 2005;22:13-22 (CSF T1).
- Spijkerman et al. "T2 mapping of cerebrospinal fluid: 3 T versus 7 T", MAGMA 2018.
- Neeb et al. "A new method for fast quantitative mapping of absolute water content in vivo",
  NeuroImage 2006;31:1156-1168 (proton density of white and grey matter).
- de Blank et al. "Magnetic resonance fingerprinting to characterize childhood and young adult brain tumors",
  Pediatr Neurosurg 2019 (tumour and peritumoral T1/T2 relative to contralateral white matter).
- Ellingson et al. "Consensus recommendations for a standardized Brain Tumor Imaging Protocol in clinical
  trials", Neuro-Oncology 2015;17:1188-1198 (sequence parameters, post-contrast timing).
- Patankar et al. "Is volume transfer coefficient (Ktrans) related to histologic grade in human gliomas?",
  AJNR 2005;26:2455-2465.
- Zhou et al. "Using the amide proton signals of intracellular proteins and peptides to detect pH effects in
  MRI", Nat Med 2003;9:1085-1090; Zhou et al. "Three-dimensional amide proton transfer MR imaging of gliomas:
  initial experience and comparison with gadolinium enhancement", JMRI 2013;38:1119-1128; Togao et al.
  "Amide proton transfer imaging of adult diffuse gliomas", Neuro-Oncology 2014;16:441-448 (APTw values).
- Larjavaara et al. "Incidence of gliomas by anatomic location", Neuro-Oncology 2007;9:319-325.
- Baid et al. "The RSNA-ASNR-MICCAI BraTS 2021 benchmark", arXiv 2107.02314: the tumour sub-regions whose
  labels BraTS 2023 uses as 1 NCR, 2 ED, 3 ET (ET renumbered from 4).
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import os
from dataclasses import dataclass
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation
from scipy.special import expit

from synthmr.errors import InputError
from synthmr.phantom import physics
from synthmr.phantom._arguments import number
from synthmr.phantom.case import PhantomCase
from synthmr.phantom.physics import Tissue

# nilearn ships the template in nilearn/datasets/data; locating the package without importing it avoids
# nilearn.datasets' ~3 s import of scikit-learn.
_NILEARN = importlib.util.find_spec("nilearn")
if _NILEARN is None:  # an import error like any other missing package ("train" extra, see synthmr.errors)
    raise ModuleNotFoundError("No module named 'nilearn' (the brain phantom's template ships with it)", name="nilearn")
TEMPLATE_DIR = os.path.join(_NILEARN.submodule_search_locations[0], "datasets", "data")
TEMPLATE_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"

# ----------------------------------------------------------------------------------------------------------
# Tissue properties at 3 T (times in ms, PD relative to water)
# ----------------------------------------------------------------------------------------------------------

_WM_T1, _WM_T2 = 832.0, 79.6  # frontal white matter, Wansapura et al. JMRI 1999
TISSUES: dict[str, Tissue] = {
    "wm": Tissue(pd=0.69, t1=_WM_T1, t2=_WM_T2),  # PD: Neeb et al. NeuroImage 2006
    "gm": Tissue(pd=0.80, t1=1331.0, t2=110.0),  # cortical GM, Wansapura et al. 1999; PD: Neeb et al. 2006
    # CSF: T1 4163 ms (Lu et al. JMRI 2005), T2 ~2 s at 3 T (Spijkerman et al. MAGMA 2018); pure water PD.
    # Fluids are homogeneous (heterogeneity 0: no texture field is drawn for them).
    "csf": Tissue(pd=1.0, t1=4163.0, t2=2000.0, heterogeneity=0.0),
    # Tumour and peritumoral tissue: de Blank et al. (Pediatr Neurosurg 2019, MR fingerprinting) measured
    # high-grade tumour at ~2.0x and peritumoral white matter at ~1.35x (T1) and ~1.7x (T2) the contralateral
    # white matter; we scale Wansapura's white matter by those ratios (their cohort was children and young
    # adults). PDs are raised with the water content (assumed values).
    "enhancing": Tissue(pd=0.85, t1=2.0 * _WM_T1, t2=2.0 * _WM_T2, heterogeneity=0.08),
    "edema": Tissue(pd=0.80, t1=1.35 * _WM_T1, t2=1.7 * _WM_T2, heterogeneity=0.05),
    # Necrosis: proteinaceous fluid and debris, between solid tumour and CSF (assumed; no reliable 3 T values).
    "necrosis": Tissue(pd=0.90, t1=2500.0, t2=300.0, heterogeneity=0.10),
    # Resection cavity: fills with CSF-like fluid, so it is dark on FLAIR and bright on T2 (assumed: blood
    # products and protein, which shorten T1 in early post-operative scans, are not modelled).
    "cavity": Tissue(pd=1.0, t1=4163.0, t2=2000.0, heterogeneity=0.0),
}

# APT-weighted signal, MTRasym(3.5 ppm) in percent of the water signal. Normal-appearing brain ~0-1 %,
# peritumoral edema ~1-1.5 %, solid high-grade tumour ~3-4 %, necrosis ~2 % (Zhou et al. Nat Med 2003;
# Zhou et al. JMRI 2013; Togao et al. Neuro-Oncology 2014). Fluid reads ~1 % from direct-saturation asymmetry.
APTW_PERCENT: dict[str, float] = {
    "wm": 0.4,
    "gm": 0.7,
    "csf": 1.0,
    "edema": 1.3,
    "enhancing": 3.5,
    "necrosis": 2.0,
    "cavity": 1.0,
}
# 3D turbo-spin-echo APTw is acquired at ~2.2 x 2.2 x 4.4 mm (Zhou et al. JMRI 2013): blur with Gaussians of
# that FWHM. Its voxelwise noise is ~0.3 % at our default SNR of 30 and scales inversely with ``snr``.
APTW_RESOLUTION_MM = (2.2, 2.2, 4.4)
APTW_NOISE_PERCENT_AT_SNR30 = 0.3

# ----------------------------------------------------------------------------------------------------------
# Sequences at 3 T (Ellingson et al. Neuro-Oncology 2015 protocol ranges)
# ----------------------------------------------------------------------------------------------------------


def flair_inversion_time(tr: float, t1: float) -> float:
    """Inversion time (ms) that nulls a tissue of longitudinal relaxation ``t1`` at repetition time ``tr``.

    From 1 - 2 exp(-TI/T1) + exp(-TR/T1) = 0.
    """
    return t1 * math.log(2.0 / (1.0 + math.exp(-tr / t1)))


T1_SEQUENCE = physics.SpoiledGradientEcho(tr=20.0, te=4.0, flip_deg=25.0)  # 3D spoiled GRE, pre and post Gd
T2_SEQUENCE = physics.SpinEcho(tr=5000.0, te=100.0)  # 2D TSE, TR > 2500 ms, TE 80-120 ms
_FLAIR_TR = 9000.0  # 2D FLAIR, TR > 6000 ms, TE 100-140 ms, TI 2000-2500 ms
FLAIR_SEQUENCE = physics.InversionRecovery(
    tr=_FLAIR_TR, te=120.0, ti=flair_inversion_time(_FLAIR_TR, TISSUES["csf"].t1)
)
T1C_DELAY_MIN = 5.0  # post-contrast 3D T1 is acquired ~5 min after a 0.1 mmol/kg injection

# ----------------------------------------------------------------------------------------------------------
# Geometry constants (mm)
# ----------------------------------------------------------------------------------------------------------

# The ICBM152 template's own voxel size: a finer grid only interpolates it, and at 0.5 mm would hold ~50 M voxels, past
# the phantoms' memory bound (synthmr.phantom._arguments.MAX_VOXELS).
MIN_SPACING_MM = 1.0
GRID_MARGIN_MM = 12.0  # room for the +-5 % scaling (~4 mm at the brain edge) plus ~2 std of the deformation
DEFORMATION_SCALE_MM = 20.0  # correlation length of the subject deformation: lobe-sized shape differences
SCALE_RANGE = 0.05  # global scaling +-5 % per axis: spread of adult head sizes after MNI-like alignment
TEXTURE_SCALE_MM = 8.0  # correlation length of within-tissue heterogeneity
BOUNDARY_SCALE_MM = 8.0  # correlation length of the tumour-boundary perturbation
BOUNDARY_AMPLITUDE = 0.12  # relative std of the tumour radius along its boundary
BIAS_SCALE_MM = 100.0  # receive-coil shading varies over ~10 cm
BIAS_STD = 0.1  # std of the log bias field (~ +-20 % shading)
TUMOR_RADIUS_MM = (15.0, 30.0)
MIN_TUMOR_DEPTH_MM = 15.0  # tumour centres at least this far inside the brain surface


# ----------------------------------------------------------------------------------------------------------
# Template
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrainTemplate:
    """The ICBM152 template on an isotropic grid cropped to the brain (arrays are read-only, shared).

    Attributes:
        gm, wm: grey- and white-matter fractions (float32, 0..1).
        intracranial: intracranial fraction (float32, 0..1); CSF is ``intracranial - gm - wm``.
        affine: voxel index -> RAS mm (nibabel convention) of this grid.
        centre_mm: RAS centroid of the intracranial volume, the fixed point of the subject scaling.
        tumor_sites: ``(n, 3)`` voxel indices where a tumour may be centred.
    """

    gm: np.ndarray
    wm: np.ndarray
    intracranial: np.ndarray
    affine: np.ndarray
    centre_mm: np.ndarray
    tumor_sites: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.gm.shape


@lru_cache(maxsize=1)
def _template_1mm() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GM and WM probability (uint8, 255 = 1), intracranial mask and affine at 1 mm; loaded once per process.

    Kept as stored (uint8, ~22 MB) rather than as floats, since it lives as long as the process.
    The nilearn T1 template is already brain-extracted: every voxel inside the skull (brain and CSF, ventricles
    included: the mask is one component without holes) is non-zero and everything outside is exactly 0, so
    ``t1 > 0`` is the intracranial mask.
    """
    images = {k: nib.load(os.path.join(TEMPLATE_DIR, TEMPLATE_FILE.format(k))) for k in ("t1", "gm", "wm")}
    gm, wm = (np.asarray(images[k].dataobj, dtype=np.uint8) for k in ("gm", "wm"))
    return gm, wm, np.asarray(images["t1"].dataobj) > 0, images["t1"].affine


def _resample(volume: np.ndarray, ratio: float, start: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Average ``volume`` onto a grid ``ratio`` times coarser whose voxel 0 sits at index ``start``.

    A Gaussian with the variance of an ``ratio``-wide box (minus the 1-voxel box already there) stands in for
    the voxel average, so downsampled maps keep their partial volume instead of aliasing.
    """
    if ratio > 1:
        volume = ndimage.gaussian_filter(volume, math.sqrt((ratio**2 - 1.0) / 12.0))
    return ndimage.affine_transform(volume, np.full(3, ratio), offset=start, output_shape=shape, order=1)


@lru_cache(maxsize=4)
def brain_template(spacing: float) -> BrainTemplate:
    """The ICBM152 2009a template resampled to ``spacing`` mm, cropped to the brain plus ``GRID_MARGIN_MM``.

    Cached per spacing; the returned arrays are read-only because every case shares them.

    Args:
        spacing: isotropic voxel size of the grid, mm.
    """
    gm_1mm, wm_1mm, mask_1mm, affine_1mm = _template_1mm()
    voxel_mm = float(np.linalg.norm(affine_1mm[:3, 0]))
    ratio = spacing / voxel_mm
    inside = np.nonzero(mask_1mm)
    low = np.array([i.min() for i in inside]) - GRID_MARGIN_MM / voxel_mm
    high = np.array([i.max() for i in inside]) + GRID_MARGIN_MM / voxel_mm
    shape = tuple(int(n) for n in np.ceil((high - low) / ratio) + 1)
    index_map = np.diag([ratio, ratio, ratio, 1.0])
    index_map[:3, 3] = low
    affine = affine_1mm @ index_map

    # The GM/WM maps are blurrier than the brain mask and leak slightly past it: clipping them to it
    # skull-strips them, and keeps GM + WM <= intracranial through the (positive, linear) resampling.
    mask = mask_1mm.astype(np.float32)
    gm, wm, intracranial = (
        np.clip(_resample(v, ratio, low, shape), 0.0, 1.0)
        for v in (gm_1mm * (mask / 255.0), wm_1mm * (mask / 255.0), mask)
    )
    brain = intracranial >= 0.5
    world = _to_world(affine, np.indices(shape, dtype=np.float64))
    depth = ndimage.distance_transform_edt(brain, sampling=spacing)
    # Adult diffuse gliomas arise mostly in supratentorial hemispheric white matter (Larjavaara et al. 2007):
    # exclude the midline (|x| < 15 mm) and the posterior fossa (z < -10 mm).
    sites = (wm >= 0.5) & (depth >= MIN_TUMOR_DEPTH_MM) & (np.abs(world[0]) >= 15.0) & (world[2] >= -10.0)
    template = BrainTemplate(gm, wm, intracranial, affine, world[:, brain].mean(axis=1), np.argwhere(sites))
    for array in (template.gm, template.wm, template.intracranial, template.affine, template.centre_mm,
                  template.tumor_sites):
        array.flags.writeable = False
    return template


# nibabel's world is RAS, ITK's (and the case grid's) LPS: flip the first two axes.
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _to_world(affine: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Voxel indices ``(3, ...)`` -> world mm ``(3, ...)``."""
    return np.tensordot(affine[:3, :3], index, axes=1) + affine[:3, 3].reshape((3,) + (1,) * (index.ndim - 1))


def _to_index(affine: np.ndarray, world: np.ndarray) -> np.ndarray:
    """World mm ``(3, ...)`` -> voxel indices ``(3, ...)``."""
    shift = affine[:3, 3].reshape((3,) + (1,) * (world.ndim - 1))
    return np.tensordot(np.linalg.inv(affine[:3, :3]), world - shift, axes=1)


# ----------------------------------------------------------------------------------------------------------
# Subject anatomy
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tumor:
    """The drawn parameters of one glioma (lengths in mm, RAS world coordinates).

    Attributes:
        centre: tumour centre.
        radii: ellipsoid semi-axes of the tumour (enhancing rim outer boundary).
        rotation: ``(3, 3)`` orientation of the ellipsoid.
        necrosis_fraction: radius of the necrotic core relative to the tumour.
        edema_extent: reach of the edema beyond the tumour, relative to its radius, in pure white matter
            (0.3 of it in grey matter: vasogenic edema spreads along white-matter tracts).
        push_radius: radius of the sphere whose volume the tumour adds to the brain (mass effect).
        ktrans, ve, vp: extended-Tofts parameters of the enhancing tumour (1/min, fractions).
        cavity_fraction: radius of the resection cavity relative to the tumour; 0 when there is none.
        cavity_offset: shift of the cavity centre from the tumour centre.
    """

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    necrosis_fraction: float
    edema_extent: float
    push_radius: float
    ktrans: float
    ve: float
    vp: float
    cavity_fraction: float
    cavity_offset: np.ndarray

    @property
    def has_cavity(self) -> bool:
        return self.cavity_fraction > 0

    def meta(self) -> dict:
        """JSON-serialisable description; positions in LPS mm like the case grid."""
        return {
            "tumor_center_mm": [float(v) for v in _RAS_TO_LPS @ self.centre],
            "hemisphere": "left" if self.centre[0] < 0 else "right",
            "tumor_radii_mm": [float(r) for r in self.radii],
            "necrosis_fraction": self.necrosis_fraction,
            "edema_extent": self.edema_extent,
            "mass_effect_radius_mm": self.push_radius,
            "ktrans_per_min": self.ktrans,
            "ve": self.ve,
            "vp": self.vp,
            "cavity_fraction": self.cavity_fraction,
            "cavity_offset_mm": [float(v) for v in _RAS_TO_LPS @ self.cavity_offset],
        }



def _draw_tumor(rng: np.random.Generator, template: BrainTemplate, cavity_probability: float) -> Tumor:
    """A random glioma centred in hemispheric white matter of ``template``."""
    site = template.tumor_sites[rng.integers(len(template.tumor_sites))]
    radius = rng.uniform(*TUMOR_RADIUS_MM)
    radii = radius * rng.uniform(0.8, 1.2, 3)
    cavity = rng.random() < cavity_probability
    direction = rng.standard_normal(3)
    # The resection is off-centre by up to 0.3 radius, so the residual enhancing rim is uneven.
    cavity_offset = direction / np.linalg.norm(direction) * rng.uniform(0.0, 0.3) * radius
    return Tumor(
        centre=_to_world(template.affine, site.astype(np.float64)),
        radii=radii,
        rotation=Rotation.random(rng=rng).as_matrix(),
        necrosis_fraction=float(rng.uniform(0.3, 0.7)),
        edema_extent=float(rng.uniform(0.3, 1.0)),
        # Below 0.6 of the smallest semi-axis the compressed region stays inside the tumour even where the
        # boundary perturbation pulls it in (exp(-2.5 * 0.12) ~ 0.74).
        push_radius=float(rng.uniform(0.3, 0.6) * radii.min()),
        # Enhancing high-grade glioma: Ktrans ~0.05-0.15 /min (Patankar et al. AJNR 2005); typical ve, vp.
        ktrans=float(rng.uniform(0.05, 0.15)),
        ve=float(rng.uniform(0.2, 0.4)),
        vp=float(rng.uniform(0.02, 0.06)),
        cavity_fraction=float(rng.uniform(0.7, 0.95)) if cavity else 0.0,
        cavity_offset=cavity_offset if cavity else np.zeros(3),
    )


def _undo_mass_effect(points: np.ndarray, tumor: Tumor) -> np.ndarray:
    """Where the tissue now at ``points`` was before the tumour pushed it away from its centre.

    Incompressible expansion: inserting a sphere of radius p moves tissue from radius rho to r with
    r^3 = rho^3 + p^3, so the displacement is largest at the tumour and decays as p^3 / (3 r^2).
    """
    offset = points - tumor.centre.reshape((3,) + (1,) * (points.ndim - 1))
    r = np.linalg.norm(offset, axis=0)
    rho = np.cbrt(np.maximum(r**3 - tumor.push_radius**3, 0.0))
    return points - offset * (1.0 - np.divide(rho, r, out=np.zeros_like(r), where=r > 0))


def _lesion_radius(points: np.ndarray, tumor: Tumor, centre: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Ellipsoidal radius of ``points`` around ``centre`` (1 on the tumour surface), perturbed by ``boundary``."""
    offset = points - centre.reshape((3,) + (1,) * (points.ndim - 1))
    local = np.tensordot(tumor.rotation.T, offset, axes=1) / tumor.radii.reshape((3,) + (1,) * (points.ndim - 1))
    return np.linalg.norm(local, axis=0) * np.exp(boundary)


@dataclass(frozen=True)
class BrainAnatomy:
    """One subject before imaging: tissue fractions and exact labels on the case grid.

    Attributes:
        fractions: tissue name (keys of :data:`TISSUES`) -> float32 fraction; they sum to ``intracranial``.
        intracranial: float32 intracranial fraction (soft brain edge).
        masks: ``label`` (BraTS 2023), ``lesion_map`` (SAMR) and ``brain``, uint8.
        spacing, origin, direction: the grid (LPS), as in :class:`~synthmr.phantom.case.PhantomCase`.
        meta: the drawn parameters.
        tumor: the drawn tumour, or None for a healthy subject.
    """

    fractions: dict[str, np.ndarray]
    intracranial: np.ndarray
    masks: dict[str, np.ndarray]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray
    meta: dict
    tumor: Tumor | None


def _subject_tissue(
    template: BrainTemplate, points: np.ndarray, tumor: Tumor | None, scale: np.ndarray, displacement: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Normal GM/WM/CSF fractions and the intracranial fraction of one subject at world ``points``.

    Output point -> (undo the tumour's mass effect) -> (undo the subject's scaling about the brain centre and
    its smooth deformation) -> template voxel. All maps are sampled through that one set of coordinates
    (linear interpolation, as the maps are fractions), so they stay aligned and partial volume is kept.
    """
    before_tumor = points if tumor is None else _undo_mass_effect(points, tumor)
    centre = template.centre_mm.reshape((3,) + (1,) * (points.ndim - 1))
    source_mm = centre + (before_tumor - centre) / scale.reshape(centre.shape) + displacement
    source = _to_index(template.affine, source_mm)
    gm, wm, intracranial = (
        ndimage.map_coordinates(volume, source, order=1, mode="constant", cval=0.0)
        for volume in (template.gm, template.wm, template.intracranial)
    )
    return {"wm": wm, "gm": gm, "csf": np.clip(intracranial - gm - wm, 0.0, 1.0)}, intracranial


def _lesion_fractions(
    points: np.ndarray, normal: dict[str, np.ndarray], tumor: Tumor, boundary: np.ndarray, edge: float
) -> dict[str, np.ndarray]:
    """Tissue fractions with the lesion replacing normal tissue; nested soft shells keep them consistent.

    Tumour (and cavity) replace every intracranial tissue; edema only infiltrates parenchyma (GM/WM), so a sulcus
    or ventricle inside the edema zone stays CSF.
    """
    rho = _lesion_radius(points, tumor, tumor.centre, boundary)
    gm, wm, csf = normal["gm"], normal["wm"], normal["csf"]
    parenchyma = gm + wm
    intracranial = parenchyma + csf
    white_share = np.divide(wm, parenchyma, out=np.zeros_like(wm), where=parenchyma > 0)
    edema_reach = 1.0 + tumor.edema_extent * (0.3 + 0.7 * white_share)

    if tumor.has_cavity:
        inner_name = "cavity"
        cavity_rho = _lesion_radius(points, tumor, tumor.centre + tumor.cavity_offset, boundary)
        inner = expit((tumor.cavity_fraction - cavity_rho) / edge)
    else:
        inner_name = "necrosis"
        inner = expit((tumor.necrosis_fraction - rho) / edge)
    lesion = np.maximum(expit((1.0 - rho) / edge), inner)
    edema_zone = np.maximum(expit((edema_reach - rho) / edge), lesion)
    return {
        "wm": wm * (1.0 - edema_zone),
        "gm": gm * (1.0 - edema_zone),
        "csf": csf * (1.0 - lesion),
        "edema": (edema_zone - lesion) * parenchyma,
        "enhancing": (lesion - inner) * intracranial,
        inner_name: inner * intracranial,
    }


# Hard labels: the class with the largest fraction in each brain voxel. Rows: normal, necrosis, edema,
# enhancing, cavity. BraTS 2023 has no cavity label (0); the SAMR lesion map does (3).
_CLASS_TISSUES = (("wm", "gm", "csf"), ("necrosis",), ("edema",), ("enhancing",), ("cavity",))
_BRATS_LABEL = np.array([0, 1, 2, 3, 0], dtype=np.uint8)
_LESION_MAP = np.array([1, 4, 2, 4, 3], dtype=np.uint8)


def _masks(fractions: dict[str, np.ndarray], brain: np.ndarray) -> dict[str, np.ndarray]:
    """``label``, ``lesion_map`` and ``brain`` from the dominant tissue class of each voxel."""
    zero = np.zeros_like(brain, dtype=np.float32)
    totals = np.stack([sum((fractions.get(t, zero) for t in tissues), zero) for tissues in _CLASS_TISSUES])
    dominant = np.argmax(totals, axis=0)
    return {
        "label": np.where(brain, _BRATS_LABEL[dominant], 0).astype(np.uint8),
        "lesion_map": np.where(brain, _LESION_MAP[dominant], 0).astype(np.uint8),
        "brain": brain.astype(np.uint8),
    }


# ----------------------------------------------------------------------------------------------------------
# Imaging
# ----------------------------------------------------------------------------------------------------------


def _relaxation_images(anatomy: BrainAnatomy, rng: np.random.Generator, snr: float) -> dict[str, np.ndarray]:
    """t1n, t1c, t2w, t2f: signal equations, one receive-bias field for the session, Rician noise.

    Everything after the spatially smooth fields is voxelwise, so it runs on the brain voxels only (a third of
    the grid) and the background stays exactly 0, as in skull-stripped BraTS images.
    """
    spacing = anatomy.spacing[0]
    brain = anatomy.masks["brain"] > 0
    shape = brain.shape
    texture = {
        name: physics.smooth_field(shape, rng, TEXTURE_SCALE_MM / spacing, TISSUES[name].heterogeneity)[brain]
        for name in anatomy.fractions
        if TISSUES[name].heterogeneity > 0
    }
    # One coil, one head position: every sequence of the session shares the receive bias, so a healthy
    # t1c differs from t1n by noise only.
    bias = np.exp(physics.smooth_field(shape, rng, BIAS_SCALE_MM / spacing, BIAS_STD))[brain]
    fractions = {name: fraction[brain] for name, fraction in anatomy.fractions.items()}
    gadolinium = {}
    if anatomy.tumor is not None:
        tumor = anatomy.tumor
        curve = physics.extended_tofts(tumor.ktrans, tumor.ve, tumor.vp)
        # Only the enhancing rim has a leaky blood-brain barrier; normal brain, edema and necrosis keep Gd out.
        gadolinium = {"enhancing": physics.sample(curve, T1C_DELAY_MIN)}
    acquire = physics.Acquisition(snr=snr, bias=0.0)  # no blur, no own bias: voxelwise, fine on 1D arrays
    protocol = {
        "t1n": (T1_SEQUENCE, None),
        "t1c": (T1_SEQUENCE, gadolinium),
        "t2w": (T2_SEQUENCE, None),
        "t2f": (FLAIR_SEQUENCE, None),
    }
    images = {}
    for key, (sequence, concentration) in protocol.items():
        signal = physics.render(sequence, fractions, TISSUES, concentration, texture) * bias
        images[key] = np.zeros(shape, dtype=np.float32)
        images[key][brain] = acquire(signal, rng)
    return images


def _aptw_image(anatomy: BrainAnatomy, rng: np.random.Generator, snr: float) -> np.ndarray:
    """APT-weighted map in percent: a tissue property at APT resolution plus Gaussian noise.

    MTRasym is a difference of two normalised images, so it has neither Rician statistics nor a positive-only
    scale, and partial volume with air does not dilute it: the fraction-weighted mean of the tissue present is
    blurred with normalised convolution so the brain edge is not pulled towards 0.
    """
    weight = anatomy.intracranial.astype(np.float64)
    apt = sum(fraction * APTW_PERCENT[name] for name, fraction in anatomy.fractions.items())
    ndim = len(anatomy.spacing)
    fwhm_to_sigma = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    # A 2D case is one axial plane: only the in-plane blur applies.
    sigma = [fwhm * fwhm_to_sigma / s for fwhm, s in zip(APTW_RESOLUTION_MM[:ndim], anatomy.spacing)]
    blurred = ndimage.gaussian_filter(apt, sigma)
    support = ndimage.gaussian_filter(weight, sigma)
    value = np.divide(blurred, support, out=np.zeros_like(support), where=support > 1e-3)
    value += rng.normal(0.0, APTW_NOISE_PERCENT_AT_SNR30 * 30.0 / snr, value.shape)
    return np.where(anatomy.masks["brain"] > 0, value, 0.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------
# The phantom
# ----------------------------------------------------------------------------------------------------------


class BrainPhantom:
    """Simulated glioma MRI (BraTS 2023 sequences plus APTw) on MNI ICBM152 anatomy.

    Configuration goes to the constructor; ``phantom(seed)`` returns one reproducible
    :class:`~synthmr.phantom.case.PhantomCase`. Images: ``t1n`` and ``t1c`` (3D spoiled gradient echo before and
    5 min after Gd), ``t2w`` (spin echo), ``t2f`` (FLAIR with CSF nulled), float32 scaled so the 99th brain
    percentile is ~1000, zero outside the brain; ``aptw`` (MTRasym at 3.5 ppm, percent). Masks: ``label``
    (BraTS 2023: 1 necrotic core, 2 edema, 3 enhancing), ``lesion_map`` (SAMR: 1 normal brain, 2 edema,
    3 surgical cavity, 4 tumour), ``brain`` (intracranial mask). Coordinates are MNI (LPS on the case grid).
    ``phantom.anatomy(seed)`` returns the tissue fractions behind ``phantom(seed)``, e.g. to select pure tissue.

    Args:
        dims: 3 for a volume, 2 for one axial plane through the tumour centre (mid-brain when healthy); the 2D
            case stores the plane's z in ``meta["slice_z_mm"]``.
        spacing: isotropic voxel size in mm, [1, 10]: finer than the template's 1 mm voxels adds no anatomy (and
            would exceed memory: ~6 M voxels at 1 mm, 50 M at 0.5 mm), coarser cannot hold a 15 mm tumour's structure.
        tumor_probability: chance that the subject has a glioma.
        cavity_probability: chance that a tumour has been partly resected (fluid-filled cavity).
        deformation_mm: std of the smooth random subject deformation per axis, [0, 10].
        snr: signal-to-noise ratio of the brightest tissue; also scales the APTw noise (0.3 % at 30).
    """

    organ = "brain"
    sequences = ("t1n", "t1c", "t2w", "t2f", "aptw")
    masks = ("label", "lesion_map", "brain")
    lesion_mask = "label"  # the mask whose labels outline the lesions in previews

    def __init__(
        self,
        dims: int = 3,
        spacing: float = 2.0,
        tumor_probability: float = 1.0,
        cavity_probability: float = 0.0,
        deformation_mm: float = 4.0,
        snr: float = 30.0,
    ):
        if isinstance(dims, bool) or not isinstance(dims, numbers.Integral) or dims not in (2, 3):
            raise InputError(f"dims must be 2 or 3, got {dims!r}")
        self.dims = int(dims)
        self.spacing = number(spacing, "spacing", MIN_SPACING_MM, 10.0)
        self.tumor_probability = number(tumor_probability, "tumor_probability", 0.0, 1.0)
        self.cavity_probability = number(cavity_probability, "cavity_probability", 0.0, 1.0)
        self.deformation_mm = number(deformation_mm, "deformation_mm", 0.0, 10.0)
        self.snr = number(snr, "snr", 0.0, math.inf, low_open=True)

    def __repr__(self) -> str:
        return (
            f"BrainPhantom(dims={self.dims}, spacing={self.spacing:g}, "
            f"tumor_probability={self.tumor_probability:g}, cavity_probability={self.cavity_probability:g}, "
            f"deformation_mm={self.deformation_mm:g}, snr={self.snr:g})"
        )

    def __call__(self, seed: int) -> PhantomCase:
        """The case drawn from ``seed`` (a non-negative integer)."""
        anatomy = self.anatomy(seed)
        rng = np.random.default_rng(_seed_sequence(seed).spawn(2)[1])
        images = _relaxation_images(anatomy, rng, self.snr)
        images["aptw"] = _aptw_image(anatomy, rng, self.snr)
        return PhantomCase(images, anatomy.masks, anatomy.spacing, anatomy.origin, anatomy.direction, anatomy.meta)

    def anatomy(self, seed: int) -> BrainAnatomy:
        """The subject of ``phantom(seed)`` before imaging: its tissue fractions, masks and drawn parameters."""
        rng = np.random.default_rng(_seed_sequence(seed).spawn(2)[0])
        template = brain_template(self.spacing)
        has_tumor = rng.random() < self.tumor_probability
        tumor = _draw_tumor(rng, template, self.cavity_probability) if has_tumor else None
        index = self._grid_index(template, tumor)
        points = _to_world(template.affine, index)
        grid_shape = points.shape[1:]

        scale = rng.uniform(1.0 - SCALE_RANGE, 1.0 + SCALE_RANGE, 3)
        sigma = DEFORMATION_SCALE_MM / self.spacing
        displacement = np.stack([physics.smooth_field(grid_shape, rng, sigma, self.deformation_mm) for _ in range(3)])
        normal, intracranial = _subject_tissue(template, points, tumor, scale, displacement)
        if tumor is None:
            fractions = normal
        else:
            boundary = physics.smooth_field(grid_shape, rng, BOUNDARY_SCALE_MM / self.spacing, BOUNDARY_AMPLITUDE)
            # A logistic edge with the variance of a voxel-wide box: partial volume of a sharp lesion boundary.
            edge = self.spacing / (2.0 * math.pi) / float(np.mean(tumor.radii))
            fractions = _lesion_fractions(points, normal, tumor, boundary, edge)
        fractions = {name: f.astype(np.float32) for name, f in fractions.items()}

        meta = {
            "seed": int(seed),
            "organ": self.organ,
            "dims": self.dims,
            "spacing_mm": self.spacing,
            "template": "MNI ICBM152 2009a nonlinear symmetric (nilearn)",
            "tumor": tumor is not None,
            "cavity": tumor is not None and tumor.has_cavity,
            "scale": [float(s) for s in scale],
            "deformation_mm": self.deformation_mm,
            **(tumor.meta() if tumor is not None else {"tumor_center_mm": None}),
        }
        if self.dims == 2:
            meta["slice_z_mm"] = float(points[2, 0, 0])
        spacing, origin, direction = _lps_grid(template.affine, index)
        masks = _masks(fractions, intracranial >= 0.5)
        return BrainAnatomy(fractions, intracranial, masks, spacing, origin, direction, meta, tumor)

    def _grid_index(self, template: BrainTemplate, tumor: Tumor | None) -> np.ndarray:
        """Template voxel indices ``(3, *grid)`` of the output grid: the volume, or one axial plane."""
        if self.dims == 3:
            return np.indices(template.shape, dtype=np.float64)
        if tumor is None:
            plane = template.shape[2] // 2  # the grid is centred on the brain: mid-brain
        else:
            plane = int(round(_to_index(template.affine, tumor.centre)[2]))
        in_plane = np.indices(template.shape[:2], dtype=np.float64)
        return np.concatenate([in_plane, np.full((1,) + template.shape[:2], float(plane))])


def _seed_sequence(seed: int) -> np.random.SeedSequence:
    """Independent streams for anatomy and acquisition, so :meth:`BrainPhantom.anatomy` matches the case."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.SeedSequence(int(seed))


def _lps_grid(affine: np.ndarray, index: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], np.ndarray]:
    """Spacing, LPS origin and LPS direction of the grid whose first voxel is ``index[:, 0, ...]``.

    ITK's world is LPS and nibabel's RAS: flipping the first two rows of the affine converts one to the other.
    A 2D grid keeps the in-plane part; the plane's z goes to the case metadata.
    """
    ndim = index.ndim - 1
    lps = _RAS_TO_LPS @ affine[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    origin = _RAS_TO_LPS @ _to_world(affine, index[(slice(None),) + (0,) * ndim])
    direction = lps / spacing
    return tuple(float(s) for s in spacing[:ndim]), tuple(float(o) for o in origin[:ndim]), direction[:ndim, :ndim]
