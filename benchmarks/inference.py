"""How fast each bundle's generator runs, per setting, against the plain eager batch-1 fp32 loop in the same run.

For every bundle, its inference config's network with the shipped weights, on random inputs of the bundle's native
size (``NATIVE``: the slice its inferer windows, the ROI box of the 3D refiner, the latent vector of the patch GAN):

- the baseline: one slice per forward pass, fp32, eager (what the bundles shipped with);
- every combination of batch size (``--batches``), precision (fp32, bf16 autocast) and memory format (contiguous,
  channels-last), optionally ``torch.compile`` (``--compile``): milliseconds per slice (the median of
  ``--repeats`` timed passes after warm-up) and the speed-up over the baseline;
- the work: FLOPs of one slice (``torch.utils.flop_counter``), so each setting's GFLOP/s can be set against the
  machine's own ceiling, measured in the same run: a large fp32 and bf16 matrix product and a 3x3 convolution.

On the CPU always; when CUDA is available, the same again on the GPU (with fp16 besides), under ``"cuda"``.

With ``--cases K``, also whole cases: each image-to-image bundle's inference config on K validation phantom cases
(benchmarks/precision.py's), as shipped and as the baseline (fp32, one slice per pass), seconds per case alternating
case by case; this includes reading, scaling, registration and writing, which no network setting speeds up.

A setting's speed-up is only half a decision: whether bf16 keeps the output close enough is benchmarks/precision.py's
measurement, on validation cases. Both together choose each bundle's inference defaults (docs/design.md).

    python benchmarks/inference.py [--threads 2] [--batches 1 4 8 16] [--repeats 5] [--compile] [--cases 2]
                                   [--out benchmarks/results/inference.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# Slices per pass where no inferer says: the TF refiner sees one ROI box.
SHIPPED_BATCH = {"brain_tumor_fabrication": 1}
CASE_BUNDLES = ("breast_dce_pre2post", "liver_mmhcc_mask2mri", "brain_lesion2mpmri", "brain_tumor_fabrication")
# The input one forward pass of each generator takes in use: (channels, *spatial).
NATIVE = {
    "breast_dce_pre2post": (1, 256, 256),  # inferer_roi: a 256^2 slice
    "liver_mmhcc_mask2mri": (3, 128, 128),  # the inferer's 128^2 window
    "brain_lesion2mpmri": (20, 128, 128),  # lesion map one-hot (5) + atlas slices (15), a 128^2 window
    "brain_tumor_fabrication": (8, 48, 48, 48),  # a tumour's ROI box with its 8 mm margin at 2 mm
    "breast_dce_patch_cgan": (103, 1, 1),  # latent (100) + class one-hot (3) -> one 64^2 six-channel patch
}


def load_network(name: str) -> torch.nn.Module:
    """The bundle's inference network with its shipped weights, on the CPU, in eval mode."""
    from monai.bundle import ConfigParser

    from synthmr.io import load_weights

    bundle = REPO / "bundles" / name
    parser = ConfigParser()
    parser.read_config(str(next(bundle.glob("configs/inference.*"))))
    parser.update({"bundle_root": str(bundle), "device": "$torch.device('cpu')"})
    network = parser.get_parsed_content("network")
    load_weights(network, parser.get_parsed_content("checkpoint"))
    return network.eval()


LOW_PRECISION = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device):
    if precision not in LOW_PRECISION:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=LOW_PRECISION[precision])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def milliseconds_per_slice(network, shape: tuple, batch: int, precision: str, repeats: int,
                           channels_last: bool = False, device: torch.device = torch.device("cpu")) -> float:
    """Median time of one forward pass of ``batch`` slices on ``device``, divided by ``batch``."""
    inputs = torch.randn(batch, *shape, device=device)
    if channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last_3d if len(shape) == 4 else torch.channels_last)
    with autocast(precision, device):
        for _ in range(2):  # warm-up: allocator, oneDNN primitive caches, compilation
            network(inputs)
        times = []
        for _ in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            network(inputs)
            synchronize(device)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch


def flops_per_slice(network, shape: tuple) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        network(torch.randn(1, *shape))
    return float(counter.get_total_flops())


@torch.inference_mode()
def machine_ceiling(repeats: int, device: torch.device) -> dict:
    """GFLOP/s ``device`` reaches on the work generators are made of (on a CPU, at the current thread count)."""
    def rate(operation, flops: float, precision: str) -> float:
        with autocast(precision, device):
            operation()
            synchronize(device)
            start = time.perf_counter()
            for _ in range(repeats):
                operation()
            synchronize(device)
        return flops * repeats / (time.perf_counter() - start) / 1e9

    n = 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a16, b16 = a.bfloat16(), b.bfloat16()
    conv_flops = 2 * 8 * 64 * 64 * 9 * 128 * 128
    ceiling = {"matmul_fp32": rate(lambda: a @ b, 2 * n**3, "fp32"),
               "matmul_bf16": rate(lambda: a16 @ b16, 2 * n**3, "fp32")}
    for precision in ("fp32", "bf16"):  # a 3x3 convolution, 64 -> 64 channels on 8 x 128^2, the faster memory format
        rates = []
        for memory_format in (torch.contiguous_format, torch.channels_last):
            image = torch.randn(8, 64, 128, 128, device=device).contiguous(memory_format=memory_format)
            convolution = torch.nn.Conv2d(64, 64, 3, padding=1).eval().to(device, memory_format=memory_format)
            rates.append(rate(lambda: convolution(image), conv_flops, precision))
        ceiling[f"conv3x3_{precision}"] = max(rates)
    return ceiling


def measure(name: str, batches: list[int], repeats: int, compile_too: bool, device: torch.device) -> dict:
    network = load_network(name)
    shape = NATIVE[name]
    flops = flops_per_slice(network, shape)
    network.to(device)
    baseline = milliseconds_per_slice(network, shape, 1, "fp32", repeats, device=device)
    variants = [("eager", network, False), ("channels_last", _channels_last(network, shape), True)]
    if compile_too:
        variants.append(("compiled", torch.compile(network), False))
    precisions = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    settings = []

    def timed(mode: str, model, channels_last: bool, precision: str, batch: int) -> dict:
        ms = milliseconds_per_slice(model, shape, batch, precision, repeats, channels_last, device)
        return {"mode": mode, "precision": precision, "batch": batch, "ms_per_slice": ms, "speedup": baseline / ms,
                "gflops": flops / ms / 1e6}

    for mode, model, channels_last in variants:
        for precision in precisions:
            for batch in batches:
                settings.append(setting := timed(mode, model, channels_last, precision, batch))
                print(f"  {name} {device.type} {mode:13s} {precision} batch {batch:2d}: {setting['ms_per_slice']:8.2f} "
                      f"ms/slice x{setting['speedup']:5.2f} {setting['gflops']:6.1f} GFLOP/s", flush=True)
    best = max(settings, key=lambda s: s["speedup"])
    mode, precision, batch = shipped_setting(name, device)
    shipped = next((s for s in settings if (s["mode"], s["precision"], s["batch"]) == (mode, precision, batch)), None)
    if shipped is None:
        shipped = timed(mode, dict((v[0], v[1]) for v in variants)[mode], mode == "channels_last", precision, batch)
    return {"input": list(shape), "gflop_per_slice": flops / 1e9, "baseline_ms_per_slice": baseline,
            "baseline_gflops": flops / baseline / 1e6, "settings": settings, "best": best, "shipped": shipped}


def shipped_setting(name: str, device: torch.device) -> tuple[str, str, int]:
    """(memory format, precision on ``device``, slices per pass) of the bundle's inference config."""
    from monai.bundle import ConfigParser

    from synthmr.inference import native_bf16

    parser = ConfigParser()
    parser.read_config(str(next((REPO / "bundles" / name).glob("configs/inference.*"))))
    config = parser.get()
    precision = config.get("precision", "fp32")
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    mode = "channels_last" if config.get("channels_last") is True else "eager"
    inferer = config.get("inferer") or {}
    batch = SHIPPED_BATCH.get(name, inferer.get("sw_batch_size", config.get("batch_size", 1)))
    return mode, precision, int(batch)


