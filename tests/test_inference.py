"""Slice-wise synthesis (synthmr.inference) and the transforms it and the training configs use."""

import numpy as np
import pytest
import torch

from grids import oblique_volume
from synthmr.errors import InputError
from synthmr.inference import Synthesizer, native_bf16
from synthmr.io import Volume, read_image, write_image
from synthmr.transforms import IntensityScaling, RandForegroundSliced, RobustScaled


def body(shape=(24, 20, 5), seed=0) -> np.ndarray:
    """A bright ellipse with texture on a dark background, in every slice."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    inside = (x / 0.8) ** 2 + (y / 0.7) ** 2 < 1
    image = np.where(inside[..., None], rng.uniform(100, 400, shape), rng.uniform(0, 3, shape))
    return image.astype(np.float32)


class Doubler(torch.nn.Module):
    """Maps the scaled input x to 2x + 1: twice the input's intensity above its low percentile."""

    size_multiple = 4

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        assert x.shape[-1] % 4 == 0 and x.shape[-2] % 4 == 0
        return 2 * x + 1


def synthesizer(tmp_path, items, network=None, **kwargs):
    return Synthesizer(network or Doubler(), items, ["t1_pre"], ["t1_post1"], tmp_path / "out", headroom=3.0, **kwargs)


def test_output_lands_on_the_input_grid_in_the_input_units(tmp_path):
    volume = oblique_volume(body())
    path = write_image(volume, tmp_path / "case_a.nii.gz")
    progress = []
    written = synthesizer(tmp_path, [{"t1_pre": str(path)}], roi_size=(16, 16), sw_batch_size=2,
                          progress=lambda done, total: progress.append((done, total)))()
    output = read_image(written[0]["t1_post1"])
    assert written[0]["t1_post1"] == tmp_path / "out" / "case_a" / "t1_post1.nii.gz"  # case_id from the file name
    assert output.same_grid(volume)
    # 2x + 1 in the generator range is twice the intensity above `low` in image units (exact below the clip).
    scaling = IntensityScaling.fit(volume.array, headroom=3.0)
    inside = (volume.array > scaling.low) & (volume.array < scaling.low + 1.5 * (scaling.high - scaling.low))
    expected = scaling.low + 2 * (volume.array - scaling.low)
    np.testing.assert_allclose(output.array[inside], expected[inside], rtol=1e-4)
    assert progress == [(1, 3), (2, 3), (3, 3)]  # 5 slices in batches of 2


def test_the_synthesizer_scales_inputs_as_training_did(tmp_path):
    volume = oblique_volume(body())
    path = write_image(volume, tmp_path / "case_a.nii.gz")
    written = synthesizer(tmp_path, [{"t1_pre": str(path)}], roi_size=(16, 16), low_over="image")()
    output = read_image(written[0]["t1_post1"]).array
    scaling = IntensityScaling.fit(volume.array, headroom=3.0, low_over="image")
    inside = (volume.array > scaling.low) & (volume.array < scaling.low + 1.5 * (scaling.high - scaling.low))
    np.testing.assert_allclose(output[inside], scaling.low + 2 * (volume.array[inside] - scaling.low), rtol=1e-4,
                               atol=1e-3 * scaling.high)
    with pytest.raises(InputError, match="low_over must be 'foreground' or 'image'; got 'air'"):
        synthesizer(tmp_path, [{"t1_pre": str(path)}], low_over="air")


def test_a_2d_image_stays_2d_and_windows_fit_small_images(tmp_path):
    image = Volume(body((18, 22, 1))[..., 0], (0.7, 0.7), (3.0, -2.0), np.eye(2))
    path = write_image(image, tmp_path / "slice.nii.gz")
    network = Doubler()
    written = synthesizer(tmp_path, [{"t1_pre": str(path), "case_id": "s1"}], network=network)()
    output = read_image(written[0]["t1_post1"])
    assert output.ndim == 2 and output.same_grid(image)
    assert network.calls == 1  # one 20x24 window, not a 256x256 one per tile


