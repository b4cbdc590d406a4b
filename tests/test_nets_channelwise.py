"""synthmr.nets.ChannelwiseGenerators: channel i goes through generator i only, shapes, errors, TorchScript."""

import io
import warnings

import pytest
import torch
from monai.bundle import ConfigParser

from synthmr.errors import InputError
from synthmr.nets import ChannelwiseGenerators, Pix2PixUNet


def tiny_unet() -> Pix2PixUNet:
    return Pix2PixUNet(1, 1, num_downs=3, channels=4, max_channels=8, dropout=0.0)


@pytest.fixture
def net() -> ChannelwiseGenerators:
    torch.manual_seed(0)
    return ChannelwiseGenerators([tiny_unet() for _ in range(3)]).eval()


def test_output_has_input_shape_and_each_channel_is_its_generators_output(net):
    x = torch.randn(2, 3, 16, 16)
    y = net(x)
    assert y.shape == (2, 3, 16, 16)
    for i, generator in enumerate(net.generators):
        assert torch.allclose(y[:, i : i + 1], generator(x[:, i : i + 1]))


def test_perturbing_one_input_channel_changes_only_that_output_channel(net):
    x = torch.randn(1, 3, 16, 16)
    perturbed = x.clone()
    perturbed[:, 0] += torch.randn(16, 16)
    before, after = net(x), net(perturbed)
    assert not torch.allclose(before[:, 0], after[:, 0])
    assert torch.equal(before[:, 1:], after[:, 1:])


def test_generators_share_no_weights(net):
    first, second = (list(g.parameters()) for g in net.generators[:2])
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(first, second))
    assert not torch.equal(first[0], second[0])


@pytest.mark.parametrize("shape", [(1, 2, 16, 16), (1, 4, 16, 16), (16, 16)])
def test_wrong_channel_count_raises_input_error_naming_the_shape(net, shape):
    with pytest.raises(InputError, match=r"3 generators.*got shape"):
        net(torch.randn(*shape))


def test_no_generator_or_a_non_module_is_refused():
    with pytest.raises(InputError, match="at least one"):
        ChannelwiseGenerators([])
    with pytest.raises(InputError, match="function"):
        ChannelwiseGenerators([tiny_unet(), lambda x: x])
    with pytest.raises(InputError, match="positive integer"):
        ChannelwiseGenerators.of(0, tiny_unet)


