"""SAMRGenerator and LabelwiseDiscriminator: the reference layout, branch independence, ROI masking, losses,
TorchScript and clear errors."""

import warnings

import pytest
import torch
import torch.nn as nn

from synthmr.errors import InputError
from synthmr.losses import AdversarialLoss, FeatureMatchingLoss
from synthmr.nets import LabelwiseDiscriminator, MultiScaleDiscriminator, SAMRGenerator


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def reference_samr_parameters(label: int, atlas: int, out: int, ngf: int, n_down: int, n_blocks: int) -> int:
    """Parameters of the authors' GlobalGenerator_stretch_atlas with batch norm, counted layer by layer from its
    layout (convolutions with biases, affine BatchNorm after every convolution but the last)."""

    def encoder(cin: int) -> int:
        count = cin * ngf * 49 + ngf + 2 * ngf
        for i in range(n_down):
            a, b = ngf * 2**i, ngf * 2 ** (i + 1)
            count += a * b * 9 + b + 2 * b
        return count

    def resnet_block(d: int) -> int:
        return 2 * (d * d * 9 + d) + 2 * 2 * d

    width = 2 * ngf * 2**n_down
    branch = resnet_block(width) + 2 * ngf * 49 + 1
    for i in range(n_down):
        a, b = width // 2**i, width // 2 ** (i + 1)
        branch += a * b * 9 + b + 2 * b
    return encoder(label) + encoder(atlas) + n_blocks * resnet_block(width) + out * branch


@pytest.mark.parametrize("ngf, n_down, n_blocks", [(8, 3, 9), (4, 2, 3)])
def test_samr_generator_has_the_reference_layout(ngf, n_down, n_blocks):
    # At the code's defaults (ngf 64, 3 downsamplings, 9 blocks) both count 298,502,789: too large to build in a
    # test, so the same formula is checked at smaller widths.
    net = SAMRGenerator(channels=ngf, n_downsampling=n_down, n_blocks=n_blocks)
    assert n_params(net) == reference_samr_parameters(5, 15, 5, ngf, n_down, n_blocks)
    assert reference_samr_parameters(5, 15, 5, 64, 3, 9) == 298_502_789


@pytest.mark.parametrize("spatial_dims, size", [(2, 32), (3, 8)])
def test_samr_generator_shapes(spatial_dims, size):
    net = SAMRGenerator(channels=2, n_downsampling=2, n_blocks=1, spatial_dims=spatial_dims)
    out = net(torch.randn(2, 20, *[size] * spatial_dims))
    assert out.shape == (2, 5, *[size] * spatial_dims)
    assert out.abs().max() <= 1  # Tanh


def test_each_branch_writes_its_own_sequence_only():
    torch.manual_seed(0)
    net = SAMRGenerator(channels=2, n_downsampling=2, n_blocks=1).eval()
    x = torch.randn(1, 20, 16, 16)
    before = net(x)
    with torch.no_grad():
        for p in net.branches[2].parameters():
            p.add_(0.5)
    after = net(x)
    changed = (after - before).abs().flatten(2).amax(-1)[0]
    assert changed[2] > 1e-3
    assert torch.all(changed[[0, 1, 3, 4]] == 0)


def test_atlas_reaches_the_output_and_can_be_ablated():
    torch.manual_seed(0)
    net = SAMRGenerator(channels=2, n_downsampling=2, n_blocks=1).eval()
    x = torch.randn(1, 20, 16, 16)
    other_atlas = x.clone()
    other_atlas[:, 5:] = torch.randn(1, 15, 16, 16)
    assert not torch.allclose(net(x), net(other_atlas))
    without = SAMRGenerator(atlas_channels=0, channels=2, n_downsampling=2, n_blocks=1)
    assert without.atlas_encoder is None
    assert without(torch.randn(1, 5, 16, 16)).shape == (1, 5, 16, 16)
    # The trunk is half as wide without the atlas encoder's features.
    assert without.trunk[0].block[0].in_channels == net.trunk[0].block[0].in_channels // 2