def test_inputs_on_different_grids_are_refused(tmp_path):
    pre = write_image(oblique_volume(body()), tmp_path / "pre.nii.gz")
    shifted = oblique_volume(body())
    shifted.origin = (0.0, 0.0, 0.0)
    other = write_image(shifted, tmp_path / "t2.nii.gz")
    run = Synthesizer(Doubler(), [{"t1_pre": str(pre), "t2": str(other)}], ["t1_pre", "t2"], ["x"], tmp_path / "o")
    with pytest.raises(InputError, match=r"t2 .*not on the grid of t1_pre"):
        run()
    assert not (tmp_path / "o").exists()


def test_existing_output_stops_before_any_work(tmp_path):
    path = write_image(oblique_volume(body()), tmp_path / "pre.nii.gz")
    existing = tmp_path / "out" / "c" / "t1_post1.nii.gz"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"mine")
    network = Doubler()
    with pytest.raises(InputError, match="already exists"):
        synthesizer(tmp_path, [{"t1_pre": str(path), "case_id": "c"}], network=network)()
    assert network.calls == 0 and existing.read_bytes() == b"mine"
    synthesizer(tmp_path, [{"t1_pre": str(path), "case_id": "c"}], overwrite=True)()
    assert read_image(existing).array.shape == (24, 20, 5)


def test_bad_cases_are_named(tmp_path):
    flat = write_image(oblique_volume(np.full((8, 8, 2), 5.0, np.float32)), tmp_path / "flat.nii.gz")
    with pytest.raises(InputError, match="constant"):
        synthesizer(tmp_path, [{"t1_pre": str(flat)}])()
    with pytest.raises(InputError, match="has no t1_pre"):
        synthesizer(tmp_path, [{"t2": str(flat)}])()
    with pytest.raises(InputError, match="empty"):
        synthesizer(tmp_path, [])()
    path = write_image(oblique_volume(body()), tmp_path / "pre.nii.gz")
    two_outputs = Synthesizer(Doubler(), [{"t1_pre": str(path)}], ["t1_pre"], ["a", "b"], tmp_path / "o2")
    with pytest.raises(InputError, match="1 output channels, but 2 outputs"):
        two_outputs()


def test_low_over_image_keeps_tissue_darker_than_the_foreground_threshold():
    rng = np.random.default_rng(0)
    air = rng.uniform(0.0, 4.0, 4000)  # the noise floor
    dark = np.full(3000, 30.0)  # below 5 % of the 99th percentile (1000): fat-suppressed tissue
    bright = rng.uniform(200.0, 1000.0, 3000)
    image = np.concatenate([air, dark, bright]).astype(np.float32)
    foreground = IntensityScaling.fit(image)
    assert foreground.low >= 50.0 and np.allclose(np.clip(foreground.forward(dark), -1, 1), -1.0)
    floor = IntensityScaling.fit(image, low_over="image")
    assert floor.low == pytest.approx(np.percentile(image, 0.5)) and floor.high == foreground.high
    assert (floor.forward(dark) > floor.forward(np.float32(4.0))).all()  # dark tissue stays above the air
    with pytest.raises(InputError, match="low_over must be 'foreground' or 'image'"):
        IntensityScaling.fit(image, low_over="air")