def test_of_builds_fresh_generators_from_a_config():
    config = {
        "network_def": {
            "_target_": "synthmr.nets.ChannelwiseGenerators.of",
            "count": 3,
            "make": {
                "_target_": "synthmr.nets.Pix2PixUNet",
                "_mode_": "callable",
                "in_channels": 1,
                "out_channels": 1,
                "num_downs": 3,
                "channels": 4,
            },
        }
    }
    net = ConfigParser(config).get_parsed_content("network_def")
    assert isinstance(net, ChannelwiseGenerators) and len(net.generators) == 3
    assert len({id(g) for g in net.generators}) == 3
    assert net.eval()(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_state_dict_is_one_file_that_loads_with_weights_only(net):
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert {key.split(".")[1] for key in state} == {"0", "1", "2"}
    copy = ChannelwiseGenerators([tiny_unet() for _ in range(3)]).eval()
    copy.load_state_dict(state)
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(copy(x), net(x))


def test_script_and_trace_equal_eager(net):
    x = torch.randn(1, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated but still what ckpt_export uses
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the channel check is a constant of the trace
        scripted = torch.jit.script(net)
        traced = torch.jit.trace(net, x)
    assert torch.allclose(scripted(x), net(x), atol=1e-6)
    assert torch.allclose(traced(x), net(x), atol=1e-6)
    with pytest.raises(Exception, match="3 generators"):
        scripted(torch.randn(1, 2, 16, 16))


# ---------------------------------------------------------------------------------------------- discriminators


def tiny_patchgan() -> torch.nn.Module:
    from monai.networks.nets import PatchDiscriminator

    return PatchDiscriminator(
        spatial_dims=2, channels=4, in_channels=2, out_channels=1, num_layers_d=2, norm="INSTANCE"
    )


@pytest.fixture
def discriminators():
    from synthmr.nets import ChannelwiseDiscriminators

    torch.manual_seed(0)
    return ChannelwiseDiscriminators.of(3, tiny_patchgan).eval()


def test_discriminator_i_sees_condition_i_and_image_i(discriminators):
    conditions, images = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    outputs = discriminators(torch.cat([conditions, images], dim=1))
    assert len(outputs) == 3
    for i, (output, d) in enumerate(zip(outputs, discriminators.discriminators)):
        expected = d(torch.cat([conditions[:, i : i + 1], images[:, i : i + 1]], dim=1))
        assert torch.allclose(output[-1], expected[-1])



def test_unconditional_discriminator_i_sees_image_i_alone():
    from monai.networks.nets import PatchDiscriminator

    from synthmr.nets import ChannelwiseDiscriminators

    torch.manual_seed(0)
    make = lambda: PatchDiscriminator(spatial_dims=2, channels=4, in_channels=1, out_channels=1, num_layers_d=2)
    unconditional = ChannelwiseDiscriminators.of(3, make, conditional=False).eval()
    images = torch.randn(2, 3, 32, 32)
    for i, (output, d) in enumerate(zip(unconditional(images), unconditional.discriminators)):
        assert torch.allclose(output[-1], d(images[:, i : i + 1])[-1])
    with pytest.raises(InputError, match=r"3 unconditional discriminators, so it needs input \(batch, 3, \*spatial\)"):
        unconditional(torch.cat([images, images], dim=1))


@pytest.mark.parametrize("channel", [1, 4])  # condition 1, image 1 of the 6 input channels
def test_perturbing_one_pair_changes_only_its_output(discriminators, channel):
    x = torch.randn(1, 6, 32, 32)
    perturbed = x.clone()
    perturbed[:, channel] += torch.randn(32, 32)
    before, after = discriminators(x), discriminators(perturbed)
    assert not torch.allclose(before[1][-1], after[1][-1])
    assert torch.equal(before[0][-1], after[0][-1]) and torch.equal(before[2][-1], after[2][-1])


def test_adversarial_loss_takes_the_list_and_trains_each_discriminator_on_its_pair_only(discriminators):
    from synthmr.losses import AdversarialLoss

    loss = AdversarialLoss("vanilla")
    x = torch.randn(2, 6, 32, 32)
    outputs = discriminators(x)
    value = loss(outputs, True, True)
    singles = [loss(output, True, True) for output in outputs]
    assert torch.allclose(value, torch.stack(singles).mean())  # the mean of the three pix2pix losses
    # The gradient reaching discriminator 0 is its own loss's (scaled by 1/3), whatever pairs 1 and 2 hold.
    discriminators.zero_grad()
    value.backward()
    grad = [p.grad.clone() for p in discriminators.discriminators[0].parameters()]
    discriminators.zero_grad()
    (loss(discriminators(x)[0], True, True) / 3).backward()
    own = discriminators.discriminators[0].parameters()
    assert all(torch.allclose(a, p.grad, atol=1e-7) for a, p in zip(grad, own))


def test_discriminators_share_no_weights(discriminators):
    first, second = (list(d.parameters()) for d in discriminators.discriminators[:2])
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(first, second))


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 7, 32, 32), (32, 32)])
def test_discriminators_wrong_channel_count_is_an_input_error(discriminators, shape):
    with pytest.raises(InputError, match=r"3 discriminators.*\(batch, 6, \*spatial\).*got shape"):
        discriminators(torch.randn(*shape))


def test_discriminators_refuse_none_or_non_modules():
    from synthmr.nets import ChannelwiseDiscriminators

    with pytest.raises(InputError, match="at least one"):
        ChannelwiseDiscriminators([])
    with pytest.raises(InputError, match="function"):
        ChannelwiseDiscriminators([tiny_patchgan(), lambda x: x])
    with pytest.raises(InputError, match="positive integer"):
        ChannelwiseDiscriminators.of(True, tiny_patchgan)