def test_without_stretch_out_one_decoder_writes_all_sequences():
    net = SAMRGenerator(channels=2, n_downsampling=2, n_blocks=1, stretch_out=False)
    assert len(net.branches) == 1
    assert net(torch.randn(1, 20, 16, 16)).shape == (1, 5, 16, 16)
    assert len(SAMRGenerator(channels=2, n_downsampling=2, n_blocks=1).branches) == 5


def test_samr_generator_exports_to_torchscript():
    for net in (
        SAMRGenerator(channels=2, n_downsampling=2, n_blocks=1).eval(),
        SAMRGenerator(atlas_channels=0, channels=2, n_downsampling=2, n_blocks=1).eval(),
    ):
        x = torch.randn(1, net.label_channels + net.atlas_channels, 16, 16)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            scripted = torch.jit.script(net)
        assert torch.allclose(scripted(x), net(x), atol=1e-6)


def test_samr_generator_errors_name_the_problem():
    net = SAMRGenerator(channels=2, n_downsampling=2, n_blocks=1)
    with pytest.raises(InputError, match=r"5 lesion-map channels then 15 atlas channels; got shape \[1, 5, 16, 16\]"):
        net(torch.randn(1, 5, 16, 16))
    with pytest.raises(InputError, match="multiple of 4"):
        net(torch.randn(1, 20, 18, 16))
    with pytest.raises(InputError, match="n_blocks"):
        SAMRGenerator(n_blocks=-1)
    with pytest.raises(InputError, match="label_channels"):
        SAMRGenerator(label_channels=0)
    with pytest.raises(InputError, match="upsample"):
        SAMRGenerator(upsample="pixelshuffle")


def _labelled_input(batch: int = 2, size: int = 32) -> torch.Tensor:
    """One-hot five-label map (background outside a disc, normal brain, a lesion square), then 20 more channels."""
    labels = torch.zeros(batch, 5, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    brain = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.4) ** 2
    lesion = brain & (yy >= size // 2) & (yy < size // 2 + 6) & (xx >= size // 2) & (xx < size // 2 + 6)
    labels[:, 0][:, ~brain] = 1
    labels[:, 1][:, brain & ~lesion] = 1
    labels[:, 4][:, lesion] = 1
    return torch.cat([labels, torch.randn(batch, 20, size, size)], dim=1)


def test_labelwise_discriminator_has_two_scales_per_roi():
    net = LabelwiseDiscriminator(25, channels=4)
    outputs = net(_labelled_input())
    assert len(outputs) == 6
    assert all(len(layers) == 5 for layers in outputs)  # 3 normalised layers + first + logits
    full, half = outputs[0][-1], outputs[1][-1]
    assert half.shape[-1] < full.shape[-1]
    # Six separate PatchGANs: three multi-scale discriminators' worth of parameters.
    assert n_params(net) == 3 * n_params(MultiScaleDiscriminator(25, channels=4))


def test_each_roi_discriminator_sees_only_its_region():
    torch.manual_seed(0)
    net = LabelwiseDiscriminator(25, channels=4).eval()
    x = _labelled_input()
    lesion = x[:, 2:5].sum(1, keepdim=True) > 0
    y = x.clone()
    y[:, 20:] += torch.where(lesion, 0.0, 3.0)  # change the images outside the lesion only
    before, after = net(x), net(y)
    for index in (4, 5):  # the lesion ROI at both scales
        assert torch.equal(before[index][-1], after[index][-1])
    for index in (0, 1, 2, 3):  # background and normal brain
        assert not torch.allclose(before[index][-1], after[index][-1])


def test_labelwise_discriminator_feeds_the_gan_losses():
    net = LabelwiseDiscriminator(25, channels=4)
    real, fake = net(_labelled_input()), net(_labelled_input())
    adversarial = AdversarialLoss("lsgan")(fake, True, False)
    matching = FeatureMatchingLoss(num_d=6, num_layers_d=3, weight=5.0)(fake, real)
    assert torch.isfinite(adversarial) and torch.isfinite(matching) and matching > 0


def test_labelwise_discriminator_rejects_rois_outside_the_input():
    with pytest.raises(InputError, match=r"ROI channels \[30\]"):
        LabelwiseDiscriminator(25, rois=((0,), (30,)))
    with pytest.raises(InputError, match="at least one ROI"):
        LabelwiseDiscriminator(25, rois=())