def test_robust_scaling_uses_the_reference_range_for_every_key():
    pre = torch.from_numpy(body(seed=1))[None]
    post = 2.5 * pre
    data = RobustScaled(["pre", "post"], reference_key="pre", headroom=3.0)({"pre": pre, "post": post})
    low, high, headroom = data["pre_scaling"].tolist()
    assert headroom == 3.0
    scaling = IntensityScaling(low, high, headroom)
    np.testing.assert_allclose(scaling.inverse(data["pre"].numpy())[pre.numpy() > low], pre.numpy()[pre.numpy() > low],
                               rtol=1e-4)
    # post is 2.5x pre: inside the headroom, so it is not clipped, and it stays 2.5x after the inverse.
    bright = (pre.numpy() > low) & (post.numpy() < low + 3 * (high - low))
    np.testing.assert_allclose(scaling.inverse(data["post"].numpy())[bright], post.numpy()[bright], rtol=1e-4)
    assert data["pre"].min() >= -1 and data["post"].max() <= 1


def test_rand_foreground_slice_picks_one_slice_with_tissue_for_all_keys():
    volume = np.zeros((1, 8, 8, 6), np.float32)
    volume[0, 2:6, 2:6, 4] = 100.0
    volume[0, 2:6, 2:6, 1] = 80.0
    data = {"a": torch.from_numpy(volume), "b": torch.from_numpy(volume * 2)}
    sampler = RandForegroundSliced(["a", "b"], reference_key="a")
    sampler.set_random_state(0)
    seen = set()
    for _ in range(20):
        out = sampler(data)
        assert out["a"].shape == (1, 8, 8)
        torch.testing.assert_close(out["b"], 2 * out["a"])
        seen.add(float(out["a"].max()))
    assert seen == {100.0, 80.0}  # only the two slices with tissue, both of them
    two_d = {"a": torch.zeros(1, 8, 8), "b": torch.zeros(1, 8, 8)}
    assert sampler(two_d)["a"].shape == (1, 8, 8)


def test_a_given_inferer_is_the_one_used_and_a_monai_dataset_is_a_datalist(tmp_path, monkeypatch):
    from monai.data import Dataset
    from monai.inferers import SlidingWindowInferer

    path = write_image(oblique_volume(body((32, 32, 3))), tmp_path / "case_a.nii.gz")
    inferer = SlidingWindowInferer(roi_size=(16, 16), sw_batch_size=3, overlap=0.5, mode="gaussian", cval=-1.0)
    calls = []
    original = SlidingWindowInferer.__call__

    def spy(self, inputs, network, *args, **kwargs):
        calls.append(self)
        return original(self, inputs, network, *args, **kwargs)

    run = synthesizer(tmp_path, Dataset([{"t1_pre": str(path)}]), inferer=inferer)
    assert (run.roi_size, run.sw_batch_size, run.overlap) == ((16, 16), 3, 0.5)
    monkeypatch.setattr(SlidingWindowInferer, "__call__", spy)
    written = run.run()
    assert calls and all(call is inferer for call in calls)
    assert read_image(written[0]["t1_post1"]).same_grid(read_image(path))
    with pytest.raises(InputError, match="SlidingWindowInferer"):
        synthesizer(tmp_path, [{"t1_pre": str(path)}], inferer=object())


