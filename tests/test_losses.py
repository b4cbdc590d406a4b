"""synthmr.losses: known values on hand-computed tensors, multi-scale averaging, masks, frozen extractors."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from synthmr.errors import InputError
from synthmr.losses import (
    AdversarialLoss,
    ClassWisePerceptualLoss,
    FeatureMatchingLoss,
    PerceptualLoss,
    SegmentationConsistencyLoss,
    VGG19Features,
    gradient_penalty,
    hinge_l1,
    masked_l1,
    vgg19_features,
)
from synthmr.nets import MultiScaleDiscriminator

D = torch.tensor([[2.0, 0.5, -1.0]])  # hand-picked discriminator logits


# Adversarial losses.


def test_lsgan_known_values():
    loss = AdversarialLoss("lsgan")
    assert loss(torch.ones(1, 1, 4, 4), target_is_real=True, for_discriminator=True) == 0
    assert loss(torch.ones(1, 1, 4, 4), target_is_real=False, for_discriminator=True) == 1
    # no LeakyReLU in front of the MSE: a negative logit counts fully
    assert loss(-torch.ones(1, 1, 4, 4), target_is_real=True, for_discriminator=False) == 4


def test_vanilla_is_bce_with_logits():
    logits = torch.randn(2, 1, 5, 5) * 10
    loss = AdversarialLoss("vanilla")
    ones, zeros = torch.ones_like(logits), torch.zeros_like(logits)
    bce = F.binary_cross_entropy_with_logits
    assert torch.allclose(loss(logits, True, True), bce(logits, ones))
    assert torch.allclose(loss(logits, False, True), bce(logits, zeros))
    assert torch.allclose(loss(logits, True, False), bce(logits, ones))  # non-saturating generator loss


def test_hinge_margins():
    loss = AdversarialLoss("hinge")
    assert torch.isclose(loss(D, True, True), torch.tensor((0.0 + 0.5 + 2.0) / 3))  # mean relu(1 - D)
    assert torch.isclose(loss(D, False, True), torch.tensor((3.0 + 1.5 + 0.0) / 3))  # mean relu(1 + D)
    assert torch.isclose(loss(D, True, False), torch.tensor(-1.5 / 3))  # -mean D, no margin


def test_wasserstein_signs():
    loss = AdversarialLoss("wasserstein")
    assert torch.isclose(loss(D, True, True), torch.tensor(-0.5))
    assert torch.isclose(loss(D, False, True), torch.tensor(0.5))
    assert torch.isclose(loss(D, True, False), torch.tensor(-0.5))


@pytest.mark.parametrize("mode", ["vanilla", "lsgan", "hinge", "wasserstein"])
def test_multiscale_outputs_are_averaged_over_scales(mode):
    loss = AdversarialLoss(mode)
    fine, coarse = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 4, 4)
    features = [[torch.randn(1, 8, 8, 8), fine], [torch.randn(1, 8, 4, 4), coarse]]
    for target, for_d in [(True, True), (False, True), (True, False)]:
        expected = (loss(fine, target, for_d) + loss(coarse, target, for_d)) / 2
        assert torch.isclose(loss(features, target, for_d), expected)
        assert torch.isclose(loss([[fine], [coarse]], target, for_d), expected)


def test_adversarial_loss_on_multiscale_discriminator_output_backpropagates():
    net = MultiScaleDiscriminator(2, num_d=2, channels=4, num_layers_d=2)
    x = torch.randn(1, 2, 32, 32, requires_grad=True)
    value = AdversarialLoss("lsgan")(net(x), True, False)
    value.backward()
    assert value.ndim == 0 and x.grad.abs().sum() > 0


def test_adversarial_loss_misuse():
    with pytest.raises(InputError, match="wgan"):
        AdversarialLoss("wgan")
    with pytest.raises(ValueError, match="target_is_real"):
        AdversarialLoss("hinge")(D, target_is_real=False, for_discriminator=False)


def test_a_patch_discriminator_layer_list_is_judged_by_its_logits():
    patch_features = [torch.randn(1, 8, 4, 4), torch.randn(1, 16, 2, 2), torch.ones(1, 1, 2, 2)]
    assert AdversarialLoss("lsgan")(patch_features, True, True) == 0
    assert AdversarialLoss("lsgan")(patch_features, False, True) == 1


# Gradient penalty.


class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return x.flatten(1) @ self.weight


def test_gradient_penalty_is_zero_for_unit_gradient_critic():
    w = torch.randn(3 * 4 * 4)
    critic = LinearCritic(w / w.norm())
    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-6)


def test_gradient_penalty_value_and_critic_gradient():
    w = torch.randn(3 * 4 * 4)
    critic = LinearCritic(3 * w / w.norm())  # gradient norm 3 everywhere
    penalty = gradient_penalty(critic, torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4), weight=10.0)
    assert penalty.item() == pytest.approx(10.0 * (3 - 1) ** 2, rel=1e-5)
    penalty.backward()  # differentiable w.r.t. the critic: d/dw 10 (|w| - 1)^2 = 20 (|w| - 1) w / |w|
    assert torch.allclose(critic.weight.grad, 20 * 2 * critic.weight.detach() / 3, rtol=1e-4)


# Feature matching.


def test_feature_matching_weights_are_exact():
    num_d, num_layers_d = 2, 2  # each scale: num_layers_d + 2 = 4 outputs, the last being logits
    values = [[1.0, 2.0, 3.0, 100.0], [0.5, 0.25, 4.0, -50.0]]
    real = [[torch.full((1, 2, 3, 3), v, requires_grad=True) for v in scale] for scale in values]
    fake = [[torch.zeros(1, 2, 3, 3, requires_grad=True) for _ in scale] for scale in values]
    loss = FeatureMatchingLoss(num_d, num_layers_d, weight=10.0)(fake, real)
    expected = 10.0 * (1 / num_d) * (4 / (num_layers_d + 1)) * (1 + 2 + 3 + 0.5 + 0.25 + 4)  # logits ignored
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert all(t.grad is None for scale in real for t in scale)  # real features are detached
    assert fake[0][-1].grad is None and fake[0][0].grad is not None


def test_feature_matching_samr_variant_sums_mean_squared_differences():
    values = [[1.0, 2.0, 3.0, 100.0], [0.5, 0.25, 4.0, -50.0], [2.0, 0.0, 1.0, 7.0]]  # three discriminators
    real = [[torch.full((1, 2, 3, 3), v) for v in scale] for scale in values]
    fake = [[torch.zeros(1, 2, 3, 3) for _ in scale] for scale in values]
    loss = FeatureMatchingLoss(3, 2, weight=5.0, distance="l2", pix2pixhd_weights=False)(fake, real)
    expected = 5.0 * sum(v**2 for scale in values for v in scale[:-1])  # logits ignored, no layer weights
    assert loss.item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="distance"):
        FeatureMatchingLoss(3, 2, distance="cosine")


def test_feature_matching_checks_structure():
    scale = [torch.zeros(1, 1, 2, 2)] * 4
    with pytest.raises(ValueError, match="scales"):
        FeatureMatchingLoss(2, 2)([scale], [scale])
    with pytest.raises(ValueError, match="layer outputs"):
        FeatureMatchingLoss(1, 3)([scale], [scale])


# Masked reconstruction losses.


def test_masked_l1_ignores_outside_and_is_zero_on_empty_mask():
    target = torch.zeros(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[:, :, :2] = 1
    pred = torch.where(mask.bool(), 1.0, 100.0).expand(2, 3, 4, 4).clone().requires_grad_(True)
    assert masked_l1(pred, target, mask).item() == pytest.approx(1.0)
    empty = masked_l1(pred, target, torch.zeros_like(mask))
    empty.backward()
    assert empty.item() == 0 and not torch.isnan(pred.grad).any() and pred.grad.abs().sum() == 0


def test_hinge_l1_free_under_margin_linear_above():
    target = torch.zeros(1, 1, 4, 4)
    assert hinge_l1(torch.full_like(target, 0.05), target, margin=0.1).item() == 0
    assert hinge_l1(torch.full_like(target, -0.3), target, margin=0.1).item() == pytest.approx(0.2)
    mask = torch.zeros_like(target)
    mask[..., 0, 0] = 1
    pred = torch.zeros_like(target)
    pred[..., 0, 0], pred[..., 1, 1] = 0.5, 9.0  # only the first voxel is in the region
    assert hinge_l1(pred, target, mask, margin=0.1).item() == pytest.approx(0.4)
    assert hinge_l1(pred, target, torch.zeros_like(target)).item() == 0


# Perceptual losses.


class TwoLevelExtractor(nn.Module):
    def __init__(self, spatial_dims=2):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.a = conv(1, 4, 3, padding=1)
        self.b = conv(4, 6, 3, stride=2, padding=1)
        self.norm = nn.BatchNorm2d(4) if spatial_dims == 2 else nn.BatchNorm3d(4)

    def forward(self, x):
        a = torch.relu(self.norm(self.a(x)))
        return [a, self.b(a)]


def test_perceptual_loss_frozen_extractor():
    extractor = TwoLevelExtractor()
    loss = PerceptualLoss(extractor, layer_weights=[0.5, 2.0])
    loss.train()
    assert not extractor.training and not any(p.requires_grad for p in extractor.parameters())
    x = torch.randn(2, 1, 8, 8)
    assert loss(x, x.clone()).item() == 0
    pred = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = x.clone().requires_grad_(True)
    value = loss(pred, target)
    value.backward()
    assert value > 0 and pred.grad.abs().sum() > 0 and target.grad is None  # the target is a constant
    assert all(p.grad is None for p in extractor.parameters())
    fa, fb = extractor(pred.detach()), extractor(x)
    expected = 0.5 * F.l1_loss(fa[0], fb[0]) + 2.0 * F.l1_loss(fa[1], fb[1])
    assert torch.isclose(value, expected)
    with pytest.raises(ValueError, match="layer weights"):
        PerceptualLoss(extractor, layer_weights=[1.0])(pred, x)


class Identity1x1(nn.Module):
    """Features = the image itself: statistics are then computable by hand."""

    def forward(self, x):
        return [x]


def test_class_wise_perceptual_known_value_and_identity():
    loss = ClassWisePerceptualLoss(Identity1x1(), num_classes=3)
    labels = torch.zeros(1, 1, 8, 8, dtype=torch.long)
    labels[..., :4, :4] = 1
    generated = torch.where(labels == 1, 1.0, 0.0)
    reference = torch.where(labels == 1, 3.0, 0.0)
    # class 1: means 1 vs 3, both constant (std sqrt(eps)); class 2 absent on both sides
    assert loss(generated, labels, reference, labels).item() == pytest.approx(2.0, abs=1e-5)
    assert loss(generated, labels, generated.clone(), labels).item() == 0


def test_class_wise_perceptual_ignores_classes_absent_from_either_side():
    loss = ClassWisePerceptualLoss(Identity1x1(), num_classes=3)
    gen_labels = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    gen_labels[:, :, :4] = 1
    gen_labels[:, :, 6:] = 2
    ref_labels = torch.zeros(3, 1, 6, 6, dtype=torch.long)  # unpaired: other batch size and size
    ref_labels[:, :, :3] = 1
    reference = torch.randn(3, 1, 6, 6)
    generated = torch.randn(2, 1, 8, 8)
    wild = torch.where(gen_labels == 2, 50.0, generated)
    assert torch.isclose(loss(generated, gen_labels, reference, ref_labels), loss(wild, gen_labels, reference, ref_labels))
    ref_labels[:, :, 5:] = 2  # once the reference has class 2, the wild region counts
    assert loss(wild, gen_labels, reference, ref_labels) > loss(generated, gen_labels, reference, ref_labels) + 10
    nothing_shared = torch.zeros_like(ref_labels)
    assert loss(wild, gen_labels, reference, nothing_shared).item() == 0


def test_class_wise_perceptual_3d_gradients_reach_generated_only():
    extractor = TwoLevelExtractor(spatial_dims=3)
    loss = ClassWisePerceptualLoss(extractor, num_classes=2, layer_weights=[1.0, 0.5])
    labels = torch.zeros(1, 1, 8, 8, 8, dtype=torch.long)
    labels[..., 2:6, 2:6, 2:6] = 1
    generated = torch.randn(1, 1, 8, 8, 8, requires_grad=True)
    value = loss(generated, labels, torch.randn(2, 1, 8, 8, 8), labels.expand(2, -1, -1, -1, -1))
    value.backward()
    assert torch.isfinite(value) and value > 0
    assert generated.grad.abs().sum() > 0 and all(p.grad is None for p in extractor.parameters())


# VGG19 from a local file.


def test_vgg19_features_missing_file_names_path_and_source(tmp_path):
    missing = tmp_path / "nowhere" / "vgg19.pth"
    with pytest.raises(InputError) as error:
        vgg19_features(missing)
    message = str(error.value)
    assert str(missing) in message and "vgg19-dcbb9e9d.pth" in message and "\n" not in message


def test_vgg19_features_loads_a_torchvision_style_state_dict(tmp_path):
    layers = ("relu1_1", "relu2_1", "relu1_2")
    source = VGG19Features(layers)
    state = {f"features.{k.split('.', 1)[1]}": torch.randn_like(v) for k, v in source.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(4, 4)  # torchvision files hold the classifier too
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(state, path)
    model = vgg19_features(path, layers=layers)
    assert not model.training
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
    assert torch.equal(model.features[5].weight, state["features.5.weight"])
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    outputs = model(x)
    assert [tuple(o.shape) for o in outputs] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 64, 16, 16)]
    assert all(torch.allclose(a, b) for a, b in zip(outputs, model(x.repeat(1, 3, 1, 1))))
    # -1..1 input mapped to [0, 1] then ImageNet-normalised before the first convolution
    expected = (x.repeat(1, 3, 1, 1) + 1) / 2
    expected = (expected - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    assert torch.allclose(outputs[0], torch.relu(model.features[0](expected)), atol=1e-5)


def test_vgg19_features_rejects_wrong_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="garbage.pth"):
        vgg19_features(garbage)
    partial = tmp_path / "partial.pth"
    torch.save({"features.0.weight": torch.randn(64, 3, 3, 3)}, partial)
    with pytest.raises(InputError, match="features.0.bias"):
        vgg19_features(partial, layers=("relu1_1",))
    with pytest.raises(InputError, match="relu9_9"):
        VGG19Features(("relu9_9",))


def test_default_vgg19_layers_are_pix2pixhd_slices():
    model = VGG19Features()
    assert model.layer_indices == [1, 6, 11, 20, 29]
    shapes = [tuple(o.shape[1:]) for o in model(torch.zeros(1, 1, 32, 32))]
    assert shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]


# Segmentation consistency.


class SoftLabeller(nn.Module):
    """Logit of class c = -sharpness (x - c)^2: segments an image whose intensity is its label."""

    def __init__(self, num_classes: int, shift: float = 0.0):
        super().__init__()
        self.sharpness = nn.Parameter(torch.tensor(50.0))
        self.register_buffer("centres", torch.arange(num_classes, dtype=torch.float32).view(1, -1, 1, 1) + shift)

    def forward(self, x):
        return -self.sharpness * (x - self.centres) ** 2


def test_segmentation_consistency_near_zero_when_segmenter_reproduces_label():
    labels = torch.zeros(2, 1, 8, 8)
    labels[:, :, 2:5, 2:5] = 1
    labels[:, :, 6:, 6:] = 2
    generated = labels.clone().requires_grad_(True)
    loss = SegmentationConsistencyLoss(SoftLabeller(3))
    value = loss(generated, labels)
    assert value.item() < 1e-3
    wrong = SegmentationConsistencyLoss(SoftLabeller(3, shift=1.0))(generated, labels)
    assert wrong.item() > 0.5
    wrong.backward()
    assert generated.grad.abs().sum() > 0
    assert loss.segmenter.network.sharpness.grad is None and not loss.segmenter.network.sharpness.requires_grad
    loss.train()
    assert not loss.segmenter.training

