"""Liver multiphase MRI phantom: an axial upper abdomen with hepatocellular carcinoma (HCC).

The anatomy is procedural and lives in patient space (millimetres, LPS: x -> patient left, y -> posterior,
z -> superior). Every organ is an implicit shape (a star-shaped outline with random Fourier radii, a tube, a
superellipse body outline) evaluated on a randomly deformed copy of the grid coordinates, so outlines differ
between subjects and cross-sections change smoothly along z. The body is 300-360 mm wide, so it fills most of the
default 384 mm field of view. Shapes become partial-volume *occupancies* and are stacked by priority into
tissue fractions; :func:`synthmr.phantom.physics.render` turns the fractions into the signal of each series
and :class:`synthmr.phantom.physics.Acquisition` adds bias, noise and scaling (docs/design.md, *The phantom*).

The disease (``subtype="hcc"``, default) is HCC in general: 10-120 mm tumours with the SEER size shares, one
tumour or sometimes several, each drawn with or without arterial phase hyperenhancement, washout and an
enhancing capsule at the frequencies of a surgical series (LI-RADS v2018 feature definitions, Chernyak et al.,
Radiology 2018;289:816-830), mildly T2-hyperintense. ``subtype="mmhcc"`` draws the macrotrabecular-massive subtype
the module was first written for: large (5-12 cm), lobulated, heterogeneous, necrotic tumours that all
hyperenhance and wash out (Ziol et al., Hepatology 2018;68:103-112; Mulé et al., Radiology 2020;295:562-571).
:func:`validation_figures` measures the result against the literature.

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

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage, stats
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
}

# HCC enhancement: two extracellular spaces. A rapidly exchanging (vascular, sinusoid-like) space of volume v_fast
# is fed by the tumour's supply with mean transit time MTT; the rest of the distribution volume DV fills slowly from
# it (transfer constant ktrans_slow). At equilibrium the agent fills DV; within the first minute the small fast
# space dominates, which is what makes arterialised tumours hyperenhance and then wash out.
# - DV: 0.49 +- 0.205 (Pahwa et al., HCC 49.0 +- 20.5 % vs liver 29.4 +- 8.3 %, as cited by Ma & Wang, Quant
#   Imaging Med Surg 2023, doi:10.21037/qims-23-1437), truncated to [0.2, 0.8].
# - MTT: 8.1 +- 3.1 s (CT perfusion, HCC vs 14.9 s in liver; Sahani et al., "Advanced hepatocellular carcinoma: CT
#   perfusion of liver and tumor tissue - initial experience", Radiology 2007;243:736-743), truncated to [5, 12] s.
# - Supply: tumours drawn with APHE are arterialised (no portal supply), as HCC lose their portal and gain
#   unpaired arterial supply with dedifferentiation (Matsui et al., "Benign and malignant nodules in cirrhotic
#   livers: distinction based on blood supply", Radiology 1991;178:493-497); tumours drawn without APHE keep a
#   liver-like dual supply with a reduced arterial share (0.2-0.5 of the liver's) and 0.5-1.0 times its total
#   flow: the low end of the normalised HCC/liver perfusion of 4.0 (range 0.5-16.5) of Abdullah et al.
#   (quantitative perfusion MRI of HCC and colorectal metastases, J Magn Reson Imaging 2008, PMID 18666145).
#   Arterialised tumours get a flow of v_fast / MTT, about 1-10 times the liver's, inside that range.
# - v_fast: tumours drawn with washout keep 0.10-0.20 of their volume in the fast space (assumed: below the
#   liver's ~0.25, so they fall below it once the bolus has passed); tumours drawn without washout exchange over
#   their whole DV.
# - ktrans_slow 0.02-0.05 /min (assumed: the interstitium fills over minutes, after the portal venous phase).
# The features are drawn first (LI-RADS shares above) and the parameters from these spreads are redrawn until the
# noiseless signal at the default phase times shows them with a margin (HCC_FEATURE_MARGIN), i.e. the parameters
# are drawn from their spreads conditioned on the drawn features.
HCC_DISTRIBUTION_VOLUME = (0.49, 0.205, 0.2, 0.8)
HCC_MTT_S = (8.1, 3.1, 5.0, 12.0)
HCC_FAST_VOLUME_WASHOUT = (0.10, 0.20)
HCC_KTRANS_SLOW_PER_MIN = (0.02, 0.05)
HCC_HYPOVASCULAR_ARTERIAL_SHARE = (0.2, 0.5)  # times the liver's arterial fraction
HCC_HYPOVASCULAR_FLOW_RATIO = (0.5, 1.0)  # times the liver's total flow
# Signal ratio (tumour / liver, noiseless) that a drawn feature must reach: > 1 + margin for APHE and < 1 - margin
# for washout, and the reverse for their absence, so noise and partial volume do not flip it (design choice).
HCC_FEATURE_MARGIN = 0.15
HCC_FEATURE_TRIES = 200
# MMHCC (subtype="mmhcc"): the earlier single-space model. Arterialised, high arterial flow into a small
# distribution volume (k2 = 6-11 /min): strong first-pass uptake, then washout below the slowly filling liver.
MMHCC_KINETICS = {"arterial_flow_per_min": (0.96, 1.44), "distribution_volume": (0.135, 0.165)}

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

# Body size (skin to skin at the level of the liver hilum). Assumed adult range: 300-360 mm wide, its depth 0.68-0.85
# of its width, subcutaneous fat 10-40 mm at the flanks. On the default 384 mm field of view (a typical axial
# upper-abdomen field of view, set just wider than the body to avoid wrap-around) the body spans 78-94 % of the
# width, as on clinical images.
BODY_WIDTH_MM = (300.0, 360.0)
BODY_DEPTH_RATIO = (0.68, 0.85)
SUBCUTANEOUS_FAT_MM = (10.0, 40.0)

# ----------------------------------------------------------------------------------------------------------
# Hepatocellular carcinoma, drawn per tumour.
#
# Relaxation. HCC T1 before contrast: 1056 +- 292 ms (PSIR T1 mapping of 38 HCC, "Quantitative evaluation of focal
# liver lesions with T1 mapping using a phase-sensitive inversion recovery sequence on gadoxetic acid-enhanced
# MRI", Eur J Radiol Open 2020;7:100312), against 809 ms for liver here. The draw is truncated below at 850 ms: a
# tumour with a shorter T1 than liver is brighter before contrast, which would contradict a drawn absence of
# arterial phase hyperenhancement (T1-hyperintense HCC are a minority).
# T2: malignant liver lesions 85 +- 17 ms against liver 54 +- 8 ms at 1.5 T (Eur Radiol 2002;12:2273-2279) and
# malignant tumours 76 +- 11 ms (Radiology 1994;193:43-47). The field-dependent part of liver R2 (susceptibility,
# which takes liver T2 from ~54 ms at 1.5 T to 34 ms at 3 T) is shared by a tumour in the same liver, so the
# lesion's excess is carried to 3 T as a *difference of rates*: R2(HCC) = R2(liver) - dR2, with dR2 = 1/54 - 1/85
# = 6.7 /s and 1/54 - 1/76 = 5.4 /s at 1.5 T, pooled 6.0 +- 2.0 /s. Large HCC are mildly T2-hyperintense and small
# (< 2 cm) HCC often isointense (Hussain et al., "Benign versus malignant hepatic nodules: MR imaging findings with
# pathologic correlation", Radiographics 2002;22:1023-1036; mild-moderate T2 hyperintensity is a LI-RADS v2018
# ancillary feature, Chernyak et al. 2018): small tumours draw a smaller excess (assumed 2 +- 1.5 /s).
# Truncated normal draws: (mean, sd, low, high).
HCC_T1_MS = (1056.0, 292.0, 850.0, 1500.0)
HCC_T2_RATE_EXCESS_PER_S = {"large": (6.0, 2.0, 2.0, 10.0), "small": (2.0, 1.5, 0.0, 5.0)}
SMALL_HCC_MM = 20.0
# Proton density relative to liver: no measured value; assumed equal to slightly higher (tumours hold at least as
# much water as the liver they replace).
HCC_PD_RATIO = (1.0, 1.05)
# Texture of viable tumour (relative SD of the smooth PD/T1/T2 variation, assumed): MMHCC is markedly heterogeneous
# ("mosaic"), ordinary HCC less so.
HCC_HETEROGENEITY = {"hcc": 0.06, "mmhcc": 0.12}
# Uneven uptake (hypoxic, ischaemic areas), relative SD of a smooth field scaling the tumour's Gd (assumed).
HCC_UPTAKE_VARIATION = {"hcc": 0.1, "mmhcc": 0.2}

# LI-RADS major features in 616 surgically confirmed HCC (Park et al., "Should threshold growth be considered a
# major feature in the diagnosis of hepatocellular carcinoma using LI-RADS?", Korean J Radiol 2021):
# arterial phase hyperenhancement 521/616, washout 489/616, enhancing capsule 181/616. Their joint distribution is
# not reported, so the three are drawn independently.
APHE_PROBABILITY = 521 / 616
WASHOUT_PROBABILITY = 489 / 616
CAPSULE_PROBABILITY = 181 / 616
# MMHCC shows APHE and washout (Mulé et al., Radiology 2020;295:562-571) and a capsule in a minority.
MMHCC_CAPSULE_PROBABILITY = 0.4

# Size: SEER adults with known size at diagnosis, < 2 cm 7.8 %, 2-4 cm 30.1 %, > 4 cm 62.0 % ("Hepatocellular
# carcinoma in the pediatric population ... SEER 1973-2011", HPB Surgery 2015:670728, Table 2). Diameters are
# log-uniform within each bin; the outer ends (10 and 120 mm) are those of the issue's range. MMHCC: 50-120 mm.
HCC_DIAMETER_BINS_MM = ((10.0, 20.0, 0.078), (20.0, 40.0, 0.301), (40.0, 120.0, 0.620))
MMHCC_DIAMETER_MM = (50.0, 120.0)
# Livers with more than one tumour (assumed 0.3: solitary HCC is the commonest presentation, multinodular disease a
# large minority; no population share was found). The extra tumours are drawn like the first.
MULTIPLE_TUMOUR_PROBABILITY = 0.3
# Necrosis, as the deepest share of a tumour (assumed): large HCC outgrow their supply, small ones rarely do.
NECROSIS_FRACTION = {"hcc_large": (0.0, 0.3), "hcc_medium": (0.0, 0.1), "mmhcc": (0.0, 0.4)}
CAPSULE_THICKNESS_MM = (2.0, 3.5)  # assumed; two pixels of the default grid at the thick end
# Lobulation: relative amplitude of the smooth field modulating a tumour's radius (assumed).
TUMOUR_LOBULATION = 0.12


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


def tumour_concentration(
    arterial: np.ndarray,
    portal: np.ndarray,
    arterial_flow: float,
    portal_flow: float,
    fast_volume: float,
    slow_volume: float,
    ktrans_slow: float,
) -> np.ndarray:
    """Viable HCC concentration (mM): a fast dual-input space plus a slowly filling interstitium.

    Args:
        arterial, portal: plasma inputs (mM) on ``KINETICS_GRID``.
        arterial_flow, portal_flow: plasma flows per tissue volume (ka, kp), 1/min.
        fast_volume: volume fraction of the rapidly exchanging space; k2 = (ka + kp) / fast_volume.
        slow_volume: volume fraction of the slowly filling interstitium (0: none).
        ktrans_slow: transfer constant into the interstitium, 1/min, from the mixed input plasma.
    """
    flow = arterial_flow + portal_flow
    fast = physics.dual_input_one_compartment(arterial, portal, arterial_flow, portal_flow, flow / fast_volume)
    if slow_volume <= 0.0 or ktrans_slow <= 0.0:
        return fast
    mixed = (arterial_flow * arterial + portal_flow * portal) / flow
    return fast + physics.extended_tofts(ktrans_slow, slow_volume, 0.0, mixed)


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float, low: float, high: float) -> float:
    """One draw of a normal distribution truncated to [low, high]."""
    return float(stats.truncnorm.rvs((low - mean) / sd, (high - mean) / sd, loc=mean, scale=sd, random_state=rng))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _harmonics(rng: np.random.Generator, roughness: float, orders: int = 5) -> np.ndarray:
    """Random Fourier coefficients (order k = 2..orders+1; amplitude, phase) of a star-shaped outline.

    Amplitudes fall as 1/k so the outline stays smooth; ``roughness`` is the amplitude of the k = 2 term
    relative to the mean radius.
    """
    k = np.arange(2, orders + 2)
    return np.stack([k, roughness * rng.uniform(0.3, 1.0, k.size) * 2.0 / k, rng.uniform(0, 2 * np.pi, k.size)], 1)


def _radius_factor(theta: np.ndarray, harmonics: np.ndarray | None) -> np.ndarray | float:
    """1 + sum_k a_k cos(k theta - phi_k), kept above 0.5 so the shape stays star-shaped about its centre."""
    if harmonics is None or len(harmonics) == 0:
        return np.float32(1.0)
    factor = np.ones_like(theta)
    for k, amplitude, phase in harmonics:
        factor += np.float32(amplitude) * np.cos(np.float32(k) * theta - np.float32(phase))
    return np.maximum(factor, np.float32(0.5))


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

    def ellipsoid(self, centre, radii, angle_deg: float = 0.0, harmonics: np.ndarray | None = None) -> np.ndarray:
        """Occupancy of an ellipsoid (3 radii) or of a z-invariant tube (2 radii) around ``centre``.

        ``angle_deg`` turns the first radius from patient left (+x) towards posterior (+y). ``harmonics`` (from
        :func:`_harmonics`) modulate the in-plane radius with angle, which turns the ellipse into a smooth random
        star-shaped outline.
        """
        angle = np.deg2rad(angle_deg)
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))

        def level(box):
            dx, dy = self.x[box] - np.float32(centre[0]), self.y[box] - np.float32(centre[1])
            u, v = (dx * cos + dy * sin) / np.float32(radii[0]), (dy * cos - dx * sin) / np.float32(radii[1])
            r2 = (u**2 + v**2) / _radius_factor(np.arctan2(v, u), harmonics) ** 2
            if len(radii) == 3:
                r2 = r2 + ((self.z[box] - np.float32(centre[2])) / np.float32(radii[2])) ** 2
            return np.sqrt(r2) - 1.0

        growth = 1.0 if harmonics is None else 1.0 + float(np.abs(harmonics[:, 1]).sum())
        in_plane = max(radii[0], radii[1]) * growth
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

    def superellipse_level(
        self, half_width: float, front: float, back: float, exponent: float, harmonics: np.ndarray | None = None
    ) -> np.ndarray:
        """Body-outline level set: a superellipse, deeper in front (-y) than behind (+y, the flat back), its
        radius modulated with angle by ``harmonics`` (a smooth random outline)."""
        half_width, exponent = np.float32(half_width), np.float32(exponent)  # stay in single precision
        depth = np.where(self.y < 0, np.float32(front), np.float32(back))
        u, v = self.x / half_width, self.y / depth
        r = (np.abs(u) ** exponent + np.abs(v) ** exponent) ** (1.0 / exponent)
        return r / _radius_factor(np.arctan2(v, u), harmonics) - 1.0


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
    """One drawn tumour: shape, LI-RADS features, composition and kinetics (minutes, mm)."""

    centre: tuple[float, ...]
    radius: float
    necrosis_fraction: float
    capsule_mm: float  # 0: no capsule
    aphe: bool  # drawn arterial phase hyperenhancement
    washout: bool  # drawn portal venous phase washout
    pd: float
    t1: float
    t2: float
    arterial_flow: float  # ka, 1/min
    portal_flow: float  # kp, 1/min
    fast_volume: float
    distribution_volume: float  # fast plus slow space
    ktrans_slow: float  # 1/min; 0 when the whole volume exchanges fast

    def concentration(self, arterial: np.ndarray, portal: np.ndarray) -> np.ndarray:
        return tumour_concentration(
            arterial,
            portal,
            self.arterial_flow,
            self.portal_flow,
            self.fast_volume,
            self.distribution_volume - self.fast_volume,
            self.ktrans_slow,
        )

    def meta(self) -> dict:
        flow = self.arterial_flow + self.portal_flow
        return {
            "centre_mm": [round(float(c), 2) for c in self.centre],
            "diameter_mm": round(2 * self.radius, 1),
            "necrosis_fraction": round(self.necrosis_fraction, 3),
            "capsule": self.capsule_mm > 0,
            "capsule_thickness_mm": round(self.capsule_mm, 2),
            "aphe": self.aphe,
            "washout": self.washout,
            "pd": round(self.pd, 3),
            "t1_ms": round(self.t1, 1),
            "t2_ms": round(self.t2, 1),
            "ka_per_min": round(self.arterial_flow, 4),
            "kp_per_min": round(self.portal_flow, 4),
            "k2_per_min": round(flow / self.fast_volume, 4),
            "mtt_s": round(60.0 * self.fast_volume / flow, 2),
            "fast_volume": round(self.fast_volume, 4),
            "distribution_volume": round(self.distribution_volume, 4),
            "ktrans_slow_per_min": round(self.ktrans_slow, 4),
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


SUBTYPES = ("hcc", "mmhcc")


class LiverPhantom:
    """Multiphase liver MRI (late arterial, portal venous, T2) of an upper abdomen with HCC, from a seed.

    Args:
        dims: 2 for one axial slice through the liver hilum, 3 for a stack of axial slices centred on it.
        size: in-plane matrix (size x size), 16 to 1024. Default 256 in 2D, 128 in 3D (3D is kept fast).
        spacing: in-plane pixel size, mm. Default 1.5 in 2D, 3.0 in 3D: both cover a 384 mm field of view.
        slices: number of slices (3D only); ``size x size x slices`` is at most 2**24 voxels.
        slice_spacing: slice distance, mm (3D only).
        tumor_probability: chance that a case has tumours; 0 gives healthy livers.
        n_tumors: (min, max) number of tumours in a case with tumours: ``min`` in most cases, a number in
            ``min + 1 .. max`` with probability ``MULTIPLE_TUMOUR_PROBABILITY`` when ``max > min``.
        arterial_time_min: late arterial acquisition time, minutes on the time axis of the Parker AIF (first-pass
            peak at 0.17 min). The default 0.35 corresponds to ~35 s after the start of injection.
        portal_time_min: portal venous acquisition time, same axis; the default 1.0 is ~70 s after injection.
            Viable HCC is guaranteed brighter than liver on the arterial and darker on the portal phase (for
            every parameter draw) at the default times; other times give other, physically consistent, contrasts.
        snr: signal-to-noise ratio of the brightest tissue on every series.
        subtype: ``"hcc"`` (default) draws HCC in general: 10-120 mm (SEER size shares), LI-RADS features with
            their published frequencies, 1 tumour or (with probability 0.3) more; ``"mmhcc"`` draws the
            macrotrabecular-massive subtype: 50-120 mm necrotic tumours that all hyperenhance and wash out.

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
        n_tumors: tuple[int, int] = (1, 3),
        arterial_time_min: float = ARTERIAL_TIME_MIN,
        portal_time_min: float = PORTAL_TIME_MIN,
        snr: float = 30.0,
        subtype: str = "hcc",
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
        if subtype not in SUBTYPES:
            raise InputError(f"subtype must be one of {', '.join(SUBTYPES)}, got {subtype!r}")
        self.subtype = subtype

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
            "subtype": self.subtype,
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
        kinetics = {k: float(rng.uniform(*v)) for k, v in KINETIC_RANGES.items()}
        # Tumours are drawn last, so one seed gives the same subject with or without them.
        has_tumours = rng.random() < self.tumor_probability
        tumours = self._draw_tumours(space, liver >= 0.5, kinetics) if has_tumours else []
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
        # The body is drawn from its outer size (BODY_WIDTH_MM, BODY_DEPTH_RATIO) inwards: skin, subcutaneous
        # fat, abdominal wall muscle, then the cavity the organs fill. Subjects differ in size, fat and outline.
        width = rng.uniform(*BODY_WIDTH_MM)
        total_depth = width * rng.uniform(*BODY_DEPTH_RATIO)
        exponent = rng.uniform(2.2, 2.8)  # a boxy oval: wide flanks, flat back
        wall = rng.uniform(8.0, 14.0)
        fat = rng.uniform(*SUBCUTANEOUS_FAT_MM)  # lateral and anterior; thinner over the back
        cw = width / 2.0 - wall - fat
        inner_depth = total_depth - 2.0 * wall - 1.6 * fat
        front_share = rng.uniform(0.5, 0.56)
        cf, cb = inner_depth * front_share, inner_depth * (1.0 - front_share)
        cavity_outline, skin_outline = _harmonics(rng, 0.03), _harmonics(rng, 0.02)
        cavity = space.occupancy(space.superellipse_level(cw, cf, cb, exponent, cavity_outline))
        under_fat = space.occupancy(
            space.superellipse_level(cw + wall, cf + wall, cb + wall, exponent, cavity_outline)
        )
        skin = (cw + wall + fat, cf + wall + fat, cb + wall + 0.6 * fat)
        body = space.occupancy(space.superellipse_level(*skin, exponent, skin_outline))

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

        def outline(roughness):  # a smooth random star-shaped outline instead of an ellipse
            return _harmonics(rng, roughness)

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
        right_radii = np.array([0.75 * cw, 0.6 * (cf + cb), 95.0]) * liver_scale
        left_radii = np.array([0.45 * cw, 0.3 * cf, 60.0]) * liver_scale

        occupancies = [
            ("aorta", space.ellipsoid(aorta, (ra, ra))),
            ("ivc", space.ellipsoid(ivc, (13.0, 9.0))),
            ("portal_vein", space.tube(hilum, confluence, rng.uniform(6.0, 8.0))),
        ]
        vertebral_outline = outline(0.04)
        occupancies += [
            ("marrow", space.ellipsoid(vertebra, (1.15 * rv - 2.0, rv - 2.0), harmonics=vertebral_outline)),
            ("cortical_bone", space.ellipsoid(vertebra, (1.15 * rv, rv), harmonics=vertebral_outline)),
        ]
        for side in (-1, 1):
            paraspinal = (side * (0.6 * rv + 18.0), cb - 18.0)
            occupancies.append(("muscle", space.ellipsoid(paraspinal, (24.0, 20.0), harmonics=outline(0.08))))
            # Psoas: a cone that starts below the hilum and widens caudally.
            psoas = (side * (1.15 * rv + 14.0), yv - 2.0, -150.0)
            occupancies.append(("muscle", space.ellipsoid(psoas, (20.0, 18.0, 130.0))))
        for side, centre in ((-1, right_kidney), (1, left_kidney)):
            # The renal hilum faces antero-medially; the long axis runs postero-medial to antero-lateral.
            angle = -side * 45.0 + jitter(10.0)
            kidney_outline = outline(0.06)
            sinus = (centre[0] - side * 0.5 * kidney_radii[1], centre[1] - 0.3 * kidney_radii[1], centre[2])
            occupancies += [
                ("renal_sinus_fat", space.ellipsoid(sinus, kidney_radii * 0.4, angle)),
                ("kidney_medulla", space.ellipsoid(centre, kidney_radii * 0.72, angle, kidney_outline)),
                ("kidney_cortex", space.ellipsoid(centre, kidney_radii, angle, kidney_outline)),
            ]
        spleen_radii, pancreas_radii = np.array([55.0, 22.0, 60.0]) * scale(), np.array([50.0, 10.0, 16.0]) * scale()
        occupancies += [
            ("spleen", space.ellipsoid(spleen, spleen_radii, -55.0 + jitter(), outline(0.12))),
            ("pancreas", space.ellipsoid(pancreas, pancreas_radii, 20.0 + jitter(), outline(0.1))),
            (
                "liver",
                np.maximum(
                    space.ellipsoid(right_lobe, right_radii, harmonics=outline(0.08)),
                    space.ellipsoid(left_lobe, left_radii, harmonics=outline(0.12)),
                ),
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

    def _draw_tumours(self, space: _Space, liver_mask: np.ndarray, kinetics: dict[str, float]) -> list[_Tumour]:
        """Draw the tumours of a case: count, sizes, positions inside the liver, features and parameters."""
        rng = space.rng
        if not liver_mask.any():
            return []
        low, high = self.n_tumors
        several = high > low and rng.random() < MULTIPLE_TUMOUR_PROBABILITY
        count = int(rng.integers(low + 1, high + 1)) if several else low
        diameters = sorted((self._diameter(rng) for _ in range(count)), reverse=True)
        # Room (mm) for a tumour centred at each voxel: depth inside the liver, less the space that earlier
        # tumours hold (with a gap, so that separate tumours stay separate).
        room = _depth(liver_mask, space.spacing)
        grid = np.meshgrid(*space.axes, indexing="ij", sparse=True)
        tumours = []
        margin = 1.0 + 2.0 * TUMOUR_LOBULATION
        for diameter in diameters:
            reach = diameter / 2.0 * margin + space.spacing[0]
            if not tumours and room.max() < reach:
                # The first (largest) tumour may exceed the liver section: it takes the deepest point and is clipped
                # by the liver outline, as a tumour replacing a lobe.
                reach = 0.9 * room.max()
            elif room.max() < reach:
                # A further tumour shrinks to the room left, so that it stays separate; below the smallest size
                # of the subtype it is left out.
                diameter = float(2.0 * (room.max() - space.spacing[0]) / margin)
                smallest = MMHCC_DIAMETER_MM[0] if self.subtype == "mmhcc" else HCC_DIAMETER_BINS_MM[0][0]
                if diameter < smallest:
                    break
                reach = diameter / 2.0 * margin + space.spacing[0]
            candidates = np.flatnonzero(room >= reach)
            if candidates.size == 0:
                break
            index = np.unravel_index(rng.choice(candidates), liver_mask.shape)
            # The centre in the deformed coordinates the shape is drawn in, so it appears around the chosen voxel.
            deformed = (space.x[index], space.y[index]) + ((space.z[index],) if space.z.ndim == 3 else ())
            centre = tuple(float(c) for c in deformed)
            tumours.append(self._tumour(rng, centre, diameter / 2.0, kinetics))
            distance = np.sqrt(sum((g - axis[i]) ** 2 for g, axis, i in zip(grid, space.axes, index)))
            extent = diameter / 2.0 * margin + space.spacing[0]  # the whole tumour, also where clipped
            room = np.minimum(room, distance - extent - 3.0)
        return tumours

    def _diameter(self, rng: np.random.Generator) -> float:
        """Tumour diameter (mm): SEER size shares for HCC, uniform 50-120 mm for MMHCC."""
        if self.subtype == "mmhcc":
            return float(rng.uniform(*MMHCC_DIAMETER_MM))
        shares = np.array([share for _, _, share in HCC_DIAMETER_BINS_MM])
        low, high, _ = HCC_DIAMETER_BINS_MM[rng.choice(len(shares), p=shares / shares.sum())]
        return _log_uniform(rng, low, high)

    def _tumour(self, rng: np.random.Generator, centre, radius: float, kinetics: dict[str, float]) -> _Tumour:
        """Features, composition, relaxation and kinetics of one tumour."""
        diameter = 2.0 * radius
        if self.subtype == "mmhcc":
            aphe = washout = True
            has_capsule = rng.random() < MMHCC_CAPSULE_PROBABILITY
            necrosis = float(rng.uniform(*NECROSIS_FRACTION["mmhcc"]))
        else:
            aphe, washout = rng.random() < APHE_PROBABILITY, rng.random() < WASHOUT_PROBABILITY
            has_capsule = rng.random() < CAPSULE_PROBABILITY
            key = "hcc_large" if diameter >= 40.0 else "hcc_medium" if diameter >= SMALL_HCC_MM else None
            necrosis = float(rng.uniform(*NECROSIS_FRACTION[key])) if key else 0.0
        capsule_mm = float(rng.uniform(*CAPSULE_THICKNESS_MM)) if has_capsule else 0.0
        liver = TISSUES["liver"]
        arterial, portal = physics.plasma_aif(), _portal_input(kinetics)
        liver_curve = _liver_curve(kinetics, portal)
        for _ in range(HCC_FEATURE_TRIES):
            excess = HCC_T2_RATE_EXCESS_PER_S["small" if diameter < SMALL_HCC_MM else "large"]
            t2 = 1000.0 / (1000.0 / liver.t2 - _truncated_normal(rng, *excess))
            tumour = _Tumour(
                centre=centre,
                radius=radius,
                necrosis_fraction=necrosis,
                capsule_mm=capsule_mm,
                aphe=aphe,
                washout=washout,
                pd=liver.pd * float(rng.uniform(*HCC_PD_RATIO)),
                t1=_truncated_normal(rng, *HCC_T1_MS),
                t2=t2,
                **self._supply(rng, aphe, washout, kinetics),
            )
            if _shows_features(tumour, tumour.concentration(arterial, portal), liver_curve):
                break
        return tumour

    def _supply(self, rng: np.random.Generator, aphe: bool, washout: bool, kinetics: dict[str, float]) -> dict:
        """Flows and volumes of one tumour (see HCC_DISTRIBUTION_VOLUME and what follows it)."""
        if self.subtype == "mmhcc":
            volume = float(rng.uniform(*MMHCC_KINETICS["distribution_volume"]))
            flow = float(rng.uniform(*MMHCC_KINETICS["arterial_flow_per_min"]))
            return dict(
                arterial_flow=flow, portal_flow=0.0, fast_volume=volume, distribution_volume=volume, ktrans_slow=0.0
            )
        volume = _truncated_normal(rng, *HCC_DISTRIBUTION_VOLUME)
        fast = min(volume, float(rng.uniform(*HCC_FAST_VOLUME_WASHOUT))) if washout else volume
        ktrans_slow = float(rng.uniform(*HCC_KTRANS_SLOW_PER_MIN)) if fast < volume else 0.0
        if aphe:
            mtt_min = _truncated_normal(rng, *HCC_MTT_S) / 60.0
            arterial_flow, portal_flow = fast / mtt_min, 0.0
        else:
            flow = kinetics["liver_flow_per_min"] * float(rng.uniform(*HCC_HYPOVASCULAR_FLOW_RATIO))
            share = kinetics["liver_arterial_fraction"] * float(rng.uniform(*HCC_HYPOVASCULAR_ARTERIAL_SHARE))
            arterial_flow, portal_flow = share * flow, (1.0 - share) * flow
        return dict(
            arterial_flow=arterial_flow,
            portal_flow=portal_flow,
            fast_volume=fast,
            distribution_volume=volume,
            ktrans_slow=ktrans_slow,
        )

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
            distance = np.sqrt(sum(o**2 for o in offsets)) / tumour.radius
            lobes = space.field(tumour.radius / 2.0, TUMOUR_LOBULATION)
            # Zero mean over the nominal tumour, so lobulation reshapes the tumour without changing its size.
            nominal = distance <= 1.0
            if nominal.any():
                lobes -= lobes[nominal].mean()
            level = distance - 1.0 + lobes
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
            tissues[f"tumor_{index}"] = Tissue(
                tumour.pd, tumour.t1, tumour.t2, heterogeneity=HCC_HETEROGENEITY[self.subtype]
            )
        spin_echo_tissues = {**tissues, **{k: replace(tissues[k], pd=tissues[k].pd * FLOW_VOID) for k in FLOWING_BLOOD}}
        texture = {
            name: space.field(6.0 if name.startswith("tumor_") else 15.0, tissues[name].heterogeneity)
            for name in fractions
            if tissues[name].heterogeneity > 0
        }
        curves = _concentration_curves(tumours, model.kinetics)
        # Viable tumour enhances unevenly (hypoxic, ischaemic areas): a smooth variation of its uptake.
        uptake = np.clip(1.0 + space.field(10.0, HCC_UPTAKE_VARIATION[self.subtype]), 0.2, None) if tumours else 1.0
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


def _portal_input(kinetics: dict[str, float]) -> np.ndarray:
    return portal_venous_input(kinetics["portal_delay_min"], kinetics["portal_dispersion_min"])


def _liver_curve(kinetics: dict[str, float], portal: np.ndarray) -> np.ndarray:
    return liver_concentration(
        portal,
        kinetics["liver_arterial_fraction"],
        kinetics["liver_flow_per_min"],
        kinetics["liver_distribution_volume"],
    )


def _shows_features(tumour: _Tumour, tumour_curve: np.ndarray, liver_curve: np.ndarray) -> bool:
    """Whether the noiseless tumour/liver signal at the default phase times shows the tumour's drawn APHE and
    washout (or their absence) with the margin HCC_FEATURE_MARGIN."""
    liver = TISSUES["liver"]
    hcc = Tissue(tumour.pd, tumour.t1, tumour.t2)
    ratios = []
    for key, t in (("t1fs_arterial", ARTERIAL_TIME_MIN), ("t1fs_portal", PORTAL_TIME_MIN)):
        signals = [
            SEQUENCES[key].signal(x.pd, *physics.gd_relaxation(x.t1, x.t2, physics.sample(curve, t)))
            for x, curve in ((hcc, tumour_curve), (liver, liver_curve))
        ]
        ratios.append(signals[0] / signals[1])
    arterial, portal = ratios
    margin = HCC_FEATURE_MARGIN
    aphe_shown = arterial > 1.0 + margin if tumour.aphe else arterial < 1.0 - margin
    washout_shown = portal < 1.0 - margin if tumour.washout else portal > 1.0 + margin
    return bool(aphe_shown and washout_shown)


def _concentration_curves(tumours: list[_Tumour], kinetics: dict[str, float]) -> dict[str, np.ndarray]:
    """Gd concentration curves (mM, on ``KINETICS_GRID``) of every enhancing structure."""
    arterial = physics.plasma_aif()
    portal = _portal_input(kinetics)
    whole_blood = 1.0 - physics.HEMATOCRIT  # vessels hold whole blood; the agent stays in plasma
    curves = {
        "aorta": arterial * whole_blood,
        "portal_vein": portal * whole_blood,
        "hepatic_vessels": portal * whole_blood,
        "ivc": physics.delayed(arterial, CAVAL_DELAY_MIN, CAVAL_DISPERSION_MIN) * whole_blood,
        "liver": _liver_curve(kinetics, portal),
        "spleen": physics.dual_input_one_compartment(
            arterial, portal, SPLEEN_FLOW_PER_MIN, 0.0, SPLEEN_FLOW_PER_MIN / SPLEEN_DISTRIBUTION_VOLUME
        ),
        "capsule": physics.extended_tofts(CAPSULE_KTRANS, CAPSULE_VE, 0.0, portal),
        **{name: physics.extended_tofts(*params, cp=arterial) for name, params in TOFTS.items()},
    }
    for index, tumour in enumerate(tumours, start=1):
        curves[f"tumor_{index}"] = tumour.concentration(arterial, portal)
    return curves


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------------------
# Validation: what the phantom produces, measured from its images and masks (synthmr phantom validate liver)
# ----------------------------------------------------------------------------------------------------------

# Design targets of the body in the field of view (see BODY_WIDTH_MM): the body spans most of the image width and
# about half its area (a boxy oval 0.68-0.85 times as deep as wide).
BODY_WIDTH_FRACTION_TARGET = (0.75, 0.97)
BODY_AREA_FRACTION_TARGET = (0.40, 0.65)
# Pixels peeled off a region before its signal is measured, so partial volume does not decide a comparison.
_MEASURE_EROSION = 2


def _interior(region: np.ndarray, erosion: int = _MEASURE_EROSION) -> np.ndarray:
    """``region`` eroded by up to ``erosion`` pixels, less where that would leave fewer than 4 pixels."""
    for iterations in range(erosion, 0, -1):
        inner = ndimage.binary_erosion(region, iterations=iterations)
        if inner.sum() >= 4:
            return inner
    return region


def _tumour_measurements(case: PhantomCase) -> list[dict[str, float]]:
    """Per tumour (connected component of the ``tumor`` mask): diameter and tumour/liver signal ratios."""
    tumor, necrosis = case.masks["tumor"].astype(bool), case.masks["necrosis"].astype(bool)
    liver = case.masks["liver"].astype(bool)
    labels, count = ndimage.label(tumor)
    near_tumour = ndimage.binary_dilation(tumor, iterations=3)
    pixel_area = float(np.prod(case.spacing[:2]))
    out = []
    for label in range(1, count + 1):
        component = labels == label
        viable = _interior(component & ~necrosis)
        if viable.sum() < 4:
            continue
        # Liver around the tumour (within ~15 mm), clear of every tumour's edge.
        around = ndimage.binary_dilation(component, iterations=10) & liver & ~near_tumour
        if around.sum() < 20:
            around = liver & ~near_tumour
        rim = component & ~ndimage.binary_erosion(component)
        record = {"diameter_mm": 2.0 * float(np.sqrt(component.sum() * pixel_area / np.pi))}
        for key, image in case.images.items():
            reference = float(np.median(image[around]))
            record[key] = float(np.median(image[viable])) / reference
            if key == "t1fs_portal":
                record["rim_portal"] = float(np.median(image[rim])) / reference
        out.append(record)
    return out


def _spin_echo_ratio(first: Tissue, second: Tissue) -> float:
    sequence = SEQUENCES["t2"]
    return float(sequence.signal(first.pd, first.t1, first.t2) / sequence.signal(second.pd, second.t1, second.t2))


def validation_figures(n: int, seed: int) -> list:
    """Figures of ``n`` default cases (seeds ``seed .. seed + n - 1``), measured from images and masks."""
    from synthmr.phantom.validate import Figure, share_range

    phantom = LiverPhantom()
    tumours: list[dict[str, float]] = []
    per_liver, spleen_t2, body_area, body_width, liver_area = [], [], [], [], []
    for case_seed in range(seed, seed + n):
        case = phantom(case_seed)
        fractions = phantom.tissue_fractions(case_seed)
        measured = _tumour_measurements(case)
        tumours += measured
        if case.meta["n_tumors"]:
            per_liver.append(len(measured))
        t2 = case.images["t2"]
        spleen_t2.append(float(np.median(t2[fractions["spleen"] > 0.9]) / np.median(t2[fractions["liver"] > 0.9])))
        body = sum(fractions.values()) > 0.5
        body_area.append(float(body.mean()))
        columns = np.flatnonzero(body.any(axis=1))
        body_width.append((columns[-1] - columns[0] + 1) / body.shape[0])
        liver_area.append(float(case.masks["liver"].sum()))

    def mean(values):
        return float(np.mean(values)) if len(values) else float("nan")

    def share(flags):
        return float(np.mean(flags)) if len(flags) else float("nan")

    count = len(tumours)
    diameters = np.array([t["diameter_mm"] for t in tumours])
    # Capsule: the tumour's outer pixel ring brighter than the liver around it and than the tumour inside it.
    capsule = [t["rim_portal"] > max(1.0, t["t1fs_portal"]) for t in tumours]
    liver_tissue, spleen_tissue = TISSUES["liver"], TISSUES["spleen"]
    # Spleen/liver T2w ratio allowed by de Bazelaire's relaxation times (+- 1 SD: spleen T2 61 +- 9 ms, liver
    # 34 +- 4 ms) through this sequence.
    spleen_low = _spin_echo_ratio(replace(spleen_tissue, t2=52.0), replace(liver_tissue, t2=38.0))
    spleen_high = _spin_echo_ratio(replace(spleen_tissue, t2=70.0), replace(liver_tissue, t2=30.0))
    bins = {name: share for (_, _, share), name in zip(HCC_DIAMETER_BINS_MM, ("< 20 mm", "20-40 mm", "> 40 mm"))}
    total = sum(bins.values())
    seer = "SEER adults (HPB Surgery 2015:670728)"
    park = "Park et al., Korean J Radiol 2021"
    figures = [
        Figure("T2w HCC / liver (mean over tumours)", mean([t["t2"] for t in tumours]), 1.1, 2.0,
               "mildly-moderately hyperintense: Hussain et al., Radiographics 2002; LI-RADS v2018"),
        Figure("arterial HCC / liver (median over tumours)", float(np.median([t["t1fs_arterial"] for t in tumours])),
               1.0, math.inf, f"APHE in 85 % ({park}) => median > 1"),
        Figure("portal HCC / liver (median over tumours)", float(np.median([t["t1fs_portal"] for t in tumours])),
               -math.inf, 1.0, f"washout in 79 % ({park}) => median < 1"),
        Figure("T2w spleen / liver", mean(spleen_t2), spleen_low, spleen_high,
               "de Bazelaire et al., Radiology 2004 (T2 +- 1 SD) through the T2 FSE equation"),
        Figure("APHE share (arterial HCC/liver > 1)", share([t["t1fs_arterial"] > 1.0 for t in tumours]),
               *share_range(APHE_PROBABILITY, count), f"521/616, {park}"),
        Figure("washout share (portal HCC/liver < 1)", share([t["t1fs_portal"] < 1.0 for t in tumours]),
               *share_range(WASHOUT_PROBABILITY, count), f"489/616, {park}"),
        Figure("capsule share (portal rim > liver, interior)", share(capsule),
               *share_range(CAPSULE_PROBABILITY, count), f"181/616, {park}"),
    ]
    for (low, high, _), name in zip(HCC_DIAMETER_BINS_MM, bins):
        inside = (diameters >= low) & (diameters < high) if high < 100 else diameters >= low
        figures.append(Figure(f"diameter {name} share", share(inside), *share_range(bins[name] / total, count), seer))
    figures += [
        Figure("smallest tumour diameter", float(diameters.min()) if count else math.nan, 8.0, math.inf,
               "design: 10 mm smallest (issue range 10-120 mm)", "mm"),
        # The grid deformation (+-5 mm over ~60 mm, see _Space) stretches shapes locally by up to ~10 %.
        Figure("largest tumour diameter", float(diameters.max()) if count else math.nan, -math.inf, 132.0,
               "design: 120 mm largest, + up to 10 % local stretch of the deformed grid", "mm"),
        Figure("livers with > 1 tumour share", share([k > 1 for k in per_liver]),
               *share_range(MULTIPLE_TUMOUR_PROBABILITY, len(per_liver)), "design (assumed 0.3)"),
        Figure("tumours per liver (mean)", mean(per_liver), 1.0, 3.0, "design: 1-3 tumours"),
        Figure("body area / image area (mean)", mean(body_area), *BODY_AREA_FRACTION_TARGET,
               "design: adult abdomen 300-360 mm wide on a 384 mm FOV"),
        Figure("body width / FOV width (mean)", mean(body_width), *BODY_WIDTH_FRACTION_TARGET,
               "design: FOV set just wider than the body"),
        Figure("liver area CV across subjects", float(np.std(liver_area) / np.mean(liver_area)), 0.1, math.inf,
               "design: subjects differ in size and shape"),
    ]
    return figures
