"""GAN trainers: they learn, resume exactly where they stopped, and train identically across DDP ranks."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.handlers import CheckpointLoader, CheckpointSaver
from monai.networks.nets import PatchDiscriminator
from monai.utils import set_determinism

from synthmr.engines import LatentGanTrainer, PairedGanTrainer, on_images
from synthmr.losses import AdversarialLoss

HERE = Path(__file__).parent


def paired_data(n=8, size=16):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, size, size, generator=g)
    # The target is a fixed, learnable function of the condition.
    return [{"image": x, "target": 1.0 - x} for x in images]


def make_paired_trainer(max_epochs, handlers=()):
    set_determinism(0)
    generator = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))
    discriminator = PatchDiscriminator(spatial_dims=2, num_layers_d=1, channels=4, in_channels=2, norm="INSTANCE")
    loader = torch.utils.data.DataLoader(paired_data(), batch_size=2, shuffle=False)
    g_opt = torch.optim.Adam(generator.parameters(), 2e-3, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(discriminator.parameters(), 2e-3, betas=(0.5, 0.999))
    trainer = PairedGanTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=loader,
        generator=generator,
        discriminator=discriminator,
        g_optimizer=g_opt,
        d_optimizer=d_opt,
        adversarial_loss=AdversarialLoss("lsgan"),
        loss_terms={"l1": (100.0, on_images(torch.nn.L1Loss()))},
        train_handlers=list(handlers),
    )
    save_dict = {"generator": generator, "discriminator": discriminator, "g_opt": g_opt, "d_opt": d_opt,
                 "trainer": trainer}
    return trainer, save_dict


def test_paired_trainer_learns_the_mapping():
    trainer, _ = make_paired_trainer(max_epochs=15)
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["l1"]))
    trainer.run()
    assert set(trainer.state.output) >= {"loss", "g_loss", "d_loss", "g_adv", "l1"}
    assert sum(losses[-4:]) / 4 < 0.5 * sum(losses[:4]) / 4


def test_paired_trainer_adds_discriminator_terms_and_keeps_named_outputs():
    """A two-head D (named-tuple output): the adversarial loss reads one head, a D term trains the other."""
    from typing import NamedTuple

    class Heads(NamedTuple):
        realism: torch.Tensor
        extra: torch.Tensor

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = torch.nn.Conv2d(2, 4, 3, padding=1)
            self.extra = torch.nn.Conv2d(4, 1, 1)

        def forward(self, x):
            features = self.trunk(x)
            return Heads(features.mean(1, keepdim=True), self.extra(features))

    set_determinism(0)
    generator = torch.nn.Conv2d(1, 1, 3, padding=1)
    discriminator = TwoHeads()
    seen = {}

    def extra_term(d_real, d_fake, batch):
        seen["types"] = (type(d_real), type(d_fake))
        return d_real.extra.pow(2).mean()

    def feature_term(step):
        seen["step"] = type(step.d_real)
        return step.d_fake.extra.abs().mean()

    adversarial = AdversarialLoss("lsgan")
    trainer = PairedGanTrainer(
        "cpu", 3, torch.utils.data.DataLoader(paired_data(), batch_size=4), generator, discriminator,
        torch.optim.Adam(generator.parameters(), 1e-3), torch.optim.Adam(discriminator.parameters(), 1e-2),
        lambda out, real, for_d: adversarial(out.realism, real, for_d),
        loss_terms={"extra": (1.0, feature_term)},
        d_loss_terms={"extra_sq": (5.0, extra_term)},
    )
    values = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: values.append(e.state.output["d_extra_sq"]))
    trainer.run()
    assert seen["types"] == (Heads, Heads) and seen["step"] is Heads
    assert values[-1] < values[0]  # the D term trains the extra head (its square is driven to zero)


def test_resume_continues_from_saved_epoch_with_identical_state(tmp_path):
    straight, straight_dict = make_paired_trainer(max_epochs=4)
    straight.run()

    first, first_dict = make_paired_trainer(max_epochs=2)
    CheckpointSaver(str(tmp_path), first_dict, save_final=True, final_filename="last.pt").attach(first)
    first.run()
    saved = torch.load(tmp_path / "last.pt", weights_only=False)

    resumed, resumed_dict = make_paired_trainer(max_epochs=4)
    CheckpointLoader(str(tmp_path / "last.pt"), resumed_dict).attach(resumed)
    seen = {}

    @resumed.on(Events.EPOCH_STARTED)
    def record(engine):
        seen.setdefault("epochs", []).append(engine.state.epoch)
        if "g_opt" not in seen:  # right after loading, before any new step
            seen["g_opt"] = copy.deepcopy(engine.g_optimizer.state_dict())

    resumed.run()
    assert seen["epochs"] == [3, 4]
    for key, value in saved["g_opt"]["state"][0].items():
        assert torch.equal(torch.as_tensor(seen["g_opt"]["state"][0][key]), torch.as_tensor(value))
    # Stopping and resuming changes nothing: the weights equal those of an uninterrupted run.
    for a, b in zip(straight_dict["generator"].parameters(), resumed_dict["generator"].parameters()):
        torch.testing.assert_close(a, b)


class TinyConditionalGenerator(torch.nn.Module):
    def __init__(self, latent_dim=8, classes=2):
        super().__init__()
        self.embed = torch.nn.Embedding(classes, latent_dim)
        self.net = torch.nn.Linear(latent_dim, 16)

    def forward(self, z, labels):
        return self.net(z * self.embed(labels)).view(-1, 1, 4, 4)


class TinyCritic(torch.nn.Module):
    def __init__(self, classes=2):
        super().__init__()
        self.embed = torch.nn.Embedding(classes, 16)
        self.net = torch.nn.Linear(16, 1)

    def forward(self, x, labels):
        return self.net(x.flatten(1) * self.embed(labels))


def make_wgan(n_critic=3, clip=0.01, gp=0.0, iterations=6):
    set_determinism(0)
    data = [{"image": torch.rand(1, 4, 4), "class": torch.tensor(i % 2)} for i in range(2 * iterations)]
    g, d = TinyConditionalGenerator(), TinyCritic()
    return LatentGanTrainer(
        device="cpu",
        max_epochs=1,
        train_data_loader=torch.utils.data.DataLoader(data, batch_size=2),
        generator=g,
        discriminator=d,
        g_optimizer=torch.optim.RMSprop(g.parameters(), lr=5e-5),
        d_optimizer=torch.optim.RMSprop(d.parameters(), lr=5e-2),
        adversarial_loss=AdversarialLoss("wasserstein"),
        latent_dim=8,
        class_key="class",
        n_critic=n_critic,
        clip_value=clip,
        gradient_penalty_weight=gp,
    )


def test_wgan_clips_weights_and_updates_generator_every_n_critic():
    trainer = make_wgan(n_critic=3, clip=0.01)
    g_steps = []
    g_before = [p.clone() for p in trainer.generator.parameters()]

    @trainer.on(Events.ITERATION_COMPLETED)
    def record(engine):
        g_steps.append(not all(torch.equal(a, b) for a, b in zip(g_before, engine.generator.parameters())))
        g_before[:] = [p.clone() for p in engine.generator.parameters()]

    trainer.run()
    assert g_steps == [False, False, True, False, False, True]
    assert all(p.abs().max() <= 0.01 + 1e-7 for p in trainer.discriminator.parameters())


def test_wgan_gp_runs_without_clipping():
    trainer = make_wgan(n_critic=1, clip=None, gp=10.0, iterations=2)
    trainer.run()
    assert torch.isfinite(torch.tensor(trainer.state.output["d_loss"]))
    assert any(p.abs().max() > 0.01 for p in trainer.discriminator.parameters())


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(HERE / "ddp_paired_worker.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    initial = torch.load(tmp_path / "initial.pt")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0)  # it really trained


def test_checkpoint_selection_evaluates_on_interval_and_last_epoch_and_keeps_the_best_weights(tmp_path):
    import json

    from ignite.engine import Engine

    from synthmr.engines import CheckpointSelection

    class Scripted(CheckpointSelection):
        """Scores fixed in advance per epoch; lower is better."""

        score_name = "loss"
        scores = {2: 0.5, 4: 0.2, 5: 0.9}

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.history = {}

        def evaluate(self, engine, generator, folder):
            self.history[folder.name] = self.scores[engine.state.epoch]
            return {"loss": self.history[folder.name]}

        def ranking(self):
            return sorted(self.history.items(), key=lambda item: item[1])

    generator = torch.nn.Linear(1, 1)
    engine = Engine(lambda engine, batch: torch.nn.init.constant_(generator.weight, float(engine.state.epoch)))
    selection = Scripted(generator, tmp_path / "validation", tmp_path / "best.pt", interval=2)
    selection.attach(engine)
    engine.run([0], max_epochs=5)

    assert list(selection.history) == ["epoch_0002", "epoch_0004", "epoch_0005"]  # every 2nd epoch and the last
    assert torch.load(tmp_path / "best.pt", weights_only=True)["weight"].item() == 4.0  # epoch 4's weights
    ranking = json.loads((tmp_path / "validation" / "selection.json").read_text())
    assert ranking["best"] == "epoch_0004"
    assert [entry["epoch"] for entry in ranking["ranking"]] == ["epoch_0004", "epoch_0002", "epoch_0005"]


def test_kid_selection_of_a_3d_generator_compares_axial_slices_around_the_centre(tmp_path, monkeypatch):
    """A volumetric generator's validation KID is taken on the axial slices around each volume's centre: a
    generator wrong only far from the centre scores like a perfect one on KID, not on L1."""
    import types

    from feature_stubs import MomentFeatures

    import synthmr.metrics.extractors as extractors
    from synthmr.engines.selection import PooledKidSelection

    monkeypatch.setattr(extractors, "get_extractor", lambda name, weights=None: MomentFeatures())
    monkeypatch.setattr(extractors, "describe_extractor", lambda module: "moments")
    g = torch.Generator().manual_seed(0)
    items = [{"image": torch.rand(2, 8, 8, 12, generator=g) * 2 - 1} for _ in range(4)]
    for item in items:
        item["target"] = item["image"].clone()

    class WrongAtTheEnds(torch.nn.Module):
        def forward(self, x):
            out = x.clone()
            out[..., :3] = -1.0
            out[..., -3:] = 1.0
            return out

    selection = PooledKidSelection(torch.nn.Identity(), items, lambda item: item, tmp_path / "w", tmp_path / "best.pt",
                                   channels=["a", "b"], n_bootstrap=0, axial_slices=5)
    engine = types.SimpleNamespace(state=types.SimpleNamespace(epoch=1, device="cpu"))
    perfect = selection.evaluate(engine, torch.nn.Identity(), tmp_path / "epoch_1")
    ends = selection.evaluate(engine, WrongAtTheEnds(), tmp_path / "epoch_2")
    report = json.loads((tmp_path / "epoch_2" / "report.json").read_text())
    assert report["n_images_per_set"] == 4 * 5 * 2  # cases x slices x channels, pooled
    assert ends["kid"] == pytest.approx(perfect["kid"]) and ends["l1"] > perfect["l1"] == 0.0


def test_a_training_set_smaller_than_one_batch_is_refused_not_skipped():
    """drop_last with fewer items than a batch: MONAI would warn and skip every epoch, leaving untrained weights."""
    from synthmr.errors import InputError

    data = [{"image": torch.rand(1, 4, 4), "class": torch.tensor(0)} for _ in range(3)]
    g, d = TinyConditionalGenerator(), TinyCritic()
    with pytest.raises(InputError, match="3 training items make no full batch of 4"):
        LatentGanTrainer(
            device="cpu", max_epochs=1,
            train_data_loader=torch.utils.data.DataLoader(data, batch_size=4, drop_last=True),
            generator=g, discriminator=d, g_optimizer=torch.optim.RMSprop(g.parameters()),
            d_optimizer=torch.optim.RMSprop(d.parameters()), adversarial_loss=AdversarialLoss("wasserstein"),
            latent_dim=8, class_key="class",
        )