class Recorder(torch.nn.Module):
    """Identity that records its inputs: the generator input is what ``conditions`` built."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        return x


def mask_guided_case(tmp_path, with_source=True):
    """Two sequences of different ranges and a lesion mask (and its unedited twin) on one grid."""
    first, second = oblique_volume(body(seed=1)), oblique_volume(body(seed=2) * 7 + 50)
    lesion = np.zeros(first.array.shape, np.uint8)
    lesion[8:12, 8:12] = 1
    item = {"a": write_image(first, tmp_path / "a.nii.gz"), "b": write_image(second, tmp_path / "b.nii.gz"),
            "lesion": write_image(first.with_array(lesion), tmp_path / "lesion.nii.gz"), "case_id": "c"}
    if with_source:
        item["source"] = write_image(first.with_array(np.roll(lesion, 4, axis=0)), tmp_path / "source.nii.gz")
    return {key: str(value) for key, value in item.items()}, first, second


def test_conditions_build_the_generator_input_from_images_and_unscaled_labelmaps(tmp_path):
    item, first, second = mask_guided_case(tmp_path)
    received = []

    def conditions(arrays):
        received.append(dict(arrays))
        # channel 0: the lesion as +1 on -1; channel 1: the source lesion the same way
        return np.stack([np.where(arrays["lesion"] > 0, 1.0, -1.0), np.where(arrays["source"] > 0, 1.0, -1.0)])

    network = Recorder()
    written = Synthesizer(network, [item], ["a", "b", "lesion", "source"], ["b", "a"], tmp_path / "out",
                          labelmaps=["lesion", "source"], optional=["source"], conditions=conditions,
                          output_scalings={"b": "b", "a": "a"}, roi_size=(16, 16))()
    (arrays,) = received
    assert set(arrays) == {"a", "b", "lesion", "source"}
    np.testing.assert_array_equal(arrays["lesion"], read_image(item["lesion"]).array)  # never scaled
    np.testing.assert_allclose(arrays["b"], second.array)  # raw intensities
    assert {tuple(np.unique(x.numpy())) for x in network.seen} <= {(-1.0, 1.0), (-1.0,)}
    # Output "b" is channel 0 (the lesion map) mapped back with input b's scaling, "a" with input a's.
    for channel, (key, volume) in enumerate([("b", second), ("a", first)]):
        scaling = IntensityScaling.fit(volume.array)
        lesion = read_image(item["lesion" if channel == 0 else "source"]).array > 0
        output = read_image(written[0][key])
        assert output.same_grid(first)
        np.testing.assert_allclose(output.array[lesion], scaling.inverse(1.0), rtol=1e-5)
        np.testing.assert_allclose(output.array[~lesion], scaling.inverse(-1.0), rtol=1e-5)


def test_an_optional_input_may_be_left_out_a_required_one_not(tmp_path):
    item, _, _ = mask_guided_case(tmp_path, with_source=False)
    seen = []
    run = Synthesizer(Recorder(), [item], ["a", "lesion", "source"], ["a"], tmp_path / "out", labelmaps=["lesion", "source"],
                      optional=["source"], conditions=lambda arrays: seen.append(set(arrays)) or arrays["a"][None] * 0,
                      roi_size=(16, 16))
    run()
    assert seen == [{"a", "lesion"}]
    without_lesion = {key: value for key, value in item.items() if key != "lesion"}
    with pytest.raises(InputError, match=r"case 0 of the datalist has no lesion"):
        Synthesizer(Recorder(), [without_lesion], ["a", "lesion"], ["a"], tmp_path / "o2", labelmaps=["lesion"])()


def test_conditions_of_the_wrong_shape_are_one_clear_error(tmp_path):
    item, first, _ = mask_guided_case(tmp_path)
    run = Synthesizer(Recorder(), [item], ["a"], ["a"], tmp_path / "out", conditions=lambda arrays: arrays["a"])
    with pytest.raises(InputError, match=r"conditions gave an array of shape \(24, 20, 5\); expected \(channels, 24, 20, 5\)"):
        run()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.nii.gz"))


class AtlasLikeConditions:
    """Conditions that see the grids and scale the outputs: the lesion as +1 on -1, outputs mapped back by a
    fixed scaling (as an atlas-driven bundle whose only input is a label map)."""

    takes_volumes = True
    scales_outputs = True

    def __init__(self):
        self.received = []

    def __call__(self, volumes):
        self.received.append(volumes)
        lesion = volumes["lesion"].array
        return np.where(lesion > 0, 1.0, -1.0)[None], {"a": IntensityScaling(100.0, 300.0), "b": IntensityScaling(0.0, 5.0)}


def test_conditions_may_take_volumes_and_scale_the_outputs_from_a_labelmap_alone(tmp_path):
    item, first, _ = mask_guided_case(tmp_path)
    conditions = AtlasLikeConditions()
    written = Synthesizer(torch.nn.Conv3d(1, 2, 1).requires_grad_(False), [item], ["lesion"], ["a", "b"], tmp_path / "out",
                          labelmaps=["lesion"], conditions=conditions, spatial_dims=3, roi_size=(24, 20, 5))
    with torch.no_grad():
        written.network.weight.fill_(1.0)
        written.network.bias.zero_()
    outputs = written()[0]
    (volumes,) = conditions.received
    assert isinstance(volumes["lesion"], Volume) and volumes["lesion"].same_grid(first)
    lesion = read_image(item["lesion"]).array > 0
    a, b = read_image(outputs["a"]), read_image(outputs["b"])
    assert a.same_grid(first)
    np.testing.assert_allclose(a.array[lesion], 300.0, rtol=1e-5)  # +1 through the scaling of output a
    np.testing.assert_allclose(b.array[~lesion], 0.0, atol=1e-5)  # -1 through output b's
    with pytest.raises(InputError, match="scale the outputs themselves"):
        Synthesizer(Recorder(), [item], ["lesion"], ["a"], tmp_path / "o2", labelmaps=["lesion"], conditions=conditions,
                    output_scalings={"a": "lesion"})


def test_conditions_choose_the_padding_of_overhanging_windows(tmp_path):
    item, _, _ = mask_guided_case(tmp_path)

    class Padded(Recorder):
        size_multiple = 16  # 24 x 20 slices need 32 x 32 windows

    def conditions(arrays):
        return np.zeros((1, *arrays["a"].shape), np.float32)

    for pad_value, expected in ((None, -1.0), (0.5, 0.5)):
        if pad_value is not None:
            conditions.pad_value = pad_value
        network = Padded()
        Synthesizer(network, [item], ["a"], ["a"], tmp_path / f"out{pad_value}", conditions=conditions)()
        window = network.seen[0]
        assert window.shape[-2:] == (32, 32)
        assert set(np.unique(window.numpy())) == {0.0, expected}


@pytest.mark.parametrize("kwargs, message", [
    ({"labelmaps": ["x"]}, r"labelmaps \['x'\] are not among the inputs"),
    ({"optional": ["a"]}, "the reference input 'a' .* must be a required intensity image"),
    ({"labelmaps": ["a"]}, "the reference input 'a' .* must be a required intensity image"),
    ({"output_scalings": {"z": "a"}}, r"output_scalings names \['z'\], which are not among the outputs"),
    ({"output_scalings": {"a": "m"}, "labelmaps": ["m"]}, "each output must be scaled like a required intensity input"),
])
def test_role_arguments_are_checked_when_built(tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        Synthesizer(Recorder(), [], ["a", "m"], ["a"], tmp_path / "out", **kwargs)


def test_conditions_that_scale_outputs_must_return_the_scalings(tmp_path):
    item, _, _ = mask_guided_case(tmp_path)

    class Forgetful(AtlasLikeConditions):
        def __call__(self, volumes):
            return super().__call__(volumes)[0]  # the input alone

    run = Synthesizer(Recorder(), [item], ["lesion"], ["a"], tmp_path / "out", labelmaps=["lesion"],
                      conditions=Forgetful(), spatial_dims=3, roi_size=(24, 20, 5))
    with pytest.raises(InputError, match="declare scales_outputs but did not return"):
        run()


class ConvNet(torch.nn.Module):
    """Two convolutions, recording the dtype its layers computed in."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.Tanh(),
                                          torch.nn.Conv2d(8, 1, 3, padding=1))
        self.dtypes = set()

    def forward(self, x):
        y = self.layers(x)
        self.dtypes.add(y.dtype)
        return y


