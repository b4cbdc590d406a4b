"""CycleGanTrainer and its image pool on toy tensors: losses, unpairing, frozen discriminators, clear errors."""

import math

import pytest
import torch
from ignite.engine import Events
from monai.utils import set_determinism

from synthmr.engines import CycleGanTrainer
from synthmr.engines.cycle import ImagePool
from synthmr.errors import InputError
from synthmr.losses import AdversarialLoss


def toy_data(n=8, size=8, a_channels=1, b_channels=1):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, a_channels, size, size, generator=g) * 2 - 1
    # Domain B is a learnable (pointwise linear) function of A, so a cycle through 1x1 convolutions can close.
    b = (0.5 * a[:, :1]).repeat(1, b_channels, 1, 1)
    return [{"image": x, "target": y} for x, y in zip(a, b)]


def toy_discriminator(channels):
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 4, 3, stride=2, padding=1),
        torch.nn.LeakyReLU(0.2),
        torch.nn.Conv2d(4, 1, 3, padding=1),
    )


class Recording(torch.nn.Module):
    """A 1x1 convolution that keeps a copy of every input it sees."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, out_channels, 1)
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return self.conv(x)


def make_trainer(
    data=None,
    batch_size=2,
    max_epochs=1,
    epoch_length=None,
    generator=None,
    inverse_generator=None,
    d_optimizer=None,
    lr=2e-4,
    a_channels=1,
    b_channels=1,
    **kwargs,
):
    set_determinism(0)
    data = toy_data(a_channels=a_channels, b_channels=b_channels) if data is None else data
    g = generator or torch.nn.Conv2d(a_channels, b_channels, 1)
    f = inverse_generator or torch.nn.Conv2d(b_channels, a_channels, 1)
    d_b, d_a = toy_discriminator(b_channels), toy_discriminator(a_channels)
    g_opt = torch.optim.Adam([*g.parameters(), *f.parameters()], lr, betas=(0.5, 0.999))
    d_opt = d_optimizer(d_b, d_a) if d_optimizer else torch.optim.Adam([*d_b.parameters(), *d_a.parameters()], lr)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    return CycleGanTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=loader,
        generator=g,
        inverse_generator=f,
        discriminator=d_b,
        inverse_discriminator=d_a,
        g_optimizer=g_opt,
        d_optimizer=d_opt,
        adversarial_loss=AdversarialLoss("lsgan"),
        epoch_length=epoch_length,
        **kwargs,
    )


def test_one_epoch_gives_finite_losses_with_the_expected_keys():
    trainer = make_trainer()
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(e.state.output))
    trainer.run()
    assert len(outputs) == 4  # 8 items in batches of 2
    for output in outputs:
        assert set(output) == {"loss", "g_loss", "d_loss", "g_adv", "cycle"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in output.values())
        assert output["loss"] == output["g_loss"] == pytest.approx(output["g_adv"] + 10.0 * output["cycle"])
    # With the identity term its value joins the output, weighted identity_weight * cycle_weight in the loss.
    trainer = make_trainer(identity_weight=0.5, epoch_length=1)
    trainer.run()
    output = trainer.state.output
    assert set(output) == {"loss", "g_loss", "d_loss", "g_adv", "cycle", "identity"}
    assert output["g_loss"] == pytest.approx(output["g_adv"] + 10.0 * output["cycle"] + 5.0 * output["identity"])


def test_domain_b_is_rolled_by_one_item_so_no_pair_meets():
    data = toy_data(n=3)
    f = Recording(1, 1)
    trainer = make_trainer(data=data, batch_size=3, inverse_generator=f, epoch_length=1)
    trainer.run()
    b = torch.stack([item["target"] for item in data])
    # F sees the real B batch (for fake_a) and G's output (for the cycle); the real one arrives rolled.
    assert any(torch.equal(x, torch.roll(b, 1, dims=0)) for x in f.inputs)
    assert not any(torch.equal(x, b) for x in f.inputs)
    # unpair=False hands the batch over as it comes.
    f = Recording(1, 1)
    make_trainer(data=data, batch_size=3, inverse_generator=f, epoch_length=1, unpair=False).run()
    assert any(torch.equal(x, b) for x in f.inputs)


def test_unpairing_a_batch_of_one_is_a_clear_error():
    with pytest.raises(InputError, match="unpair=True needs batches of at least 2"):
        make_trainer(batch_size=1, epoch_length=1).run()
    make_trainer(batch_size=1, epoch_length=1, unpair=False).run()  # without unpairing a batch of 1 trains


def test_identity_loss_with_unequal_channel_counts_is_a_clear_error():
    with pytest.raises(InputError, match=r"equal channel counts; got 2 and 3"):
        make_trainer(a_channels=2, b_channels=3, identity_weight=0.5, epoch_length=1).run()
    make_trainer(a_channels=2, b_channels=3, epoch_length=1).run()  # without the identity term they train


def test_discriminators_get_no_gradient_from_the_generator_step():
    seen = {}

    class SpySGD(torch.optim.SGD):
        """The discriminators' optimiser: its zero_grad opens the D step, right after the G step."""

        def zero_grad(self, set_to_none=True):
            seen["grads"] = [p.grad for group in self.param_groups for p in group["params"]]
            seen["requires_grad"] = [p.requires_grad for group in self.param_groups for p in group["params"]]
            super().zero_grad(set_to_none=set_to_none)

    trainer = make_trainer(
        epoch_length=1, d_optimizer=lambda d_b, d_a: SpySGD([*d_b.parameters(), *d_a.parameters()], lr=0.1)
    )
    d_params = [*trainer.discriminator.parameters(), *trainer.inverse_discriminator.parameters()]
    before = [p.detach().clone() for p in d_params]
    g_before = [p.detach().clone() for p in trainer.generator.parameters()]
    trainer.run()
    assert seen["grads"] and all(grad is None for grad in seen["grads"])  # nothing from the G step
    assert all(seen["requires_grad"])  # unfrozen again for their own step
    # ... which then did train them, as the G step trained G.
    assert all(p.grad is not None for p in d_params)
    assert any(not torch.equal(p, q) for p, q in zip(d_params, before))
    assert any(not torch.equal(p, q) for p, q in zip(trainer.generator.parameters(), g_before))


