"""Brain tumour phantom: BraTS-like t1n, t1c, t2w, t2f and an APT-weighted map from MNI anatomy.

Pipeline (docs/design.md, *The phantom*): the ICBM152 grey/white-matter probability maps that ship with nilearn give
the anatomy. Each subject is that template moved by its own transform: head size and shape (per-axis scaling), pose
(small rotations) and position (a shift within the grid), a large smooth diffeomorphic deformation (a stationary
velocity field on a coarse grid, integrated by scaling and squaring) that also enlarges or shrinks the lateral
ventricles, and cortical atrophy (parenchyma thinned where it borders CSF: wider sulci, thinner cortex). A glioma
(irregular enhancing tumour with an off-centre necrotic core, a non-enhancing tumour part, edema spreading along
white matter, mass effect, sometimes a satellite focus) and optionally a resection cavity replace the normal tissue
fractions; :func:`synthmr.phantom.physics.render` turns fractions into the signal of each sequence and
:class:`synthmr.phantom.physics.Acquisition` adds noise. Images are skull-stripped (zero outside the intracranial
mask) like BraTS.

Geometry: world coordinates are MNI (RAS inside this module, LPS on the case grid). ``grid="template"`` is the
template's own grid resampled to isotropic ``spacing`` and cropped to the brain, so ``case.volume(key).affine``
equals :attr:`BrainTemplate.affine`; ``grid="brats"`` is the BraTS grid: 1 mm isotropic, 240 x 240 x 155, axial,
LPS direction = identity (how ITK reads BraTS NIfTIs), the MNI brain centred in-plane with its vertex 6 mm below
the top slice (the lowest few mm of the medulla fall below the grid, as in many BraTS volumes).

References
----------
- Fonov et al. "Unbiased average age-appropriate atlases for pediatric studies", NeuroImage 2011;54:313-327:
  the ICBM152 2009 nonlinear symmetric template and its tissue probability maps.
- Arsigny, Commowick, Pennec, Ayache. "A Log-Euclidean framework for statistics on diffeomorphisms", MICCAI 2006,
  LNCS 4190:924-931: stationary velocity fields and their exponential by scaling and squaring.
- Wansapura et al. "NMR relaxation times in the human brain at 3.0 tesla", JMRI 1999;9:531-538.
- Wright et al. "Water proton T1 measurements in brain tissue at 7, 3, and 1.5 T using IR-EPI, IR-TSE, and
  MPRAGE: results and optimization", MAGMA 2008;21:121-130 (GM T1 > WM T1 at 3 T).
- Lu et al. "Routine clinical brain MRI sequences for use at 3.0 Tesla", JMRI 2005;22:13-22 (CSF T1).
- Spijkerman et al. "T2 mapping of cerebrospinal fluid: 3 T versus 7 T", MAGMA 2018;31:415-424.
- Neeb et al. "A new method for fast quantitative mapping of absolute water content in vivo",
  NeuroImage 2006;31:1156-1168 (proton density of white and grey matter).
- de Blank et al. "Magnetic resonance fingerprinting to characterize childhood and young adult brain tumors",
  Pediatr Neurosurg 2019 (tumour and peritumoral T1/T2 relative to contralateral white matter).
- Ellingson et al. "Consensus recommendations for a standardized Brain Tumor Imaging Protocol in clinical
  trials", Neuro-Oncology 2015;17:1188-1198 (sequence parameters: 3D MPRAGE TR 2100 ms / TI 1100 ms at 3 T,
  2D T2 TSE, 2D FLAIR; post-contrast timing).
- Patankar et al. "Is volume transfer coefficient (Ktrans) related to histologic grade in human gliomas?",
  AJNR 2005;26:2455-2465.
- Zhou et al. "Using the amide proton signals of intracellular proteins and peptides to detect pH effects in
  MRI", Nat Med 2003;9:1085-1090; Zhou et al. "Three-dimensional amide proton transfer MR imaging of gliomas:
  initial experience and comparison with gadolinium enhancement", JMRI 2013;38:1119-1128; Togao et al.
  "Amide proton transfer imaging of adult diffuse gliomas", Neuro-Oncology 2014;16:441-448 (APTw values).
- Larjavaara et al. "Incidence of gliomas by anatomic location", Neuro-Oncology 2007;9:319-325.
- Baid et al. "The RSNA-ASNR-MICCAI BraTS 2021 benchmark", arXiv 2107.02314: the tumour sub-regions whose
  labels BraTS 2023 uses as 1 NCR (necrosis and non-enhancing tumour), 2 ED, 3 ET (ET renumbered from 4).
- Bakas et al. "Advancing The Cancer Genome Atlas glioma MRI collections with expert segmentation labels and
  radiomic features", Sci Data 2017;4:170117: BraTS images are skull-stripped, co-registered to the SRI-24 atlas
  and resampled to 1 mm isotropic, 240 x 240 x 155.
- "Postoperative fluid-attenuated inversion recovery MR imaging of cerebral gliomas: initial results", Eur Radiol
  2001;11:2004-2010, doi:10.1007/s003300100856 (cavity fluid not suppressed on early post-operative FLAIR in 4 of
  15 patients: protein and blood products); Sarbu, Oleaga, Valduvieco, Pujol, Berenguer, Neurocirugia
  2016;27:269-276 (cavity fluid hyperintense to CSF on FLAIR at follow-up in 29 % of low- and 59 % of high-grade
  gliomas).
- Population variation of adult brains (intracranial volume CV ~9 %, total brain volume CV ~10 %, lateral
  ventricle volume CV ~51 %): the healthy-adult cohort of Table 1 in PMC10511609 (n = 133); Whitwell, Crum,
  Watt, Fox, "Normalization of cerebral volumes by use of intracranial volume", AJNR 2001;22:1483-1489
  (whole-brain volume CV 10 %).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import numbers
import os
from dataclasses import dataclass, field, replace
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
    # high-grade solid tumour at ~2.0x (T1: 1863 vs 938 ms) and ~2.4x (T2: 90 vs 38 ms), all solid tumour at ~1.5x
    # (T1 1444 vs 938 ms) and ~1.6x (T2 61 vs 38 ms), and peritumoral white matter at ~1.35x (T1) and ~1.7x (T2)
    # the contralateral white matter; we scale Wansapura's white matter by those ratios (their cohort was
    # children and young adults). PDs rise with the water content (assumed: no measured PD of these tissues;
    # edema 0.80 is grey-matter-like water, below the ~1.35x T1 rise, so edema stays T1-hypointense).
    "enhancing": Tissue(pd=0.85, t1=2.0 * _WM_T1, t2=2.0 * _WM_T2, heterogeneity=0.08),
    # Non-enhancing (infiltrative) tumour: the ratios of all solid tumour in de Blank et al. (mostly low grade).
    "nonenhancing": Tissue(pd=0.82, t1=1.54 * _WM_T1, t2=1.6 * _WM_T2, heterogeneity=0.06),
    "edema": Tissue(pd=0.80, t1=1.35 * _WM_T1, t2=1.7 * _WM_T2, heterogeneity=0.05),
    # Necrosis: proteinaceous fluid and debris, between solid tumour and CSF (assumed; no reliable 3 T values).
    "necrosis": Tissue(pd=0.90, t1=2500.0, t2=300.0, heterogeneity=0.10),
    # Resection cavity filled with CSF-like fluid: dark on FLAIR, bright on T2. A share of cavities holds
    # proteinaceous or bloody fluid instead (CAVITY_PROTEIN_*), drawn per case.
    "cavity": Tissue(pd=1.0, t1=4163.0, t2=2000.0, heterogeneity=0.0),
}
# Share of resection cavities whose fluid is not suppressed on FLAIR: 4/15 early post-operative (Eur Radiol
# 2001;11:2004-2010) and 29-59 % at follow-up (Sarbu et al. Neurocirugia 2016); 0.35 lies inside that span.
CAVITY_PROTEIN_PROBABILITY = 0.35
# No cavity-fluid T1/T2 was found in the literature: protein and methaemoglobin shorten T1 (assumed 1200-2500 ms, so
# FLAIR tuned to CSF's 4163 ms no longer nulls it) and T2 (assumed 300-1000 ms, still bright on T2w).
CAVITY_PROTEIN_T1_MS = (1200.0, 2500.0)
CAVITY_PROTEIN_T2_MS = (300.0, 1000.0)
CAVITY_PROTEIN_PD = 0.95  # assumed: water with a few percent protein

# APT-weighted signal, MTRasym(3.5 ppm) in percent of the water signal. Normal-appearing brain ~0-1 %,
# peritumoral edema ~1-1.5 %, solid high-grade tumour ~3-4 %, necrosis ~2 % (Zhou et al. Nat Med 2003;
# Zhou et al. JMRI 2013; Togao et al. Neuro-Oncology 2014). Fluid reads ~1 % from direct-saturation asymmetry.
# Non-enhancing tumour: assumed 2.0 %, between edema and enhancing tumour and below the ~2.9 % that separates
# high- from low-grade gliomas (Togao et al. 2014).
APTW_PERCENT: dict[str, float] = {
    "wm": 0.4,
    "gm": 0.7,
    "csf": 1.0,
    "edema": 1.3,
    "enhancing": 3.5,
    "nonenhancing": 2.0,
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


# 3D MPRAGE pre and post Gd, TR 2100 ms, TI 1100 ms (the 3 T values of Ellingson et al. 2015), modelled as an
# inversion recovery read at TI with a short-TE gradient echo: the low-flip readout's own saturation (which scales
# all tissues alike and slightly lowers contrast) is neglected. An earlier spoiled GRE (TR 20 ms, flip 25 deg) was
# so weakly T1-weighted that edema's higher PD cancelled its longer T1 and edema came out isointense to WM.
T1_SEQUENCE = physics.InversionRecovery(tr=2100.0, te=3.0, ti=1100.0)
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
DEFAULT_SPACING_MM = 2.0
GRIDS = ("template", "brats")
# BraTS grid (Bakas et al. Sci Data 2017): 1 mm isotropic, 240 x 240 x 155 in SRI-24-like atlas space.
BRATS_SHAPE = (240, 240, 155)
BRATS_TOP_MARGIN_MM = 6.0  # the vertex of the (unmoved) template sits this far below the top slice
GRID_MARGIN_MM = 16.0  # room around the template brain for larger heads, pose, shift and deformation
PLACEMENT_MARGIN_MM = 3.0  # a moved brain keeps at least this far from the grid edge where it fits
TEXTURE_SCALE_MM = 8.0  # correlation length of within-tissue heterogeneity
BIAS_SCALE_MM = 100.0  # receive-coil shading varies over ~10 cm
BIAS_STD = 0.1  # std of the log bias field (~ +-20 % shading)

# Subject variation. Head size: intracranial volume CV ~8.9 % (PMC10511609, Table 1) is ~3 % per axis; head shape:
# assumed 2 % per axis on top (length/width/height ratios vary independently of size). Bounded at 2.5 std.
HEAD_SIZE_LOG_STD = 0.03
HEAD_SHAPE_LOG_STD = 0.02
# Pose and position residuals after BraTS's rigid co-registration to an atlas: assumed small (a few degrees, mm).
ROTATION_STD_DEG = 3.0
SHIFT_MAX_MM = 8.0
# Smooth deformation: a stationary velocity field with lobe-sized correlation length, on a coarse grid (it is
# smooth at that scale, and the coarse grid keeps scaling and squaring fast at 1 mm).
DEFORMATION_SCALE_MM = 20.0
DEFORMATION_STD_MM = 5.0  # default std of each velocity component (``deformation_mm``)
VELOCITY_GRID_MM = 4.0
SQUARING_STEPS = 5
# Lateral ventricle volume: log-normal per subject, median factor exp(0.15) x the template's ~18 mL (healthy adults
# average 22.6 mL) and log std 0.45, i.e. CV ~47 % before head size (51 % measured, PMC10511609).
VENTRICLE_LOG_MEAN = 0.15
VENTRICLE_LOG_STD = 0.45
VENTRICLE_SMOOTHING_MM = 6.0  # reach of the ventricle expansion into the surrounding white matter
# Atrophy: parenchyma fractions below this threshold (drawn per subject) turn into CSF, so sulci widen and the
# cortex thins where it borders CSF; assumed 0-0.3, which removes up to ~10 % of the brain volume.
ATROPHY_RANGE = (0.0, 0.3)

# Lesions
TUMOR_RADIUS_MM = (15.0, 30.0)
MIN_TUMOR_DEPTH_MM = 15.0  # tumour centres at least this far inside the brain surface
# Tumour-boundary perturbation: two scales of smooth log-radius noise give lobulated, irregular outlines.
BOUNDARY_SCALES_MM = (6.0, 16.0)
BOUNDARY_AMPLITUDES = (0.12, 0.2)
NECROSIS_FRACTION = (0.3, 0.7)  # radius of the necrotic core relative to the tumour
NECROSIS_OFFSET = 0.25  # the core is off-centre by up to this share of the radius: a rim of varying thickness
# Non-enhancing tumour part: a blob on one side of the tumour (assumed sizes: most glioblastomas have one).
NONENHANCING_FRACTION = (0.35, 0.7)  # its radius relative to the tumour
NONENHANCING_OFFSET = (0.5, 0.9)  # its centre's distance from the tumour centre relative to the radius
# Multifocal glioblastoma: assumed 0.15 (a minority of cases, so that BraTS-like unifocal tumours dominate).
SATELLITE_PROBABILITY = 0.15
SATELLITE_RADIUS = (0.3, 0.5)  # relative to the main tumour's mean radius
SATELLITE_MIN_RADIUS_MM = 6.0
SATELLITE_GAP_MM = (10.0, 30.0)  # brain between the two foci's nominal outlines
CAVITY_PROBABILITY = 0.3  # default share of tumours that were partly resected (design: all five SAMR labels)


# ----------------------------------------------------------------------------------------------------------
# Template
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrainTemplate:
    """The ICBM152 template on an isotropic grid cropped to the brain (arrays are read-only, shared).

    Attributes:
        gm, wm: grey- and white-matter fractions (float32, 0..1).
        intracranial: intracranial fraction (float32, 0..1); CSF is ``intracranial - gm - wm``.
        ventricles: lateral-ventricle CSF fraction (float32, 0..1), see :func:`_lateral_ventricles_1mm`.
        affine: voxel index -> RAS mm (nibabel convention) of this grid.
        centre_mm: RAS centroid of the intracranial volume, the fixed point of the subject's scaling and rotation.
        tumor_sites: ``(n, 3)`` voxel indices where a tumour may be centred.
    """

    gm: np.ndarray
    wm: np.ndarray
    intracranial: np.ndarray
    ventricles: np.ndarray
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


# Deep CSF: at least this far from the brain surface, which leaves the ventricles and the depth of the
# interhemispheric fissure; the lateral ventricles are the component that lies mostly off the midline.
VENTRICLE_MIN_DEPTH_MM = 15.0
MIDLINE_HALF_WIDTH_MM = 2.0


@lru_cache(maxsize=1)
def _lateral_ventricles_1mm() -> np.ndarray:
    """The template's lateral-ventricle CSF fraction at 1 mm (float32).

    CSF (intracranial minus GM and WM probability) above 0.5 and at least 15 mm inside the brain splits into a few
    components: the interhemispheric fissure (mostly on the midline), the two lateral ventricles joined across the
    septum (~18 mL, almost all off the midline) and small sulcal pockets. The largest component with >= 80 % of its
    voxels off the midline is taken; dilated by one voxel and weighted by the CSF fraction, it keeps partial volume.
    """
    gm, wm, mask, affine = _template_1mm()
    csf = np.clip(mask - (gm.astype(np.float32) + wm) / 255.0, 0.0, 1.0).astype(np.float32)
    depth = ndimage.distance_transform_edt(mask)
    deep = (csf > 0.5) & (depth >= VENTRICLE_MIN_DEPTH_MM)
    components, count = ndimage.label(deep)
    x_mm = affine[0, 0] * np.arange(mask.shape[0]) + affine[0, 3]
    off_midline = (np.abs(x_mm) > MIDLINE_HALF_WIDTH_MM)[:, None, None] & deep
    sizes = ndimage.sum(deep, components, range(1, count + 1))
    lateral = ndimage.sum(off_midline, components, range(1, count + 1))
    candidates = [i for i in np.argsort(sizes)[::-1] if lateral[i] >= 0.8 * sizes[i]]
    ventricles = components == candidates[0] + 1
    return (csf * ndimage.binary_dilation(ventricles)).astype(np.float32)


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
    gm, wm, intracranial, ventricles = (
        np.clip(_resample(v, ratio, low, shape), 0.0, 1.0)
        for v in (gm_1mm * (mask / 255.0), wm_1mm * (mask / 255.0), mask, _lateral_ventricles_1mm())
    )
    brain = intracranial >= 0.5
    world = _to_world(affine, np.indices(shape, dtype=np.float64))
    depth = ndimage.distance_transform_edt(brain, sampling=spacing)
    # Adult diffuse gliomas arise mostly in supratentorial hemispheric white matter (Larjavaara et al. 2007):
    # exclude the midline (|x| < 15 mm) and the posterior fossa (z < -10 mm).
    sites = (wm >= 0.5) & (depth >= MIN_TUMOR_DEPTH_MM) & (np.abs(world[0]) >= 15.0) & (world[2] >= -10.0)
    template = BrainTemplate(
        gm, wm, intracranial, ventricles, affine, world[:, brain].mean(axis=1), np.argwhere(sites)
    )
    for array in (template.gm, template.wm, template.intracranial, template.ventricles, template.affine,
                  template.centre_mm, template.tumor_sites):
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


def _column(vector: np.ndarray, ndim: int) -> np.ndarray:
    """A 3-vector shaped to broadcast against ``(3, *grid)`` arrays of ``ndim`` grid axes."""
    return np.asarray(vector, dtype=np.float64).reshape((3,) + (1,) * ndim)


@lru_cache(maxsize=1)
def brats_grid_affine() -> np.ndarray:
    """Voxel index -> RAS mm of the BraTS grid (240 x 240 x 155, 1 mm, LPS direction = identity).

    BraTS NIfTIs read with ITK have the identity direction (nibabel shows diag(-1, -1, 1)). The template brain is
    centred in x and y, and its vertex sits ``BRATS_TOP_MARGIN_MM`` below the top slice: a brain is ~155 mm tall,
    so the lowest few mm of the medulla fall below the grid, as in many BraTS volumes.
    """
    _, _, mask, affine_1mm = _template_1mm()
    inside = np.nonzero(mask)
    low = _to_world(affine_1mm, np.array([i.min() for i in inside], dtype=np.float64))
    high = _to_world(affine_1mm, np.array([i.max() for i in inside], dtype=np.float64))
    centre = (low + high) / 2.0
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[:3, 3] = [
        centre[0] + (BRATS_SHAPE[0] - 1) / 2.0,
        centre[1] + (BRATS_SHAPE[1] - 1) / 2.0,
        high[2] + BRATS_TOP_MARGIN_MM - (BRATS_SHAPE[2] - 1),
    ]
    affine.flags.writeable = False
    return affine


# ----------------------------------------------------------------------------------------------------------
# Subject transform
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VelocityGrid:
    """The coarse grid (RAS-aligned, in template space) on which subject velocity fields live.

    Attributes:
        origin: RAS mm of voxel 0.
        shape: grid shape.
        ventricle_flow: unit-maximum velocity field (3, *shape) that moves tissue away from the lateral ventricles
            (the gradient of their smoothed mask): as a pull-back field, a positive multiple enlarges them.
        log_factors, speeds: calibration of the ventricle volume factor (log) against the multiple of
            ``ventricle_flow`` (mm), measured once on the template without any other deformation.
        outline_mm: ``(3, n)`` RAS points on the template brain surface (placement of the moved brain).
    """

    origin: np.ndarray
    shape: tuple[int, int, int]
    ventricle_flow: np.ndarray
    log_factors: np.ndarray
    speeds: np.ndarray
    outline_mm: np.ndarray

    def index(self, world: np.ndarray) -> np.ndarray:
        return (world - _column(self.origin, world.ndim - 1)) / VELOCITY_GRID_MM


def _exponential(velocity: np.ndarray) -> np.ndarray:
    """Displacement (mm) of the diffeomorphism exp(velocity) on the velocity grid, by scaling and squaring.

    exp(v) = (exp(v / 2^N))^(2^N) with exp(v / 2^N) ~ id + v / 2^N (Arsigny et al. MICCAI 2006); each squaring
    composes the map with itself: u <- u + u o (id + u).
    """
    grid = np.indices(velocity.shape[1:], dtype=np.float64)
    displacement = velocity / 2.0**SQUARING_STEPS
    for _ in range(SQUARING_STEPS):
        at = grid + displacement / VELOCITY_GRID_MM
        displacement = displacement + np.stack(
            [ndimage.map_coordinates(d, at, order=1, mode="nearest") for d in displacement]
        )
    return displacement


def _interpolate(field_: np.ndarray, grid: _VelocityGrid, world: np.ndarray) -> np.ndarray:
    """A (3, *coarse) field at RAS points ``world`` (3, ...), linearly."""
    at = grid.index(world)
    return np.stack([ndimage.map_coordinates(c, at, order=1, mode="nearest") for c in field_])


@lru_cache(maxsize=1)
def _velocity_grid() -> _VelocityGrid:
    """The velocity grid around the 1 mm template, its ventricle flow and that flow's volume calibration."""
    _, _, mask, affine_1mm = _template_1mm()
    inside = np.nonzero(mask)
    low = _to_world(affine_1mm, np.array([i.min() for i in inside], dtype=np.float64)) - 2 * GRID_MARGIN_MM
    high = _to_world(affine_1mm, np.array([i.max() for i in inside], dtype=np.float64)) + 2 * GRID_MARGIN_MM
    shape = tuple(int(n) for n in np.ceil((high - low) / VELOCITY_GRID_MM) + 1)
    ventricles_1mm = _lateral_ventricles_1mm()
    start = _to_index(affine_1mm, low)
    coarse = _resample(ventricles_1mm, VELOCITY_GRID_MM, start, shape)
    smooth = ndimage.gaussian_filter(coarse, VENTRICLE_SMOOTHING_MM / VELOCITY_GRID_MM)
    gradient = np.stack(np.gradient(smooth, VELOCITY_GRID_MM))
    flow = gradient / np.linalg.norm(gradient, axis=0).max()
    surface = mask & ~ndimage.binary_erosion(mask)
    outline = _to_world(affine_1mm, np.argwhere(surface)[::16].T.astype(np.float64))
    grid = _VelocityGrid(low, shape, flow, np.zeros(0), np.zeros(0), outline)

    # Calibration on 2 mm points around the ventricles (enough to measure a volume ratio, and fast).
    found = np.argwhere(ventricles_1mm > 0.5)
    box_low = _to_world(affine_1mm, found.min(axis=0).astype(np.float64)) - 20.0
    box_high = _to_world(affine_1mm, found.max(axis=0).astype(np.float64)) + 20.0
    axes = [np.arange(lo, hi, 2.0) for lo, hi in zip(box_low, box_high)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"))
    speeds = np.linspace(-6.0, 14.0, 11)
    volumes = []
    for speed in speeds:
        source = points + _interpolate(_exponential(speed * flow), grid, points)
        volumes.append(ndimage.map_coordinates(ventricles_1mm, _to_index(affine_1mm, source), order=1).sum())
    log_factors = np.log(np.asarray(volumes) / volumes[int(np.argmin(np.abs(speeds)))])
    keep = np.concatenate([[True], np.diff(log_factors) > 0])  # strictly increasing for the inversion
    return replace(grid, log_factors=log_factors[keep], speeds=speeds[keep])


@dataclass(frozen=True)
class SubjectTransform:
    """Where each point of a subject's head comes from in the template, and back.

    Subject point x -> undo shift, rotation and scaling about the template centre -> y -> exp(v)(y) = template
    point. ``exp(v)`` (stationary velocity ``v`` integrated by scaling and squaring) is a diffeomorphism, and so is
    the whole map: brains fold or tear nowhere.

    Attributes:
        centre: RAS mm, the fixed point of scaling and rotation (template brain centroid).
        matrix: 3 x 3 linear part, rotation times per-axis scaling (subject = matrix @ template about the centre).
        shift: RAS mm, translation of the subject's head in the grid.
        pullback: displacement of exp(v) on the velocity grid, mm.
        pushforward: displacement of exp(-v), its inverse.
    """

    centre: np.ndarray
    matrix: np.ndarray
    shift: np.ndarray
    pullback: np.ndarray
    pushforward: np.ndarray

    def to_template(self, points: np.ndarray) -> np.ndarray:
        """Template RAS mm of subject points ``(3, ...)``."""
        ndim = points.ndim - 1
        centre = _column(self.centre, ndim)
        unposed = centre + np.tensordot(np.linalg.inv(self.matrix), points - centre - _column(self.shift, ndim), 1)
        return unposed + _interpolate(self.pullback, _velocity_grid(), unposed)

    def to_subject(self, points: np.ndarray) -> np.ndarray:
        """Subject RAS mm of template points ``(3, ...)``."""
        ndim = points.ndim - 1
        centre = _column(self.centre, ndim)
        deformed = points + _interpolate(self.pushforward, _velocity_grid(), points)
        return centre + _column(self.shift, ndim) + np.tensordot(self.matrix, deformed - centre, 1)


def _bounded_normal(rng: np.random.Generator, std: float, size=None, bound: float = 2.5) -> np.ndarray:
    """Normal draws with ``std``, clipped at ``bound`` std so no subject leaves the plausible range."""
    return np.clip(rng.normal(0.0, std, size), -bound * std, bound * std)


def _draw_transform(
    rng: np.random.Generator, centre: np.ndarray, grid_affine: np.ndarray, grid_shape: tuple[int, ...],
    deformation_mm: float,
) -> tuple[SubjectTransform, dict]:
    """A random head size, shape, pose, position, smooth deformation and ventricle size; and their description."""
    size = math.exp(_bounded_normal(rng, HEAD_SIZE_LOG_STD))
    scale = size * np.exp(_bounded_normal(rng, HEAD_SHAPE_LOG_STD, 3))
    angles = _bounded_normal(rng, ROTATION_STD_DEG, 3)
    matrix = Rotation.from_euler("xyz", angles, degrees=True).as_matrix() @ np.diag(scale)

    grid = _velocity_grid()
    sigma = DEFORMATION_SCALE_MM / VELOCITY_GRID_MM
    velocity = np.stack([physics.smooth_field(grid.shape, rng, sigma, deformation_mm) for _ in range(3)])
    ventricle_log = VENTRICLE_LOG_MEAN + _bounded_normal(rng, VENTRICLE_LOG_STD)
    speed = float(np.interp(ventricle_log, grid.log_factors, grid.speeds))
    velocity += speed * grid.ventricle_flow
    unplaced = SubjectTransform(centre, matrix, np.zeros(3), _exponential(velocity), _exponential(-velocity))

    # Shift within the room the moved brain leaves in the grid; where it does not fit (z on the BraTS grid for a
    # large head), keep the vertex inside and let the lowest brainstem go, as BraTS crops do.
    outline = unplaced.to_subject(grid.outline_mm)
    corners = _to_world(grid_affine, np.array(list(itertools.product(*[(0, n - 1) for n in grid_shape])), float).T)
    room_low = corners.min(axis=1) + PLACEMENT_MARGIN_MM - outline.min(axis=1)
    room_high = corners.max(axis=1) - PLACEMENT_MARGIN_MM - outline.max(axis=1)
    draws = rng.uniform(-SHIFT_MAX_MM, SHIFT_MAX_MM, 3)
    shift = np.empty(3)
    for axis in range(3):
        if room_low[axis] <= room_high[axis]:
            shift[axis] = np.clip(draws[axis], room_low[axis], room_high[axis])
        else:
            shift[axis] = room_high[axis] if axis == 2 else (room_low[axis] + room_high[axis]) / 2.0
    transform = replace(unplaced, shift=shift)
    description = {
        "scale": [float(s) for s in scale],
        "rotation_deg": [float(a) for a in angles],
        "shift_mm": [float(v) for v in _RAS_TO_LPS @ shift],
        "ventricle_volume_factor": float(math.exp(ventricle_log)),
    }
    return transform, description


# ----------------------------------------------------------------------------------------------------------
# Lesions
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tumor:
    """The drawn parameters of one glioma (lengths in mm, RAS world coordinates of the subject).

    Attributes:
        centre: tumour centre.
        radii: ellipsoid semi-axes of the tumour (enhancing outer boundary before its irregular perturbation).
        rotation: ``(3, 3)`` orientation of the ellipsoid.
        necrosis_fraction: radius of the necrotic core relative to the tumour.
        necrosis_offset: shift of the necrotic core from the tumour centre (mm), so the enhancing rim's thickness
            varies around it.
        nonenhancing_fraction: radius of the non-enhancing tumour part relative to the tumour (0: none).
        nonenhancing_offset: position of the non-enhancing part relative to the tumour centre (mm).
        edema_extent: reach of the edema beyond the tumour, relative to its radius, in pure white matter
            (0.3 of it in grey matter: vasogenic edema spreads along white-matter tracts).
        push_radius: radius of the sphere whose volume the tumour adds to the brain (mass effect).
        ktrans, ve, vp: extended-Tofts parameters of the enhancing tumour (1/min, fractions).
        cavity_fraction: radius of the resection cavity relative to the tumour; 0 when there is none.
        cavity_offset: shift of the cavity centre from the tumour centre.
        cavity_fluid: relaxation of the cavity fluid (CSF-like, or proteinaceous and not nulled by FLAIR).
        satellite_centre: centre of a second, smaller focus (multifocal tumour), or None.
        satellite_radius: its radius (0 when there is none).
    """

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    necrosis_fraction: float
    necrosis_offset: np.ndarray
    nonenhancing_fraction: float
    nonenhancing_offset: np.ndarray
    edema_extent: float
    push_radius: float
    ktrans: float
    ve: float
    vp: float
    cavity_fraction: float
    cavity_offset: np.ndarray
    cavity_fluid: Tissue = field(default_factory=lambda: TISSUES["cavity"])
    satellite_centre: np.ndarray | None = None
    satellite_radius: float = 0.0

    @property
    def has_cavity(self) -> bool:
        return self.cavity_fraction > 0

    @property
    def cavity_is_proteinaceous(self) -> bool:
        return self.has_cavity and self.cavity_fluid != TISSUES["cavity"]

    def meta(self) -> dict:
        """JSON-serialisable description; positions in LPS mm like the case grid."""
        lps = lambda v: [float(x) for x in _RAS_TO_LPS @ v]  # noqa: E731
        return {
            "tumor_center_mm": lps(self.centre),
            "hemisphere": "left" if self.centre[0] < 0 else "right",
            "tumor_radii_mm": [float(r) for r in self.radii],
            "necrosis_fraction": self.necrosis_fraction,
            "necrosis_offset_mm": lps(self.necrosis_offset),
            "nonenhancing_fraction": self.nonenhancing_fraction,
            "nonenhancing_offset_mm": lps(self.nonenhancing_offset),
            "edema_extent": self.edema_extent,
            "mass_effect_radius_mm": self.push_radius,
            "ktrans_per_min": self.ktrans,
            "ve": self.ve,
            "vp": self.vp,
            "cavity_fraction": self.cavity_fraction,
            "cavity_offset_mm": lps(self.cavity_offset),
            "cavity_fluid": ("proteinaceous" if self.cavity_is_proteinaceous else "csf-like") if self.has_cavity
            else None,
            "cavity_fluid_t1_ms": self.cavity_fluid.t1 if self.has_cavity else None,
            "cavity_fluid_t2_ms": self.cavity_fluid.t2 if self.has_cavity else None,
            "multifocal": self.satellite_centre is not None,
            "satellite_center_mm": lps(self.satellite_centre) if self.satellite_centre is not None else None,
            "satellite_radius_mm": self.satellite_radius,
        }


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    direction = rng.standard_normal(3)
    return direction / np.linalg.norm(direction)


def _draw_tumor(
    rng: np.random.Generator, template: BrainTemplate, transform: SubjectTransform, cavity_probability: float
) -> Tumor:
    """A random glioma centred in hemispheric white matter of the subject (a template site moved with the brain)."""
    site_world = _to_world(template.affine, template.tumor_sites.T.astype(np.float64))
    main = rng.integers(site_world.shape[1])
    radius = rng.uniform(*TUMOR_RADIUS_MM)
    radii = radius * rng.uniform(0.8, 1.2, 3)
    cavity = rng.random() < cavity_probability
    # The resection is off-centre by up to 0.3 radius, so the residual enhancing rim is uneven.
    cavity_offset = _random_direction(rng) * rng.uniform(0.0, 0.3) * radius
    if rng.random() < CAVITY_PROTEIN_PROBABILITY:
        fluid = Tissue(
            pd=CAVITY_PROTEIN_PD, t1=float(rng.uniform(*CAVITY_PROTEIN_T1_MS)),
            t2=float(rng.uniform(*CAVITY_PROTEIN_T2_MS)), heterogeneity=0.0,
        )
    else:
        fluid = TISSUES["cavity"]
    necrosis_offset = _random_direction(rng) * rng.uniform(0.0, NECROSIS_OFFSET) * radius
    nonenhancing_offset = _random_direction(rng) * rng.uniform(*NONENHANCING_OFFSET) * radius
    nonenhancing_fraction = float(rng.uniform(*NONENHANCING_FRACTION))

    # A satellite focus: another white-matter site whose outline keeps SATELLITE_GAP_MM of brain from the main
    # tumour's reach (its irregular boundary and non-enhancing part reach ~1.5 max radius).
    satellite_centre, satellite_radius = None, 0.0
    if rng.random() < SATELLITE_PROBABILITY:
        satellite_radius = max(SATELLITE_MIN_RADIUS_MM, float(rng.uniform(*SATELLITE_RADIUS)) * radius)
        reach = 1.5 * radii.max() + 1.3 * satellite_radius
        distance = np.linalg.norm(site_world - site_world[:, main : main + 1], axis=0)
        candidates = np.nonzero((distance >= reach + SATELLITE_GAP_MM[0]) & (distance <= reach + SATELLITE_GAP_MM[1]))
        if len(candidates[0]):
            chosen = site_world[:, rng.choice(candidates[0])]
            satellite_centre = transform.to_subject(chosen[:, None])[:, 0]
        else:
            satellite_radius = 0.0
    return Tumor(
        centre=transform.to_subject(site_world[:, main : main + 1])[:, 0],
        radii=radii,
        rotation=Rotation.random(rng=rng).as_matrix(),
        necrosis_fraction=float(rng.uniform(*NECROSIS_FRACTION)),
        necrosis_offset=necrosis_offset,
        nonenhancing_fraction=nonenhancing_fraction,
        nonenhancing_offset=nonenhancing_offset,
        edema_extent=float(rng.uniform(0.3, 1.0)),
        # Below 0.6 of the smallest semi-axis the compressed region stays inside the tumour even where the
        # boundary perturbation pulls it in.
        push_radius=float(rng.uniform(0.3, 0.6) * radii.min()),
        # Enhancing high-grade glioma: Ktrans ~0.05-0.15 /min (Patankar et al. AJNR 2005); typical ve, vp.
        ktrans=float(rng.uniform(0.05, 0.15)),
        ve=float(rng.uniform(0.2, 0.4)),
        vp=float(rng.uniform(0.02, 0.06)),
        cavity_fraction=float(rng.uniform(0.7, 0.95)) if cavity else 0.0,
        cavity_offset=cavity_offset if cavity else np.zeros(3),
        cavity_fluid=fluid,
        satellite_centre=satellite_centre,
        satellite_radius=satellite_radius,
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


def _ellipsoid_radius(
    points: np.ndarray, centre: np.ndarray, radii: np.ndarray, rotation: np.ndarray, boundary: np.ndarray
) -> np.ndarray:
    """Ellipsoidal radius of ``points`` around ``centre`` (1 on the surface), perturbed by the log-radius noise
    ``boundary``: the level sets of the result are irregular, noise-perturbed ellipsoids."""
    ndim = points.ndim - 1
    local = np.tensordot(rotation.T, points - _column(centre, ndim), axes=1) / _column(radii, ndim)
    return np.linalg.norm(local, axis=0) * np.exp(boundary)


def _lesion_radius(points: np.ndarray, tumor: Tumor, centre: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Ellipsoidal radius in units of the tumour's semi-axes around ``centre``, perturbed by ``boundary``."""
    return _ellipsoid_radius(points, centre, tumor.radii, tumor.rotation, boundary)


def _boundary_fields(shape: tuple[int, ...], rng: np.random.Generator, spacing: float, tumor: Tumor) -> dict:
    """Independent log-radius noise of each lesion outline, so tumour, core, non-enhancing part and cavity are
    not concentric copies of one shape."""
    def noise(scales=(BOUNDARY_SCALES_MM[0],), amplitudes=(BOUNDARY_AMPLITUDES[0],)):
        return sum(physics.smooth_field(shape, rng, s / spacing, a) for s, a in zip(scales, amplitudes))

    fields = {"tumor": noise(BOUNDARY_SCALES_MM, BOUNDARY_AMPLITUDES), "necrosis": noise(), "nonenhancing": noise()}
    if tumor.has_cavity:
        fields["cavity"] = noise()
    if tumor.satellite_centre is not None:
        fields["satellite"] = noise()
    return fields


def _lesion_fractions(
    points: np.ndarray, normal: dict[str, np.ndarray], tumor: Tumor, fields: dict[str, np.ndarray], spacing: float
) -> dict[str, np.ndarray]:
    """Tissue fractions with the lesion replacing normal tissue; soft level sets keep them consistent.

    Each region is a logistic of its own perturbed ellipsoid (an edge one voxel wide: partial volume). The lesion
    is the union of the tumour, its non-enhancing part, a satellite and the cavity; inside it the cavity (or the
    necrotic core) comes first, then non-enhancing tumour, and the rest enhances. Tumour (and cavity) replace every
    intracranial tissue; edema only infiltrates parenchyma (GM/WM), so a sulcus or ventricle inside the edema zone
    stays CSF.
    """
    gm, wm, csf = normal["gm"], normal["wm"], normal["csf"]
    parenchyma = gm + wm
    intracranial = parenchyma + csf
    white_share = np.divide(wm, parenchyma, out=np.zeros_like(wm), where=parenchyma > 0)

    def soft(level: np.ndarray, scale_mm: float) -> np.ndarray:
        # A logistic edge with the variance of a voxel-wide box, in units of the radius ``scale_mm``.
        return expit(level / (spacing / (2.0 * math.pi) / scale_mm))

    size = float(np.mean(tumor.radii))
    rho = _lesion_radius(points, tumor, tumor.centre, fields["tumor"])
    core = soft(1.0 - rho, size)
    edema_level = soft(1.0 + tumor.edema_extent * (0.3 + 0.7 * white_share) - rho, size)
    part = tumor.nonenhancing_fraction
    nonenhancing = soft(
        1.0 - _lesion_radius(points, tumor, tumor.centre + tumor.nonenhancing_offset, fields["nonenhancing"]) / part,
        part * size,
    )
    tumour_any = 1.0 - (1.0 - core) * (1.0 - nonenhancing)
    necrosis = core * soft(
        tumor.necrosis_fraction - _lesion_radius(points, tumor, tumor.centre + tumor.necrosis_offset,
                                                 fields["necrosis"]),
        size,
    )
    if tumor.satellite_centre is not None:
        r = tumor.satellite_radius
        rho_s = _ellipsoid_radius(points, tumor.satellite_centre, np.full(3, r), np.eye(3), fields["satellite"])
        satellite = soft(1.0 - rho_s, r)
        tumour_any = 1.0 - (1.0 - tumour_any) * (1.0 - satellite)
        necrosis = 1.0 - (1.0 - necrosis) * (1.0 - satellite * soft(0.4 - rho_s, r))
        edema_level = np.maximum(edema_level, soft(1.0 + tumor.edema_extent * (0.3 + 0.7 * white_share) - rho_s, r))

    if tumor.has_cavity:
        inner_name = "cavity"
        cavity_rho = _lesion_radius(points, tumor, tumor.centre + tumor.cavity_offset, fields["cavity"])
        inner = soft(tumor.cavity_fraction - cavity_rho, size)
        lesion = np.maximum(tumour_any, inner)
    else:
        inner_name, inner, lesion = "necrosis", necrosis, tumour_any
    rest = lesion - inner  # >= 0: the inner region lies inside the lesion
    edema_zone = np.maximum(edema_level, lesion)
    return {
        "wm": wm * (1.0 - edema_zone),
        "gm": gm * (1.0 - edema_zone),
        "csf": csf * (1.0 - lesion),
        "edema": (edema_zone - lesion) * parenchyma,
        "nonenhancing": rest * nonenhancing * intracranial,
        "enhancing": rest * (1.0 - nonenhancing) * intracranial,
        inner_name: inner * intracranial,
    }


# Hard labels: the class with the largest fraction in each brain voxel. Rows: normal, necrosis, edema, enhancing,
# cavity, non-enhancing tumour. BraTS 2023 labels non-enhancing tumour with necrosis (1, NCR) and has no cavity
# label (0); the SAMR lesion map has the cavity (3) and counts every tumour part as tumour (4).
_CLASS_TISSUES = (("wm", "gm", "csf"), ("necrosis",), ("edema",), ("enhancing",), ("cavity",), ("nonenhancing",))
_BRATS_LABEL = np.array([0, 1, 2, 3, 0, 1], dtype=np.uint8)
_LESION_MAP = np.array([1, 4, 2, 4, 3, 4], dtype=np.uint8)
# Tissue map: 0 outside the brain, 1 CSF, 2 GM, 3 WM where normal tissue dominates, 4 where a lesion class does.
TISSUE_LABELS = {"csf": 1, "gm": 2, "wm": 3, "lesion": 4}


def _masks(fractions: dict[str, np.ndarray], brain: np.ndarray) -> dict[str, np.ndarray]:
    """``label``, ``lesion_map``, ``brain`` and ``tissue`` from the dominant tissue class of each voxel."""
    zero = np.zeros_like(brain, dtype=np.float32)
    totals = np.stack([sum((fractions.get(t, zero) for t in tissues), zero) for tissues in _CLASS_TISSUES])
    dominant = np.argmax(totals, axis=0)
    normal = np.argmax(np.stack([fractions["csf"], fractions["gm"], fractions["wm"]]), axis=0) + 1
    tissue = np.where(dominant == 0, normal, TISSUE_LABELS["lesion"])
    return {
        "label": np.where(brain, _BRATS_LABEL[dominant], 0).astype(np.uint8),
        "lesion_map": np.where(brain, _LESION_MAP[dominant], 0).astype(np.uint8),
        "brain": brain.astype(np.uint8),
        "tissue": np.where(brain, tissue, 0).astype(np.uint8),
    }


# ----------------------------------------------------------------------------------------------------------
# Subject anatomy
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrainAnatomy:
    """One subject before imaging: tissue fractions and exact labels on the case grid.

    Attributes:
        fractions: tissue name (keys of :data:`TISSUES`) -> float32 fraction; they sum to ``intracranial``.
        intracranial: float32 intracranial fraction (soft brain edge).
        masks: ``label`` (BraTS 2023), ``lesion_map`` (SAMR), ``brain`` and ``tissue``, uint8.
        spacing, origin, direction: the grid (LPS), as in :class:`~synthmr.phantom.case.PhantomCase`.
        meta: the drawn parameters.
        tumor: the drawn tumour, or None for a healthy subject.
        ventricles: uint8 lateral-ventricle mask (the template's, carried through the subject transform; CSF
            voxels only).
        transform: the subject's transform from its grid to the template.
    """

    fractions: dict[str, np.ndarray]
    intracranial: np.ndarray
    masks: dict[str, np.ndarray]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray
    meta: dict
    tumor: Tumor | None
    ventricles: np.ndarray | None = None
    transform: SubjectTransform | None = None

    @property
    def tissues(self) -> dict[str, Tissue]:
        """Relaxation of each tissue of this subject (the cavity fluid is drawn per case)."""
        if self.tumor is None or not self.tumor.has_cavity:
            return TISSUES
        return {**TISSUES, "cavity": self.tumor.cavity_fluid}


def _subject_tissue(
    template: BrainTemplate, points: np.ndarray, tumor: Tumor | None, transform: SubjectTransform, atrophy: float
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Normal GM/WM/CSF fractions, the intracranial fraction and the ventricle fraction of one subject at ``points``.

    Output point -> (undo the tumour's mass effect) -> (undo the subject's pose, size and deformation) -> template
    voxel. All maps are sampled through that one set of coordinates (linear interpolation, as the maps are
    fractions), so they stay aligned and partial volume is kept. Atrophy then turns the parenchyma fraction below
    ``atrophy`` into CSF and rescales the rest, which widens sulci and thins the cortex where it borders CSF.
    """
    before_tumor = points if tumor is None else _undo_mass_effect(points, tumor)
    source = _to_index(template.affine, transform.to_template(before_tumor))
    gm, wm, intracranial, ventricles = (
        ndimage.map_coordinates(volume, source, order=1, mode="constant", cval=0.0)
        for volume in (template.gm, template.wm, template.intracranial, template.ventricles)
    )
    if atrophy > 0:
        parenchyma = gm + wm
        kept = np.clip((parenchyma - atrophy) / (1.0 - atrophy), 0.0, 1.0)
        factor = np.divide(kept, parenchyma, out=np.zeros_like(parenchyma), where=parenchyma > 0)
        gm, wm = gm * factor, wm * factor
    return {"wm": wm, "gm": gm, "csf": np.clip(intracranial - gm - wm, 0.0, 1.0)}, intracranial, ventricles


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
    tissues = anatomy.tissues
    texture = {
        name: physics.smooth_field(shape, rng, TEXTURE_SCALE_MM / spacing, tissues[name].heterogeneity)[brain]
        for name in anatomy.fractions
        if tissues[name].heterogeneity > 0
    }
    # One coil, one head position: every sequence of the session shares the receive bias, so a healthy
    # t1c differs from t1n by noise only.
    bias = np.exp(physics.smooth_field(shape, rng, BIAS_SCALE_MM / spacing, BIAS_STD))[brain]
    fractions = {name: fraction[brain] for name, fraction in anatomy.fractions.items()}
    gadolinium = {}
    if anatomy.tumor is not None:
        tumor = anatomy.tumor
        curve = physics.extended_tofts(tumor.ktrans, tumor.ve, tumor.vp)
        # Only the enhancing tumour has a leaky blood-brain barrier; normal brain, edema, non-enhancing tumour and
        # necrosis keep Gd out.
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
        signal = physics.render(sequence, fractions, tissues, concentration, texture) * bias
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
    """Simulated glioma MRI (BraTS 2023 sequences plus APTw) on MNI ICBM152 anatomy that differs per subject.

    Configuration goes to the constructor; ``phantom(seed)`` returns one reproducible
    :class:`~synthmr.phantom.case.PhantomCase`. Images: ``t1n`` and ``t1c`` (3D MPRAGE before and 5 min after Gd),
    ``t2w`` (spin echo), ``t2f`` (FLAIR with CSF nulled), float32 scaled so the 99th brain percentile is ~1000, zero
    outside the brain; ``aptw`` (MTRasym at 3.5 ppm, percent). Masks: ``label`` (BraTS 2023: 1 necrotic core and
    non-enhancing tumour, 2 edema, 3 enhancing), ``lesion_map`` (SAMR: 1 normal brain, 2 edema, 3 surgical cavity,
    4 tumour), ``brain`` (intracranial mask), ``tissue`` (0 outside the brain, 1 CSF, 2 GM, 3 WM where normal
    tissue dominates the voxel, 4 where a lesion class does: a lesion voxel has no single normal tissue it
    replaced, so it gets its own value; ``label`` says which lesion). Coordinates are MNI (LPS on the case grid).
    ``phantom.anatomy(seed)`` returns the tissue fractions behind ``phantom(seed)`` (e.g. to select pure tissue),
    the lateral-ventricle mask and the subject transform.

    Each subject has its own head size and shape, pose, position in the grid, smooth diffeomorphic deformation,
    lateral-ventricle volume and cortical atrophy (module docstring); the tumour sits in white matter of that
    subject.

    Args:
        dims: 3 for a volume, 2 for one axial plane through the tumour centre (mid-grid when healthy); the 2D
            case stores the plane's z in ``meta["slice_z_mm"]``.
        spacing: isotropic voxel size in mm, [1, 10], of ``grid="template"`` (default 2): finer than the template's
            1 mm voxels adds no anatomy, coarser cannot hold a 15 mm tumour's structure. ``grid="brats"`` is 1 mm:
            leave spacing out or pass 1.
        grid: ``"template"`` (the template's grid cropped to the brain, at ``spacing``) or ``"brats"`` (1 mm,
            240 x 240 x 155, axial, identity LPS direction like BraTS files read with ITK).
        tumor_probability: chance that the subject has a glioma (0: healthy subjects).
        cavity_probability: chance that a tumour has been partly resected (fluid-filled cavity; a share
            ``CAVITY_PROTEIN_PROBABILITY`` of cavities holds fluid that FLAIR does not null).
        deformation_mm: std of each component of the subject's stationary velocity field, mm, [0, 15]; the
            deformation it generates moves tissue by about as much (lobe-sized, 20 mm correlation).
        snr: signal-to-noise ratio of the brightest tissue; also scales the APTw noise (0.3 % at 30).
    """

    organ = "brain"
    sequences = ("t1n", "t1c", "t2w", "t2f", "aptw")
    masks = ("label", "lesion_map", "brain", "tissue")
    lesion_mask = "label"  # the mask whose labels outline the lesions in previews

    def __init__(
        self,
        dims: int = 3,
        spacing: float | None = None,
        tumor_probability: float = 1.0,
        cavity_probability: float = CAVITY_PROBABILITY,
        deformation_mm: float = DEFORMATION_STD_MM,
        snr: float = 30.0,
        grid: str = "template",
    ):
        if isinstance(dims, bool) or not isinstance(dims, numbers.Integral) or dims not in (2, 3):
            raise InputError(f"dims must be 2 or 3, got {dims!r}")
        if not isinstance(grid, str) or grid not in GRIDS:
            raise InputError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
        self.dims = int(dims)
        self.grid = grid
        if grid == "brats":
            if spacing is not None and number(spacing, "spacing", 0.0, math.inf, low_open=True) != 1.0:
                raise InputError(f"spacing must be 1 (or left out) with grid='brats', which is 1 mm; got {spacing!r}")
            self.spacing = 1.0
        else:
            self.spacing = DEFAULT_SPACING_MM if spacing is None else number(spacing, "spacing", MIN_SPACING_MM, 10.0)
        self.tumor_probability = number(tumor_probability, "tumor_probability", 0.0, 1.0)
        self.cavity_probability = number(cavity_probability, "cavity_probability", 0.0, 1.0)
        self.deformation_mm = number(deformation_mm, "deformation_mm", 0.0, 15.0)
        self.snr = number(snr, "snr", 0.0, math.inf, low_open=True)

    def __repr__(self) -> str:
        return (
            f"BrainPhantom(dims={self.dims}, spacing={self.spacing:g}, grid={self.grid!r}, "
            f"tumor_probability={self.tumor_probability:g}, cavity_probability={self.cavity_probability:g}, "
            f"deformation_mm={self.deformation_mm:g}, snr={self.snr:g})"
        )

    def __call__(self, seed: int) -> PhantomCase:
        """The case drawn from ``seed`` (a non-negative integer)."""
        return self._simulate(seed)[1]

    def _simulate(self, seed: int) -> tuple[BrainAnatomy, PhantomCase]:
        anatomy = self.anatomy(seed)
        rng = np.random.default_rng(_seed_sequence(seed).spawn(2)[1])
        images = _relaxation_images(anatomy, rng, self.snr)
        images["aptw"] = _aptw_image(anatomy, rng, self.snr)
        case = PhantomCase(images, anatomy.masks, anatomy.spacing, anatomy.origin, anatomy.direction, anatomy.meta)
        return anatomy, case

    def grid_geometry(self) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Voxel index -> RAS mm and shape of the 3D grid the cases are drawn on (a 2D case is one plane of it)."""
        if self.grid == "brats":
            return brats_grid_affine(), BRATS_SHAPE
        template = brain_template(self.spacing)
        return template.affine, template.shape

    def anatomy(self, seed: int) -> BrainAnatomy:
        """The subject of ``phantom(seed)`` before imaging: its tissue fractions, masks and drawn parameters."""
        rng = np.random.default_rng(_seed_sequence(seed).spawn(2)[0])
        template = brain_template(self.spacing)
        grid_affine, grid_shape = self.grid_geometry()
        has_tumor = rng.random() < self.tumor_probability
        transform, pose = _draw_transform(rng, template.centre_mm, grid_affine, grid_shape, self.deformation_mm)
        atrophy = float(rng.uniform(*ATROPHY_RANGE))
        tumor = _draw_tumor(rng, template, transform, self.cavity_probability) if has_tumor else None
        index = self._grid_index(grid_affine, grid_shape, tumor)
        points = _to_world(grid_affine, index)

        normal, intracranial, ventricles = _subject_tissue(template, points, tumor, transform, atrophy)
        if tumor is None:
            fractions = normal
        else:
            fields = _boundary_fields(points.shape[1:], rng, self.spacing, tumor)
            fractions = _lesion_fractions(points, normal, tumor, fields, self.spacing)
        fractions = {name: f.astype(np.float32) for name, f in fractions.items()}
        intracranial = intracranial.astype(np.float32)

        meta = {
            "seed": int(seed),
            "organ": self.organ,
            "dims": self.dims,
            "spacing_mm": self.spacing,
            "grid": self.grid,
            "template": "MNI ICBM152 2009a nonlinear symmetric (nilearn)",
            "tumor": tumor is not None,
            "cavity": tumor is not None and tumor.has_cavity,
            **pose,
            "deformation_mm": self.deformation_mm,
            "atrophy": atrophy,
            **(tumor.meta() if tumor is not None else {"tumor_center_mm": None}),
        }
        if self.dims == 2:
            meta["slice_z_mm"] = float(points[2, 0, 0])
        spacing, origin, direction = _lps_grid(grid_affine, index)
        masks = _masks(fractions, intracranial >= 0.5)
        lateral_ventricles = (ventricles >= 0.5) & (masks["tissue"] == TISSUE_LABELS["csf"])
        return BrainAnatomy(
            fractions, intracranial, masks, spacing, origin, direction, meta, tumor,
            lateral_ventricles.astype(np.uint8), transform,
        )

    def _grid_index(self, affine: np.ndarray, shape: tuple[int, int, int], tumor: Tumor | None) -> np.ndarray:
        """Voxel indices ``(3, *grid)`` of the output grid: the volume, or one axial plane."""
        if self.dims == 3:
            return np.indices(shape, dtype=np.float64)
        if tumor is None:
            plane = shape[2] // 2
        else:
            plane = int(np.clip(round(_to_index(affine, tumor.centre)[2]), 0, shape[2] - 1))
        in_plane = np.indices(shape[:2], dtype=np.float64)
        return np.concatenate([in_plane, np.full((1,) + shape[:2], float(plane))])


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


# ----------------------------------------------------------------------------------------------------------
# Validation (synthmr phantom validate brain)
# ----------------------------------------------------------------------------------------------------------

PURE = 0.9  # a voxel is "pure" tissue when that tissue's fraction exceeds this
FLAIR_HYPERINTENSE_TO_CSF = 2.0  # cavity/CSF FLAIR ratio above which a cavity counts as not suppressed
MIN_FOCUS_MM3 = 200.0  # a tumour component at least this large counts as a focus (smaller: boundary crumbs)
# Design targets of the issue (over 20 healthy subjects), below the real-population spread (TBV CV ~10 %, lateral
# ventricle CV ~51 %, PMC10511609) so the phantom spans most of it.
TARGET_TBV_CV = 0.08
TARGET_VENTRICLE_CV = 0.30
TARGET_GM_DICE = 0.80
TUMOR_DIAMETER_RANGE_MM = (20.0, 90.0)  # design: TUMOR_RADIUS_MM with the edema-free lesion's irregular outline


def _spread_floor(target: float, n: int) -> float:
    """Lowest accepted sample CV of ``n`` subjects for a target stated over 20: the target itself at n >= 20, and
    below it by the extra 99 % sampling tolerance a smaller sample has (chi-square lower quantile of the sample
    variance, relative to n = 20)."""
    from scipy.stats import chi2

    if n >= 20:
        return target
    if n < 2:
        return 0.0
    quantile = lambda k: math.sqrt(chi2.ppf(0.005, k) / k)  # noqa: E731
    return target * quantile(n - 1) / quantile(19)


def _median_ratio(image: np.ndarray, where: np.ndarray, reference: np.ndarray) -> float:
    if where.sum() < 5 or reference.sum() < 5:
        return math.nan
    return float(np.median(image[where]) / np.median(image[reference]))


def validation_figures(n: int, seed: int) -> list:
    """Contrast, lesion and subject-variation figures measured on ``n`` brain cases from seeds ``seed ..``.

    Three sets of cases: the default phantom (contrast ratios, lesion sizes and shares), the same seeds with a
    cavity in every tumour (cavity fluid), and healthy subjects (variation of anatomy). Ratios are medians over
    cases of per-case medians in pure voxels (tissue fraction > 0.9), so the receive bias of one case moves them
    little.
    """
    from synthmr.phantom.validate import Figure, share_range

    seeds = range(seed, seed + n)
    ratios: dict[str, list[float]] = {}
    apt_contrast, diameters, with_cavity, multifocal = [], [], [], []

    def add(name: str, value: float):
        ratios.setdefault(name, []).append(value)

    phantom = BrainPhantom()
    for s in seeds:
        anatomy, case = phantom._simulate(s)
        pure = {name: f > PURE for name, f in anatomy.fractions.items()}
        images, label = case.images, case.masks["label"]
        for key in ("t1n", "t2w", "t2f"):
            add(f"{key} GM / WM", _median_ratio(images[key], pure["gm"], pure["wm"]))
            add(f"{key} CSF / WM", _median_ratio(images[key], pure["csf"], pure["wm"]))
            add(f"{key} edema / WM", _median_ratio(images[key], pure.get("edema", pure["wm"] & False), pure["wm"]))
        enhancing = anatomy.fractions.get("enhancing", np.zeros(1)) > 0.8
        add("t1c enhancing / WM", _median_ratio(images["t1c"], enhancing & (label == 3), pure["wm"]))
        tumour = np.isin(label, (1, 3))
        if tumour.sum() >= 5:
            apt_contrast.append(float(np.median(images["aptw"][tumour]) - np.median(images["aptw"][pure["wm"]])))
        lesion = np.isin(case.masks["lesion_map"], (3, 4))
        voxel_mm3 = float(np.prod(case.spacing))
        components, count = ndimage.label(lesion)
        sizes = ndimage.sum(lesion, components, range(1, count + 1)) * voxel_mm3
        if count:
            diameters.append(float(np.cbrt(6.0 * sizes.max() / math.pi)))
        multifocal.append(int(np.sum(sizes >= MIN_FOCUS_MM3)) > 1)
        with_cavity.append(bool(np.any(case.masks["lesion_map"] == 3)))

    hyperintense, cavity_t2 = [], []
    post_op = BrainPhantom(cavity_probability=1.0)
    for s in seeds:
        anatomy, case = post_op._simulate(s)
        cavity = anatomy.fractions["cavity"] > PURE
        csf = (anatomy.fractions["csf"] > PURE) & (anatomy.ventricles > 0)
        ratio = _median_ratio(case.images["t2f"], cavity, csf)
        if math.isfinite(ratio):
            hyperintense.append(ratio > FLAIR_HYPERINTENSE_TO_CSF)
        cavity_t2.append(_median_ratio(case.images["t2w"], cavity, anatomy.fractions["wm"] > PURE))

    brain_volume, ventricle_volume, grey = [], [], []
    healthy = BrainPhantom(tumor_probability=0.0)
    for s in seeds:
        anatomy = healthy.anatomy(s)
        voxel_ml = float(np.prod(anatomy.spacing)) / 1000.0
        tissue = anatomy.masks["tissue"]
        brain_volume.append(np.isin(tissue, (TISSUE_LABELS["gm"], TISSUE_LABELS["wm"])).sum() * voxel_ml)
        ventricle_volume.append(anatomy.ventricles.sum() * voxel_ml)
        grey.append(tissue == TISSUE_LABELS["gm"])
    dice = [
        2.0 * np.sum(a & b) / max(1, a.sum() + b.sum()) for i, a in enumerate(grey) for b in grey[i + 1 :]
    ]

    def cv(values) -> float:
        values = np.asarray(values, dtype=float)
        return float(values.std(ddof=1) / values.mean()) if len(values) > 1 else math.nan

    median = lambda values: float(np.nanmedian(values)) if np.any(np.isfinite(values)) else math.nan  # noqa: E731
    relaxation = "Wansapura et al. JMRI 1999 T1/T2, Neeb et al. 2006 PD; design range"
    de_blank = "de Blank et al. 2019: edema T1 ~1.35x, T2 ~1.7x WM"
    figures = [
        Figure("t1n GM / WM (pure voxels)", median(ratios["t1n GM / WM"]), 0.55, 0.9,
               "Wright et al. MAGMA 2008: GM T1 > WM T1; design range"),
        Figure("t1n CSF / WM", median(ratios["t1n CSF / WM"]), 0.0, 0.4, relaxation),
        Figure("t2w GM / WM", median(ratios["t2w GM / WM"]), 1.1, 2.0, relaxation),
        Figure("t2w CSF / WM", median(ratios["t2w CSF / WM"]), 2.0, math.inf, "Spijkerman et al. 2018 CSF T2; design"),
        Figure("t2f GM / WM", median(ratios["t2f GM / WM"]), 1.05, 2.0, relaxation),
        Figure("t2f CSF / WM (CSF nulled)", median(ratios["t2f CSF / WM"]), 0.0, 0.35,
               "FLAIR TI nulls CSF (Ellingson et al. 2015)"),
        Figure("t1n edema / WM", median(ratios["t1n edema / WM"]), 0.5, 0.97, de_blank + " (hypointense)"),
        Figure("t2w edema / WM", median(ratios["t2w edema / WM"]), 1.2, 3.0, de_blank + " (hyperintense)"),
        Figure("t2f edema / WM", median(ratios["t2f edema / WM"]), 1.2, 3.0, de_blank + " (hyperintense)"),
        Figure("t1c enhancing / WM", median(ratios["t1c enhancing / WM"]), 1.1, math.inf,
               "Gd enhancement, Patankar et al. AJNR 2005 Ktrans"),
        Figure("APTw tumour core - WM", median(apt_contrast), 1.0, 4.0,
               "Togao et al. 2014; Zhou et al. 2013 (tumour ~2.5-4 %, NAWM ~0.4 %)", "%"),
        Figure("t2w cavity / WM (post-op)", median(cavity_t2), 1.5, math.inf, "fluid-filled cavity; design"),
        Figure("share of cavities FLAIR-hyperintense to CSF (post-op)",
               float(np.mean(hyperintense)) if hyperintense else math.nan,
               *share_range(CAVITY_PROTEIN_PROBABILITY, max(1, len(hyperintense))),
               "Eur Radiol 2001 (4/15 early); Sarbu et al. 2016 (29-59 %)"),
        Figure("smallest tumour equivalent diameter", min(diameters) if diameters else math.nan,
               *TUMOR_DIAMETER_RANGE_MM, "design (TUMOR_RADIUS_MM)", "mm"),
        Figure("largest tumour equivalent diameter", max(diameters) if diameters else math.nan,
               *TUMOR_DIAMETER_RANGE_MM, "design (TUMOR_RADIUS_MM)", "mm"),
        Figure("share of cases with a cavity", float(np.mean(with_cavity)), *share_range(CAVITY_PROBABILITY, n),
               "design (cavity_probability)"),
        Figure("share of multifocal cases", float(np.mean(multifocal)), *share_range(SATELLITE_PROBABILITY, n),
               "design (SATELLITE_PROBABILITY)"),
        Figure("CV of total brain volume (GM+WM, healthy)", cv(brain_volume), _spread_floor(TARGET_TBV_CV, n),
               math.inf, "design >= 8 % over 20 (PMC10511609: 10.3 %; Whitwell et al. 2001: 10 %)"),
        Figure("CV of lateral-ventricle volume (healthy)", cv(ventricle_volume),
               _spread_floor(TARGET_VENTRICLE_CV, n), math.inf, "design >= 30 % over 20 (PMC10511609: 51 %)"),
        Figure("mean pairwise GM Dice between subjects", float(np.mean(dice)) if dice else math.nan, 0.0,
               TARGET_GM_DICE, "design <= 0.80 (distinct gyral patterns)"),
    ]
    return figures