def whole_cases(name: str, n_cases: int, work: Path) -> dict:
    """Seconds per case of the shipped inference config and of the baseline setting, alternating case by case."""
    from precision import run_inference, validation_case

    bundle = REPO / "bundles" / name
    settings = {"shipped": (_shipped_precision(bundle), {}),
                # one slice per pass (the TF refiner sees each ROI whole either way)
                "baseline": ("fp32", {} if name == "brain_tumor_fabrication" else {"evaluator#sw_batch_size": 1})}
    seconds = {setting: [] for setting in settings}
    for index in range(n_cases):
        item = validation_case(bundle, index, work / name / "inputs")
        for setting, (precision, overrides) in settings.items():
            _, took = run_inference(bundle, item, work / name / f"{setting}{index}", precision, **overrides)
            seconds[setting].append(took)
    shipped, baseline = (statistics.mean(seconds[k]) for k in ("shipped", "baseline"))
    return {"seconds_per_case": {"shipped": shipped, "baseline": baseline}, "speedup": baseline / shipped}


def _shipped_precision(bundle: Path) -> str:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(next(bundle.glob("configs/inference.*"))))
    return parser.get("evaluator#precision", "fp32")


def _channels_last(network: torch.nn.Module, shape: tuple) -> torch.nn.Module:
    import copy

    fmt = torch.channels_last_3d if len(shape) == 4 else torch.channels_last
    return copy.deepcopy(network).to(memory_format=fmt)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batches", type=int, nargs="*", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    parser.add_argument("--bundles", nargs="*", default=list(NATIVE))
    parser.add_argument("--cases", type=int, default=2, help="whole validation cases per bundle (0: none)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "inference.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"threads": args.threads, "machine": platform.machine(), "processor": platform.processor(),
              "torch": torch.__version__}
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:  # the CPU's results at the top level, a GPU's under "cuda"
        target = report if device.type == "cpu" else report.setdefault("cuda", {"name": torch.cuda.get_device_name()})
        target["ceiling_gflops"] = ceiling = machine_ceiling(args.repeats, device)
        target["bundles"] = {}
        print(f"{device.type} ceiling (GFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in ceiling.items()), flush=True)
        for name in args.bundles:
            target["bundles"][name] = result = measure(name, args.batches, args.repeats, args.compile, device)
            best, shipped = result["best"], result["shipped"]
            print(f"{name} ({device.type}): as shipped {shipped['mode']} {shipped['precision']} batch "
                  f"{shipped['batch']}: {shipped['ms_per_slice']:.1f} ms/slice, x{shipped['speedup']:.2f} the eager "
                  "batch-1 fp32 loop", flush=True)
            print(f"{name} ({device.type}): {result['gflop_per_slice']:.2f} GFLOP per slice; baseline "
                  f"{result['baseline_ms_per_slice']:.1f} ms ({result['baseline_gflops']:.0f} GFLOP/s); best "
                  f"{best['mode']} {best['precision']} batch {best['batch']}: {best['ms_per_slice']:.1f} ms, "
                  f"x{best['speedup']:.2f} ({best['gflops']:.0f} GFLOP/s)", flush=True)
            if args.cases and name in CASE_BUNDLES and device.type == "cpu":
                with tempfile.TemporaryDirectory() as work:
                    result["whole_case"] = cases = whole_cases(name, args.cases, Path(work))
                print(f"{name}: a whole case {cases['seconds_per_case']['shipped']:.2f} s as shipped, "
                      f"{cases['seconds_per_case']['baseline']:.2f} s as the baseline (x{cases['speedup']:.2f})",
                      flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
