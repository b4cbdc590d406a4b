"""Run an image-to-image generator over the cases of a datalist and write its outputs on each input's grid.

This is what a bundle's ``inference.yaml`` runs (docs/design.md, *Data conventions* and *The bundle contract*).
For every case it:

1. reads the input images with :func:`synthmr.io.read_image` (clear errors for missing, corrupt or non-finite
   files) and checks they share the grid of the first input (the reference); optional inputs may be absent;
2. scales each intensity input (every input but the label maps) to [-1, 1] by its own robust range
   (:class:`~synthmr.transforms.IntensityScaling`); these, stacked, are the generator's input, unless the bundle
   gives ``conditions``, a callable that builds the generator's input from the case's images and label maps
   (a mask-guided method's conditioning images);
3. runs the generator: a 2D generator goes over a volume slice by slice (the slices of the last array axis are
   the batch), a 3D generator over the whole volume, both through MONAI's ``SlidingWindowInferer`` so that any
   image size works and memory stays bounded by ``roi_size`` and ``sw_batch_size``; windows are padded with -1,
   the scaled value of air. (MONAI's ``SliceInferer`` does the same in one call; batching the slices here lets the
   run report progress after every batch, which the Slicer module shows). A bundle passes its configured
   ``SlidingWindowInferer`` (its ``inferer``) and that inferer is the one used; an image smaller than its window
   gets one of the same settings with a window of the image's size;
4. maps every output channel back with the reference input's scaling (a synthetic sequence lands on the units of
   the sequence it was made from, as acquisitions on one receiver gain do), or with the scaling of the input that
   ``output_scalings`` names for it (a synthetic version of an input sequence in that sequence's units), or, when
   ``conditions`` scales the outputs itself (a generator whose only inputs are label maps, whose units come from
   an atlas), with the scalings it returns; and writes it as
   ``<output_dir>/<case_id>/<output key>.nii.gz`` on the reference grid, each file atomically, marked as synthetic
   in its header and with its sidecar ``<output key>.json`` (:mod:`synthmr.provenance`: the bundle, version and
   weights of ``provenance``, the inputs with their SHA-256, the precision).

All output paths are checked before any computation, so an existing output stops the run at once unless
``overwrite`` is set, and a failure never leaves a half-written file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

from synthmr.errors import InputError, config_bool
from synthmr.provenance import record, sidecar_path, write_synthetic
from synthmr.io import Volume, read_image
from synthmr.io._atomic import check_destination
from synthmr.io.datalist import check_case_id
from synthmr.io.image import image_extension, image_size
from synthmr.transforms.intensity import IntensityScaling, LowOver, check_low_over

# Value of air in the generator range: what windows that overhang the image are padded with.
AIR = -1.0
# The generator's arithmetic: fp32, or autocast to a 16-bit type (bf16 on CPU and CUDA, fp16 on CUDA only).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Synthesizer:
    """Apply ``network`` to every case of ``datalist`` (see the module docstring).

    Args:
        network: generator mapping ``(N, len(inputs), *spatial)`` in [-1, 1] to ``(N, len(outputs), *spatial)``.
        datalist: cases, each a dict with a path for every key of ``inputs`` and optionally ``case_id``
            (default: the reference input's file name without extension): a list, a single dict, or any sequence
            of such dicts (e.g. a :class:`monai.data.Dataset` over a datalist).
        inputs: keys of the input images, in the network's channel order; the first one is the reference.
        outputs: keys of the outputs, in the network's channel order.
        output_dir: folder the outputs are written to.
        device: where the network runs.
        spatial_dims: 2 for a slice-wise generator, 3 for a volumetric one.
        roi_size: largest sliding-window size (pixels per axis), a multiple of the generator's size constraint;
            smaller images use one window of their own size, rounded up to the network's ``size_multiple``.
        sw_batch_size: windows (slices) per forward pass.
        overlap: sliding-window overlap; overlapping windows are blended with Gaussian weights.
        headroom, low_over: how the intensity inputs are scaled to the generator range, as in training (see
            :class:`IntensityScaling`).
        overwrite: replace existing output files.
        progress: optional ``progress(done, total)`` called after every batch of slices.
        inferer: optional :class:`~monai.inferers.SlidingWindowInferer` to run the network with. Its
            ``roi_size``, ``sw_batch_size`` and ``overlap`` replace the arguments of those names, and its blending
            mode and padding value are kept; windows shrunk to a smaller image get an inferer of the same settings.
        labelmaps: the keys of ``inputs`` that are label maps: read and checked like the others, never scaled.
        optional: the keys of ``inputs`` a case may leave out (never the reference).
        conditions: optional ``conditions(arrays)`` -> the generator's input ``(C, *spatial)`` in [-1, 1], from
            ``arrays``, input key -> the case's array ``(*spatial)`` in its file's units (optional inputs the case
            leaves out are absent). Without it, the scaled intensity inputs stacked in ``inputs`` order. Two
            attributes of ``conditions`` widen this: ``takes_volumes = True`` gives it the
            :class:`~synthmr.io.Volume` of each input (grid included, e.g. to register an atlas) instead of the
            array; ``scales_outputs = True`` means it returns ``(input, scalings)``, ``scalings`` mapping every
            output key to the :class:`IntensityScaling` that maps it back; ``output_scalings`` is then unused and
            the reference may be a label map. ``pad_value`` (default -1, air) is what windows that overhang
            the image are padded with when no ``inferer`` is given (a given inferer keeps its ``cval``).
        output_scalings: output key -> the intensity input whose scaling maps that output back (default: the
            reference input's).
        output_labelmaps: the output keys that are label maps (written as unsigned 8-bit labels); only a subclass
            that makes labels (overriding ``_synthesise``) has any.
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` to run the generator under ``torch.autocast`` with that
            type (outputs are blended and written in fp32 either way); fp16 only on CUDA. ``"auto"``: bf16 where the
            device computes it natively (:func:`native_bf16`), fp32 elsewhere (emulated bf16 is slower than fp32).
            A bundle sets ``auto`` only when its accuracy measurement (benchmarks/precision.py) backs bf16.
        channels_last: run the network on channels-last tensors (:class:`AutocastNetwork`); the same numbers up to
            rounding, faster or slower by model and size (benchmarks/inference.py).
        compile: ``torch.compile`` the network (True: the default backend, or a backend or its name): worth its compile
            time (a minute or more) only for long runs such as ``synthmr generate``; off by default.
        provenance: the maker every output's sidecar records, :func:`synthmr.provenance.bundle_identity` of the
            bundle and its weights (bundle configs pass it); without it the outputs are still marked synthetic.
    """

    seed: int | None = None  # a subclass that draws (brain_tumor_fabrication's TumorFabricator) records its seed

    def __init__(
        self,
        network: torch.nn.Module,
        datalist: Sequence[dict],
        inputs: Sequence[str],
        outputs: Sequence[str],
        output_dir: str | os.PathLike,
        device: torch.device | str = "cpu",
        spatial_dims: int = 2,
        roi_size: Sequence[int] = (256, 256),
        sw_batch_size: int = 8,
        overlap: float = 0.25,
        headroom: float = 1.0,
        overwrite: bool = False,
        progress: Callable[[int, int], None] | None = None,
        inferer: SlidingWindowInferer | None = None,
        labelmaps: Sequence[str] = (),
        optional: Sequence[str] = (),
        conditions: Callable[[Mapping[str, np.ndarray]], np.ndarray] | None = None,
        output_scalings: Mapping[str, str] | None = None,
        low_over: LowOver = "foreground",
        output_labelmaps: Sequence[str] = (),
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool | str | Callable = False,
        provenance: Mapping | None = None,
    ) -> None:
        check_low_over(low_over)
        if inferer is not None:
            if not isinstance(inferer, SlidingWindowInferer):
                raise InputError(f"inferer must be a monai.inferers.SlidingWindowInferer, got {type(inferer).__name__}")
            roi_size = (inferer.roi_size,) * spatial_dims if isinstance(inferer.roi_size, int) else inferer.roi_size
            sw_batch_size, overlap = inferer.sw_batch_size, inferer.overlap
        if spatial_dims not in (2, 3):
            raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if len(roi_size) != spatial_dims:
            raise InputError(f"roi_size {tuple(roi_size)} must have {spatial_dims} values")
        if not inputs or not outputs:
            raise InputError("inputs and outputs must each name at least one image key")
        self.network = network
        cases = [datalist] if isinstance(datalist, Mapping) else [datalist[i] for i in range(len(datalist))]
        self.datalist = [dict(item) for item in cases]
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.labelmaps, self.optional = list(labelmaps), list(optional)
        self.output_labelmaps = list(output_labelmaps)
        unknown = [key for key in self.output_labelmaps if key not in outputs]
        if unknown:
            raise InputError(f"output_labelmaps {unknown} are not among the outputs {list(outputs)}")
        self.conditions = conditions
        self.conditions_scale_outputs = bool(getattr(conditions, "scales_outputs", False))
        if self.conditions_scale_outputs:
            if output_scalings:
                raise InputError("output_scalings: this bundle's conditions scale the outputs themselves; leave it out")
            self.output_scalings = {}
        else:
            self.output_scalings = {key: self.inputs[0] for key in self.outputs}
            self.output_scalings.update(output_scalings or {})
        _check_roles(
            self.inputs, self.outputs, self.labelmaps, self.optional, self.output_scalings, self.conditions_scale_outputs
        )
        self.output_dir = Path(output_dir).absolute()  # written paths stay valid from any folder
        self.device = torch.device(device)
        self.autocast_dtype = _autocast_dtype(precision, self.device)
        self.autocast_network = AutocastNetwork(network, self.device.type, self.autocast_dtype,
                                                config_bool(channels_last, "channels_last"), compile)
        self.provenance = dict(provenance or {"bundle": None, "version": None, "weights": None})
        self.spatial_dims = spatial_dims
        self.sw_batch_size = int(sw_batch_size)
        self.headroom, self.low_over = headroom, low_over
        self.overwrite = config_bool(overwrite, "overwrite")
        self.progress = progress
        self.roi_size = tuple(int(r) for r in roi_size)
        self.overlap = overlap
        # Generators that need sizes divisible by 2**downsamplings say so (GlobalGenerator.size_multiple).
        self.size_multiple = int(getattr(network, "size_multiple", 1))
        self.inferer = inferer
        self._inferers: dict[tuple[int, ...], SlidingWindowInferer] = {}
        if inferer is not None:
            self._inferers[self.roi_size] = inferer

    def run(self) -> list[dict[str, Path]]:
        """The same as calling the synthesizer: the ``run()`` of MONAI's evaluators, which a bundle's inference
        config exposes as its ``evaluator``."""
        return self()

    def __call__(self) -> list[dict[str, Path]]:
        """Synthesise every case; returns, per case, output key -> written file."""
        if not self.datalist:
            raise InputError("the datalist is empty: no case to synthesise")
        plans = [self._plan(index, item) for index, item in enumerate(self.datalist)]
        self.network.to(self.device).eval()
        total = sum(self._steps(item) for item in self.datalist)
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            if self.progress is not None:
                self.progress(done, total)

        written = []
        for item, destinations in zip(self.datalist, plans):
            volumes = self._read_inputs(item)
            output = self._synthesise(volumes, step)
            reference = volumes[self.inputs[0]]
            content = record(self.provenance, {key: item[key] for key in self.inputs if key in item}, seed=self.seed,
                             precision=str(self.autocast_dtype or torch.float32).removeprefix("torch."))
            written.append(
                {
                    key: write_synthetic(reference.with_array(self._typed(key, output[c])), destinations[key],
                                         {**content, "output": key}, overwrite=self.overwrite)
                    for c, key in enumerate(self.outputs)
                }
            )
        return written

    def _typed(self, key: str, array: np.ndarray) -> np.ndarray:
        return np.rint(array).astype(np.uint8) if key in self.output_labelmaps else array

    def _plan(self, index: int, item: dict) -> dict[str, Path]:
        """The output files of one case, refused before any work if they exist (and overwrite is off)."""
        missing = [key for key in self.inputs if key not in item and key not in self.optional]
        if missing:
            raise InputError(f"case {index} of the datalist has no {', '.join(missing)} (it needs {self.inputs})")
        case_id = check_case_id(item.get("case_id") or _stem(item[self.inputs[0]]), f"case {index} of the datalist")
        destinations = {key: self.output_dir / case_id / f"{key}.nii.gz" for key in self.outputs}
        for path in destinations.values():
            check_destination(path, self.overwrite)
            check_destination(sidecar_path(path), self.overwrite)
        return destinations

    def _read_inputs(self, item: dict) -> dict[str, Volume]:
        volumes = {key: read_image(item[key]) for key in self.inputs if key in item}
        reference = volumes[self.inputs[0]]
        for key, volume in volumes.items():
            if volume.array.ndim != volume.ndim:
                raise InputError(f"{item[key]}: multi-channel image {volume.array.shape}; give one image per key")
            if volume.ndim not in (2, 3):
                raise InputError(f"{item[key]}: a {volume.ndim}D image; expected a 2D image or a 3D volume")
            if not volume.same_grid(reference):
                raise InputError(
                    f"{key} ({item[key]}) is not on the grid of {self.inputs[0]} ({item[self.inputs[0]]}): shape "
                    f"{volume.array.shape} vs {reference.array.shape}, spacing {volume.spacing} vs "
                    f"{reference.spacing}; resample it first"
                )
        if self.spatial_dims == 3 and reference.ndim != 3:
            raise InputError(f"{item[self.inputs[0]]}: a 2D image, but this generator needs 3D volumes")
        return volumes

    def _steps(self, item: dict) -> int:
        """Progress units of one case: batches of slices (2D) or one (3D); read cheaply from the header."""
        if self.spatial_dims == 3:
            return 1
        try:
            depth = _depth(item[self.inputs[0]])
        except Exception:  # unreadable files are reported properly when the case is read
            depth = 1
        return max(1, -(-depth // self.sw_batch_size))

    @torch.no_grad()
    def _synthesise(self, volumes: dict[str, Volume], step: Callable[[], None]) -> np.ndarray:
        """The outputs ``(len(outputs), *spatial)`` of one case in image units; ``step()`` after every batch."""
        scalings = {
            key: IntensityScaling.fit(volume.array, self.headroom, name=f"input {key}", low_over=self.low_over)
            for key, volume in volumes.items()
            if key not in self.labelmaps
        }
        # What maps each output back: the scaling of the input output_scalings names, unless the conditions give it.
        back = {key: scalings[input_key] for key, input_key in self.output_scalings.items()}
        if self.conditions is None:
            scaled = np.stack(
                [np.clip(scalings[key].forward(volumes[key].array.astype(np.float32)), AIR, 1.0) for key in scalings]
            )
        else:
            given = volumes if getattr(self.conditions, "takes_volumes", False) else {k: v.array for k, v in volumes.items()}
            made = self.conditions(given)
            if self.conditions_scale_outputs:
                if not (isinstance(made, tuple) and len(made) == 2 and isinstance(made[1], Mapping)):
                    raise InputError(
                        "the bundle's conditions declare scales_outputs but did not return (input, {output: scaling})"
                    )
                made, back = made
                missing = [key for key in self.outputs if key not in back]
                if missing:
                    raise InputError(f"the bundle's conditions gave no scaling for the outputs {missing}")
            scaled = np.asarray(made, np.float32)
            expected = volumes[self.inputs[0]].array.shape
            if scaled.ndim != len(expected) + 1 or scaled.shape[1:] != expected:
                raise InputError(
                    f"conditions gave an array of shape {scaled.shape}; expected (channels, {', '.join(map(str, expected))})"
                )
        two_d_image = scaled.ndim == 3  # (C, H, W)
        if two_d_image:
            scaled = scaled[..., None]
        result = np.empty((len(self.outputs), *scaled.shape[1:]), dtype=np.float32)
        if self.spatial_dims == 3:
            result[:] = self._infer(torch.from_numpy(scaled)[None])[0]
            step()
        else:
            depth = scaled.shape[-1]
            for start in range(0, depth, self.sw_batch_size):
                chunk = np.moveaxis(scaled[..., start : start + self.sw_batch_size], -1, 0)  # (slices, C, H, W)
                result[..., start : start + chunk.shape[0]] = np.moveaxis(self._infer(torch.from_numpy(chunk)), 0, -1)
                step()
        if two_d_image:
            result = result[..., 0]
        for channel, key in enumerate(self.outputs):
            result[channel] = back[key].inverse(result[channel])
        return result

    def _infer(self, batch: torch.Tensor) -> np.ndarray:
        # A window no larger than the image (rounded up to the generator's size multiple): a small image is
        # not padded to the full roi_size, which would multiply the work.
        multiple = self.size_multiple
        roi = tuple(min(r, -(-side // multiple) * multiple) for r, side in zip(self.roi_size, batch.shape[2:]))
        if roi not in self._inferers:  # one per window size, so the Gaussian blending weights are computed once
            template = self.inferer
            self._inferers[roi] = SlidingWindowInferer(
                roi_size=roi,
                sw_batch_size=self.sw_batch_size,
                overlap=self.overlap,
                mode="gaussian" if template is None else template.mode,
                sigma_scale=0.125 if template is None else template.sigma_scale,
                padding_mode="constant" if template is None else template.padding_mode,
                cval=getattr(self.conditions, "pad_value", AIR) if template is None else template.cval,
                cache_roi_weight_map=True,
            )
        output = self._inferers[roi](batch.to(self.device), self.autocast_network)
        if output.shape[1] != len(self.outputs):
            raise InputError(
                f"the network gives {output.shape[1]} output channels, but {len(self.outputs)} outputs are named "
                f"({self.outputs})"
            )
        return output.float().cpu().numpy()


class AutocastNetwork(torch.nn.Module):
    """``network`` whose forward runs under ``torch.autocast`` with ``dtype`` (None: in fp32, as it is), and nothing
    else: the blending, resampling or augmentation around it stays in fp32. With ``channels_last`` the network's
    weights and its input are kept channels-last (NHWC / NDHWC), which oneDNN's convolutions often run faster."""

    def __init__(self, network: torch.nn.Module, device_type: str, dtype: torch.dtype | None,
                 channels_last: bool = False, compile: bool | str | Callable = False) -> None:
        super().__init__()
        self.network, self.device_type, self.dtype, self.channels_last = network, device_type, dtype, channels_last
        self._converted = False
        # torch.compile: True for its default backend (inductor: a C++ or CUDA compiler, minutes on first use), or a
        # backend (its name or the function). Compiled lazily, by the first call, so that a setting that cannot work
        # fails there.
        self._call = network
        if compile:
            self._call = torch.compile(network, **({} if compile is True else {"backend": compile}))

    def forward(self, x: torch.Tensor, *args, **kwargs):
        if self.channels_last:
            memory_format = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
            if not self._converted:  # once, on the first input: its dimensionality says which format
                self.network.to(memory_format=memory_format)
                self._converted = True
            if x.ndim >= 4:  # an image batch; a latent vector (B, k) is passed as it is
                x = x.contiguous(memory_format=memory_format)
        with torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype is not None):
            return self._call(x, *args, **kwargs)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX
    (elsewhere PyTorch emulates bf16 on the CPU, slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's, private but stable since 2.3
        return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return False


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast type of ``precision`` on ``device`` (None: fp32), or InputError naming what cannot work."""
    if precision == "auto":
        return torch.bfloat16 if native_bf16(device) else None
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {sorted([*PRECISIONS, 'auto'])}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise InputError(f"precision fp16 needs a CUDA device (this run is on {device.type}); use bf16 or fp32")
    return PRECISIONS[precision]


def _check_roles(
    inputs: list[str],
    outputs: list[str],
    labelmaps: list[str],
    optional: list[str],
    scalings: Mapping[str, str],
    conditions_scale_outputs: bool = False,
) -> None:
    """The keys that name inputs name inputs, the reference is a required intensity image (or, when the
    conditions scale the outputs, any required input), and every output is mapped back by an intensity input's
    scaling."""
    for name, keys in (("labelmaps", labelmaps), ("optional", optional)):
        unknown = [key for key in keys if key not in inputs]
        if unknown:
            raise InputError(f"{name} {unknown} are not among the inputs {inputs}")
    if inputs[0] in optional or (inputs[0] in labelmaps and not conditions_scale_outputs):
        raise InputError(f"the reference input {inputs[0]!r} (the first) must be a required intensity image")
    unknown = [key for key in scalings if key not in outputs]
    if unknown:
        raise InputError(f"output_scalings names {unknown}, which are not among the outputs {outputs}")
    wrong = {out: key for out, key in scalings.items() if key not in inputs or key in labelmaps or key in optional}
    if wrong:
        raise InputError(f"output_scalings {wrong}: each output must be scaled like a required intensity input")


def _stem(path: str | os.PathLike) -> str:
    name = Path(path).name
    extension = image_extension(name)
    return name[: -len(extension)] if extension and name.lower().endswith(extension) else Path(name).stem


def _depth(path: str | os.PathLike) -> int:
    """Slices along the last axis of a 3D image (1 for 2D), from the header only."""
    size = image_size(path)
    return int(size[2]) if len(size) == 3 else 1