def cycle_losses(cycle_weight):
    trainer = make_trainer(batch_size=4, max_epochs=25, lr=5e-2, cycle_weight=cycle_weight)  # 50 iterations
    cycles = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: cycles.append(e.state.output["cycle"]))
    trainer.run()
    assert len(cycles) == 50
    return sum(cycles[:10]) / 10, sum(cycles[-10:]) / 10


def test_cycle_loss_falls_on_a_learnable_toy_problem():
    first, last = cycle_losses(10.0)
    assert last < 0.25 * first
    # The fall is the cycle term's doing: the adversarial terms alone leave the cycle far from closed.
    _, last_without = cycle_losses(0.0)
    assert last < 0.5 * last_without


def pool_outputs(pool, n=40):
    """Query ``pool`` with n batches of 2 distinct constant images; the values it returns."""
    returned = []
    for i in range(n):
        batch = torch.tensor([2.0 * i, 2.0 * i + 1]).view(2, 1, 1, 1).expand(2, 1, 3, 3)
        out = pool(batch)
        assert out.shape == batch.shape
        returned.append([float(x[0, 0, 0]) for x in out])
    return returned


def test_pool_swaps_in_stored_images_reproducibly():
    returned = pool_outputs(ImagePool(size=4, seed=7))
    flat = [v for pair in returned for v in pair]
    assert flat[:4] == [0.0, 1.0, 2.0, 3.0]  # filling up: each image comes back as it is
    queried = list(range(len(flat)))
    older = [i for i, (v, q) in enumerate(zip(flat, queried)) if v != q]
    # Once full, about half the images are swapped for earlier ones. An image stored while the pool filled up was
    # returned then and may come back once more; any later image comes back once, now or from the pool.
    assert all(flat[i] < i for i in older) and 0.3 < len(older) / (len(flat) - 4) < 0.7
    assert all(flat.count(v) <= (2 if v < 4 else 1) for v in flat)
    # The same seed gives the same draws; another seed other draws; size 0 returns the input.
    assert pool_outputs(ImagePool(size=4, seed=7)) == returned
    assert pool_outputs(ImagePool(size=4, seed=8)) != returned
    assert [v for pair in pool_outputs(ImagePool(size=0)) for v in pair] == [float(i) for i in queried]


def test_pool_size_must_be_a_non_negative_integer():
    with pytest.raises(InputError, match="non-negative integer"):
        ImagePool(size=-1)