def test_bf16_runs_the_generator_in_bf16_and_stays_close_to_fp32(tmp_path):
    path = write_image(oblique_volume(body()), tmp_path / "case_a.nii.gz")
    outputs = {}
    for precision in ("fp32", "bf16"):
        network = ConvNet()
        written = Synthesizer(network, [{"t1_pre": str(path)}], ["t1_pre"], ["t1_post1"], tmp_path / precision,
                              roi_size=(16, 16), precision=precision)()
        outputs[precision] = read_image(written[0]["t1_post1"])
        assert network.dtypes == {torch.float32 if precision == "fp32" else torch.bfloat16}
        assert outputs[precision].array.dtype == np.float32
    fp32, bf16 = outputs["fp32"].array, outputs["bf16"].array
    assert bf16.shape == fp32.shape and not np.array_equal(bf16, fp32)
    assert np.abs(bf16 - fp32).max() <= 0.02 * (fp32.max() - fp32.min())  # bf16 keeps ~3 significant digits


def test_channels_last_gives_the_same_outputs_up_to_rounding(tmp_path):
    path = write_image(oblique_volume(body()), tmp_path / "case_a.nii.gz")
    outputs = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        network = ConvNet()
        written = Synthesizer(network, [{"t1_pre": str(path)}], ["t1_pre"], ["t1_post1"], tmp_path / str(channels_last),
                              roi_size=(16, 16), channels_last=channels_last)()
        outputs[channels_last] = read_image(written[0]["t1_post1"]).array
        weight = network.layers[2].weight  # 8 input channels: its two layouts differ
        assert weight.is_contiguous(memory_format=torch.channels_last) is channels_last
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-4, atol=1e-4 * np.ptp(outputs[False]))


