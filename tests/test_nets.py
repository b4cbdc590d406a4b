"""synthmr.nets: reference parameter counts, 2D/3D shapes, multi-scale downsampling, size errors, TorchScript."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from synthmr.errors import InputError
from synthmr.nets import (
    GlobalGenerator,
    LocalEnhancer,
    MultiScaleDiscriminator,
    Pix2PixUNet,
    ResizeConv,
    ResnetBlock,
    patchgan70,
)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# Paper-size networks: instantiate only.


def test_pix2pix_unet_256_has_reference_parameter_count():
    assert n_params(Pix2PixUNet(3, 3, num_downs=8, norm="batch")) == 54_413_955


def test_resnet_9blocks_generator_has_reference_parameter_count():
    net = GlobalGenerator(3, 3, channels=64, n_downsampling=2, n_blocks=9, norm="instance")
    assert n_params(net) == 11_378_179


def test_patchgan70_has_reference_parameter_count():
    assert n_params(patchgan70(6, norm="batch")) == 2_768_705


def test_pix2pixhd_multiscale_discriminator_size():
    # pix2pixHD num_D=2, n_layers_D=3, ndf=64 on a 3+3-channel input: 5.54 M parameters.
    assert round(n_params(MultiScaleDiscriminator(6)) / 1e6, 2) == 5.54


# Tiny forward passes.


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("spatial_dims, size, num_downs", [(2, 32, 5), (3, 16, 4)])
def test_pix2pix_unet_shapes(upsample, spatial_dims, size, num_downs):
    net = Pix2PixUNet(2, 3, num_downs=num_downs, channels=4, spatial_dims=spatial_dims, upsample=upsample)
    out = net(torch.randn(2, 2, *[size] * spatial_dims))
    assert out.shape == (2, 3, *[size] * spatial_dims)
    assert out.abs().max() <= 1  # Tanh output


def test_pix2pix_unet_dropout_and_bias_follow_the_reference():
    unet_256 = Pix2PixUNet(1, 1, num_downs=8, channels=2, max_channels=16)
    assert sum(isinstance(m, nn.Dropout) for m in unet_256.modules()) == 3  # num_downs - 5
    assert not any(isinstance(m, nn.Dropout) for m in Pix2PixUNet(1, 1, num_downs=5, channels=2).modules())
    convs = [m for m in unet_256.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [m.bias is not None for m in convs].count(True) == 1  # batch norm: only the output convolution
    instance = Pix2PixUNet(1, 1, num_downs=8, channels=2, max_channels=16, norm="instance")
    assert all(m.bias is not None for m in instance.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def test_pix2pix_unet_rejects_indivisible_size_with_clear_message():
    net = Pix2PixUNet(1, 1, num_downs=5, channels=4)
    with pytest.raises(ValueError) as error:
        net(torch.randn(1, 1, 48, 40))
    assert isinstance(error.value, InputError)
    assert "32" in str(error.value) and "[48, 40]" in str(error.value)


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("spatial_dims, size", [(2, 32), (3, 16)])
def test_global_generator_shapes(upsample, spatial_dims, size):
    net = GlobalGenerator(1, 2, channels=4, n_downsampling=2, n_blocks=2, spatial_dims=spatial_dims, upsample=upsample)
    assert net(torch.randn(2, 1, *[size] * spatial_dims)).shape == (2, 2, *[size] * spatial_dims)


def test_global_generator_rejects_indivisible_size():
    net = GlobalGenerator(1, 1, channels=4, n_downsampling=2, n_blocks=1)
    with pytest.raises(InputError, match="multiple of 4"):
        net(torch.randn(1, 1, 30, 32))


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
@pytest.mark.parametrize("spatial_dims, size", [(2, 32), (3, 16)])
def test_local_enhancer_shapes(upsample, spatial_dims, size):
    net = LocalEnhancer(
        1,
        2,
        channels=4,
        n_downsampling_global=2,
        n_blocks_global=1,
        n_blocks_local=1,
        spatial_dims=spatial_dims,
        upsample=upsample,
    )
    assert net(torch.randn(2, 1, *[size] * spatial_dims)).shape == (2, 2, *[size] * spatial_dims)
    with pytest.raises(InputError, match="multiple of 8"):
        net(torch.randn(2, 1, *[size + 4] * spatial_dims))


def test_local_enhancer_takes_a_trained_global_generator_without_its_last_layers():
    g1 = GlobalGenerator(1, 1, channels=8, n_downsampling=2, n_blocks=1)
    enhancer = LocalEnhancer(1, 1, channels=4, n_downsampling_global=2, n_blocks_global=1, n_blocks_local=1)
    features = {k[len("features.") :]: v for k, v in g1.state_dict().items() if k.startswith("features.")}
    enhancer.global_generator.load_state_dict(features)  # strict: same names and shapes
    x = torch.randn(1, 1, 16, 16)
    assert torch.equal(enhancer.global_generator(x), g1.features(x))


def test_resnet_block_is_residual_and_keeps_shape():
    block = ResnetBlock(3, 6, norm="instance")
    x = torch.randn(1, 6, 8, 8, 8)
    assert block(x).shape == x.shape
    for m in block.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_resize_conv_upsamples_without_checkerboard(spatial_dims):
    up = ResizeConv(spatial_dims, 3, 5)
    out = up(torch.ones(1, 3, *[6] * spatial_dims))
    assert out.shape == (1, 5, *[12] * spatial_dims)
    interior = out[(..., *[slice(1, -1)] * spatial_dims)]  # zero padding only touches the border
    assert torch.allclose(interior, interior.flatten(2)[..., :1].view(1, 5, *[1] * spatial_dims).expand_as(interior))


@pytest.mark.parametrize("channels", [64, 16])
def test_patchgan70_receptive_field_is_70_at_any_width(channels):
    net = patchgan70(1, channels=channels).eval()
    first = next(module for module in net.modules() if isinstance(module, torch.nn.Conv2d))
    assert first.out_channels == channels
    x = torch.randn(1, 1, 140, 140, requires_grad=True)
    logits = net(x)[-1]
    centre = logits.shape[-1] // 2
    logits[0, 0, centre, centre].backward()
    rows = x.grad[0, 0].abs().sum(dim=1).nonzero()
    assert rows.max() - rows.min() + 1 == 70


@pytest.mark.parametrize("spatial_dims, size", [(2, 32), (3, 16)])
def test_multiscale_discriminator_downsamples_input_for_each_scale(spatial_dims, size):
    net = MultiScaleDiscriminator(2, num_d=2, channels=4, num_layers_d=2, spatial_dims=spatial_dims)
    x = torch.randn(1, 2, *[size] * spatial_dims)
    outputs = net(x)
    assert len(outputs) == 2
    assert all(isinstance(scale, list) and len(scale) == 2 + 2 for scale in outputs)  # layers, logits last
    assert outputs[0][-1].shape[1] == outputs[1][-1].shape[1] == 1
    assert all(s1 < s0 for s0, s1 in zip(outputs[0][-1].shape[2:], outputs[1][-1].shape[2:]))
    pool = F.avg_pool2d if spatial_dims == 2 else F.avg_pool3d
    halved = pool(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)
    assert torch.allclose(outputs[1][-1], net.discriminators[1](halved)[-1])


def test_generators_export_to_torchscript():
    nets = [
        (Pix2PixUNet(1, 2, num_downs=4, channels=4, upsample="resize"), (1, 1, 16, 16)),
        (GlobalGenerator(1, 2, channels=4, n_downsampling=2, n_blocks=1), (1, 1, 16, 16)),
        (LocalEnhancer(1, 2, channels=4, n_downsampling_global=1, n_blocks_global=1, n_blocks_local=1), (1, 1, 16, 16)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated but still what ckpt_export uses
        warnings.simplefilter("ignore", FutureWarning)
        for net, shape in nets:
            net.eval()
            x = torch.randn(*shape)
            scripted = torch.jit.script(net)
            assert torch.allclose(scripted(x), net(x), atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Pix2PixUNet(1, 1, norm="group"),
        lambda: Pix2PixUNet(1, 1, upsample="pixelshuffle"),
        lambda: GlobalGenerator(1, 1, norm="layer"),
        lambda: MultiScaleDiscriminator(2, norm="spectral"),
        lambda: Pix2PixUNet(1, 1, num_downs=1),
    ],
)
def test_bad_options_raise_input_error(make):
    with pytest.raises(InputError):
        make()


def test_roi_refiner_starts_as_identity_and_never_touches_weight_zero():
    from monai.networks.nets import UNet

    from synthmr.nets import ROIRefiner

    refiner = ROIRefiner(UNet(3, 6, 8, channels=(8, 16), strides=(2,), num_res_units=0), features=8, image_channels=2)
    x = torch.randn(2, 6, 16, 16, 16)
    x[:, -1] = 0.0
    x[:, -1, 4:12, 4:12, 4:12] = 1.0
    assert torch.equal(refiner(x), x[:, :2])  # zero head: the identity before training
    torch.nn.init.normal_(refiner.head.weight)
    out = refiner(x)
    outside = (x[:, -1:] == 0).expand_as(out)
    assert torch.equal(out[outside], x[:, :2][outside])
    assert not torch.allclose(out[~outside], x[:, :2][~outside])


def test_dual_head_discriminator_heads():
    from synthmr.nets import DualHeadDiscriminator

    d = DualHeadDiscriminator(in_channels=4, num_classes=4, channels=8)
    out = d(torch.randn(2, 4, 32, 32, 32))
    assert out.realism.shape == (2, 1, 2, 2, 2)
    assert out.subregions.shape == (2, 4, 3, 3, 3)
    (out.realism.mean() + out.subregions.mean()).backward()
    assert d.subregion_head.weight.grad is not None
