"""MR physics shared by the organ phantoms: signal equations, contrast-agent kinetics, acquisition effects.

A phantom describes anatomy as *tissue fractions* (one map per tissue, summing to at most 1 per voxel) and
gives every tissue its relaxation properties. :func:`render` turns that into the signal of one sequence,
mixing signals (not properties) so partial-volume voxels behave as they do on a scanner. :func:`acquire`
then adds what the scanner adds: a smooth receive-bias field, blur (finite resolution) and Rician noise.

All times are milliseconds for relaxation (TR, TE, TI, T1, T2) and minutes for contrast kinetics.
Concentrations are millimolar (mM).

References
----------
- Bernstein, King, Zhou. *Handbook of MRI Pulse Sequences*, Elsevier 2004: spin-echo, inversion-recovery
  and spoiled gradient-echo steady-state signal equations.
- Rohrer et al. "Comparison of magnetic properties of MRI contrast media solutions at different magnetic
  field strengths", Invest Radiol 2005;40:715-724: relaxivities (gadobutrol in plasma at 3 T,
  r1 ~ 5.0 /s/mM, r2 ~ 7.1 /s/mM).
- Parker et al. "Experimentally-derived functional form of a population-averaged high-temporal-resolution
  arterial input function for dynamic contrast-enhanced MRI", MRM 2006;56:993-1000: population AIF.
- Tofts et al. "Estimating kinetic parameters from dynamic contrast-enhanced T1-weighted MRI of a diffusable
  tracer: standardized quantities and symbols", JMRI 1999;10:223-232: (extended) Tofts model.
- Materne et al. "Non-invasive quantification of liver perfusion with dynamic computed tomography and a
  dual-input one-compartmental model", Clin Sci 2000;99:517-525: dual-input liver model.
- Gudbjartsson & Patz. "The Rician distribution of noisy MRI data", MRM 1995;34:910-914.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from scipy import ndimage

# Relaxivities of a macrocyclic Gd agent (gadobutrol) in plasma at 3 T, 1/(s*mM) (Rohrer et al. 2005).
R1_GD = 5.0
R2_GD = 7.1
HEMATOCRIT = 0.42  # large-vessel haematocrit, converts whole-blood AIF to plasma concentration


@dataclass(frozen=True)
class Tissue:
    """Relaxation properties of one tissue class.

    Args:
        pd: proton density relative to pure water (0..1).
        t1: longitudinal relaxation time, ms.
        t2: transverse relaxation time, ms (also used as T2* for gradient echoes).
        fat: True for adipose tissue, so fat-suppressed sequences null it.
        heterogeneity: relative standard deviation of the smooth within-tissue variation of PD and T1/T2.
    """

    pd: float
    t1: float
    t2: float
    fat: bool = False
    heterogeneity: float = 0.03


# ----------------------------------------------------------------------------------------------------------
# Sequences (Bernstein et al. 2004). Each maps arrays of PD, T1, T2 to a magnitude signal.
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpinEcho:
    """Spin echo: S = PD (1 - exp(-TR/T1)) exp(-TE/T2)."""

    tr: float
    te: float
    fat_suppression: float = 1.0  # factor applied to fat signal (1 = no suppression)

    def signal(self, pd, t1, t2):
        return pd * (1.0 - np.exp(-self.tr / t1)) * np.exp(-self.te / t2)


@dataclass(frozen=True)
class InversionRecovery:
    """Magnitude inversion recovery (FLAIR, STIR): S = PD |1 - 2 exp(-TI/T1) + exp(-TR/T1)| exp(-TE/T2)."""

    tr: float
    te: float
    ti: float
    fat_suppression: float = 1.0

    def signal(self, pd, t1, t2):
        return pd * np.abs(1.0 - 2.0 * np.exp(-self.ti / t1) + np.exp(-self.tr / t1)) * np.exp(-self.te / t2)


@dataclass(frozen=True)
class SpoiledGradientEcho:
    """Spoiled gradient echo (FLASH/VIBE/THRIVE): S = PD sin(a) (1-E1) / (1 - cos(a) E1) exp(-TE/T2*)."""

    tr: float
    te: float
    flip_deg: float
    fat_suppression: float = 1.0

    def signal(self, pd, t1, t2):
        alpha = np.deg2rad(self.flip_deg)
        e1 = np.exp(-self.tr / t1)
        return pd * np.sin(alpha) * (1.0 - e1) / (1.0 - np.cos(alpha) * e1) * np.exp(-self.te / t2)


def gd_relaxation(t1: np.ndarray, t2: np.ndarray, concentration: np.ndarray):
    """T1 and T2 after Gd shortening: 1/T = 1/T0 + r C (r in 1/(s mM), T in ms)."""
    r1 = 1000.0 / t1 + R1_GD * concentration
    r2 = 1000.0 / t2 + R2_GD * concentration
    return 1000.0 / r1, 1000.0 / r2


def render(
    sequence,
    fractions: Mapping[str, np.ndarray],
    tissues: Mapping[str, Tissue],
    concentration: Mapping[str, np.ndarray | float] | None = None,
    texture: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Signal of ``sequence`` for an anatomy given as tissue fractions.

    Args:
        sequence: one of the sequence objects above.
        fractions: tissue name -> fraction map (all the same shape); voxels may sum to < 1 (air).
        tissues: tissue name -> :class:`Tissue`.
        concentration: tissue name -> Gd concentration (mM), scalar or map; missing tissues have none.
        texture: tissue name -> zero-mean relative variation map scaling PD (and inversely T1, T2),
            giving each tissue its own smooth heterogeneity.
    """
    concentration = concentration or {}
    texture = texture or {}
    out = None
    for name, frac in fractions.items():
        tissue = tissues[name]
        tex = texture.get(name, 0.0)
        pd = tissue.pd * (1.0 + tex)
        t1 = tissue.t1 * (1.0 - 0.5 * np.asarray(tex))
        t2 = tissue.t2 * (1.0 + 0.5 * np.asarray(tex))
        c = concentration.get(name)
        if c is not None:
            t1, t2 = gd_relaxation(t1, t2, np.asarray(c))
        s = sequence.signal(pd, t1, t2)
        if tissue.fat:
            s = s * sequence.fat_suppression
        s = frac * s
        out = s if out is None else out + s
    return np.asarray(out, dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# Contrast kinetics (minutes, mM)
# ----------------------------------------------------------------------------------------------------------


def parker_aif(t: np.ndarray) -> np.ndarray:
    """Population-average whole-blood arterial input function (Parker et al. 2006, Table 1), t in minutes.

    Injection at t = 0; the first-pass peak arrives ~0.17 min later.
    """
    a1, a2 = 0.809, 0.330  # mmol*min
    t1, t2 = 0.17046, 0.365  # min
    s1, s2 = 0.0563, 0.132  # min
    alpha, beta = 1.050, 0.1685  # mM, 1/min
    s, tau = 38.078, 0.483  # 1/min, min
    t = np.asarray(t, dtype=np.float64)
    gauss = a1 / (s1 * np.sqrt(2 * np.pi)) * np.exp(-((t - t1) ** 2) / (2 * s1**2))
    gauss += a2 / (s2 * np.sqrt(2 * np.pi)) * np.exp(-((t - t2) ** 2) / (2 * s2**2))
    return np.where(t >= 0, gauss + alpha * np.exp(-beta * t) / (1 + np.exp(-s * (t - tau))), 0.0)


KINETICS_DT = 1.0 / 120.0  # minutes; 0.5 s steps resolve the first pass
KINETICS_GRID = np.arange(0.0, 12.0, KINETICS_DT)


def plasma_aif(t: np.ndarray = KINETICS_GRID) -> np.ndarray:
    return parker_aif(t) / (1.0 - HEMATOCRIT)


def _convolve_exponential(inflow: np.ndarray, rate: float) -> np.ndarray:
    """Discrete  int_0^t inflow(s) exp(-rate (t - s)) ds  on KINETICS_GRID."""
    kernel = np.exp(-rate * KINETICS_GRID)
    return np.convolve(inflow, kernel)[: len(inflow)] * KINETICS_DT


def delayed(curve: np.ndarray, delay: float, dispersion: float = 0.0) -> np.ndarray:
    """A curve delayed by ``delay`` minutes and dispersed by a unit-area exponential of mean ``dispersion``."""
    shift = int(round(delay / KINETICS_DT))
    out = np.concatenate([np.zeros(shift), curve[: len(curve) - shift]]) if shift else curve.copy()
    if dispersion > 0:
        out = _convolve_exponential(out, 1.0 / dispersion) / dispersion
    return out


def extended_tofts(ktrans: float, ve: float, vp: float = 0.0, cp: np.ndarray | None = None) -> np.ndarray:
    """Tissue concentration on KINETICS_GRID, Ct = vp Cp + Ktrans int Cp exp(-kep (t-s)) ds, kep = Ktrans/ve.

    Args:
        ktrans: volume transfer constant, 1/min.
        ve: extravascular extracellular volume fraction.
        vp: plasma volume fraction.
        cp: plasma input (defaults to the Parker AIF in plasma).
    """
    cp = plasma_aif() if cp is None else cp
    return vp * cp + ktrans * _convolve_exponential(cp, ktrans / ve)


def dual_input_one_compartment(
    arterial: np.ndarray, portal: np.ndarray, ka: float, kp: float, k2: float
) -> np.ndarray:
    """Liver model of Materne et al. 2000: dCt/dt = ka Ca + kp Cpv - k2 Ct (rates in 1/min)."""
    return _convolve_exponential(ka * arterial + kp * portal, k2)


def sample(curve: np.ndarray, t: float) -> float:
    """Value of a KINETICS_GRID curve at time ``t`` minutes (linear interpolation)."""
    return float(np.interp(t, KINETICS_GRID, curve))


# ----------------------------------------------------------------------------------------------------------
# Random fields and acquisition
# ----------------------------------------------------------------------------------------------------------


def smooth_field(shape, rng: np.random.Generator, sigma: float, amplitude: float = 1.0) -> np.ndarray:
    """Zero-mean Gaussian random field with correlation length ``sigma`` voxels and std ``amplitude``."""
    # Filtering on a coarse grid and zooming up keeps this cheap for large sigma.
    step = max(1, int(sigma // 4))
    coarse_shape = tuple(max(2, -(-s // step)) for s in shape)
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse_shape), sigma / step, mode="wrap")
    if step > 1:
        noise = ndimage.zoom(noise, [s / c for s, c in zip(shape, coarse_shape)], order=1, mode="nearest")
        noise = noise[tuple(slice(0, s) for s in shape)]
    std = noise.std()
    return (noise - noise.mean()) * (amplitude / std if std > 0 else 0.0)


@dataclass(frozen=True)
class Acquisition:
    """What the scanner adds to the ideal signal.

    Args:
        snr: signal-to-noise ratio of the brightest tissue (99th percentile of the object).
        bias: std of the log receive-bias field (0.1 ~ +-20 % smooth shading).
        bias_scale: correlation length of the bias field, in voxels.
        blur: Gaussian blur sigma in voxels (finite resolution / partial volume), per axis or scalar.
        scale: value the 99th object percentile is mapped to.
    """

    snr: float = 30.0
    bias: float = 0.1
    bias_scale: float = 40.0
    blur: float | tuple[float, ...] = 0.0
    scale: float = 1000.0
    rician: bool = True

    def __call__(
        self,
        signal: np.ndarray,
        rng: np.random.Generator,
        body: np.ndarray | None = None,
        reference: float | None = None,
    ) -> np.ndarray:
        """Apply blur, bias, noise and scaling. ``body`` marks the object for the intensity reference.

        ``reference`` fixes the signal level that sets the noise and maps to ``scale`` instead of taking this
        image's 99th percentile: the phases of a dynamic series share one receiver gain, so they share it.
        """
        out = signal.astype(np.float64)
        if np.any(np.asarray(self.blur) > 0):
            out = ndimage.gaussian_filter(out, self.blur)
        if self.bias > 0:
            out = out * np.exp(smooth_field(out.shape, rng, self.bias_scale, self.bias))
        if reference is None:
            inside = out[body > 0] if body is not None and body.any() else out
            reference = float(np.percentile(inside, 99))
        ref = reference or 1.0
        sigma = ref / self.snr
        if self.rician:
            out = np.hypot(out + rng.normal(0.0, sigma, out.shape), rng.normal(0.0, sigma, out.shape))
        else:
            out = out + rng.normal(0.0, sigma, out.shape)
        return (out * (self.scale / ref)).astype(np.float32)