def test_a_compiled_network_gives_the_same_outputs(tmp_path):
    """torch.compile with a backend that records the graphs it is given and runs them as they are (no compiler
    needed: this tests the wiring, not inductor's speed)."""
    path = write_image(oblique_volume(body()), tmp_path / "case_a.nii.gz")
    graphs = []

    def recording_backend(graph, example_inputs):
        graphs.append(graph)
        return graph.forward

    outputs = {}
    for compiled in (False, recording_backend):
        written = Synthesizer(ConvNet(), [{"t1_pre": str(path)}], ["t1_pre"], ["t1_post1"], tmp_path / str(bool(compiled)),
                              roi_size=(16, 16), compile=compiled)()
        outputs[bool(compiled)] = read_image(written[0]["t1_post1"]).array
    assert graphs  # the network ran compiled
    np.testing.assert_array_equal(outputs[True], outputs[False])


def test_yes_no_settings_from_the_command_line_are_read_as_meant(tmp_path):
    """`python -m monai.bundle run --overwrite false` passes the string "false", which bool() takes for True."""
    from synthmr.errors import config_bool

    assert [config_bool(v, "x") for v in (True, "true", "Yes", "1", False, "false", "NO", "0")] == [True] * 4 + [False] * 4
    with pytest.raises(InputError, match="overwrite must be true or false; got 'maybe'"):
        synthesizer(tmp_path, [], overwrite="maybe")
    assert synthesizer(tmp_path, [], overwrite="false").overwrite is False


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_hardware_has_it(tmp_path, monkeypatch, native):
    """auto: bf16 on a CPU with AVX512-BF16 or AMX; fp32 on one that would emulate it (slower than fp32)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    assert native_bf16(torch.device("cpu")) is native
    path = write_image(oblique_volume(body()), tmp_path / "case_a.nii.gz")
    network = ConvNet()
    Synthesizer(network, [{"t1_pre": str(path)}], ["t1_pre"], ["t1_post1"], tmp_path / "out", roi_size=(16, 16),
                precision="auto")()
    assert network.dtypes == {torch.bfloat16 if native else torch.float32}


@pytest.mark.parametrize("precision, message", [("fp8", "precision must be one of"), ("fp16", "needs a CUDA")])
def test_a_precision_that_cannot_run_is_refused_when_built(tmp_path, precision, message):
    with pytest.raises(InputError, match=message):
        synthesizer(tmp_path, [], precision=precision)
