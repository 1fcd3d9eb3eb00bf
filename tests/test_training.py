"""hw2/training.py: the seed's overfit run on the offline data, and the trainer's contract."""

import itertools

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cs236781.data import load_cifar10
from hw2.answers import part4_optim_hp
from hw2.classifier import ArgMaxClassifier
from hw2.cnn import CNN
from hw2.training import ClassifierTrainer

# The seed's In [6]: 25 epochs of 25 batches of 2 images, best accuracy at least 90%.
SEED, BATCH_SIZE, MAX_BATCHES, EPOCHS, MIN_ACCURACY = 42, 2, 25, 25, 90
OVERFIT_CNN = dict(
    channels=[32],
    pool_every=1,
    hidden_dims=[100],
    conv_params=dict(kernel_size=3, stride=1, padding=1),
    pooling_params=dict(kernel_size=2),
)


def test_overfit_arguments_are_the_seeds(seed_cells, seed_call):
    code = seed_cells[6]
    args, kwargs = seed_call(code, "CNN", in_size="in_size", num_classes="num_classes")
    assert args == ("in_size", "num_classes") and kwargs == OVERFIT_CNN
    for line in (
        f"batch_size = {BATCH_SIZE}",
        f"max_batches = {MAX_BATCHES}",
        f"for i in range({EPOCHS}):",
        f"test.assertGreaterEqual(best_acc, {MIN_ACCURACY})",
        "shuffle=False",
    ):
        assert line in code


@pytest.mark.slow  # a few seconds alone, over ten on a busy machine
def test_seed_overfit_run_on_offline_data():
    ds_train, _ = load_cifar10(offline=True)
    torch.manual_seed(SEED)
    dl_train = DataLoader(ds_train, BATCH_SIZE, shuffle=False)
    in_size = ds_train[0][0].shape
    model = ArgMaxClassifier(model=CNN(in_size, 10, **OVERFIT_CNN))
    hp_optim = part4_optim_hp()
    loss_fn = hp_optim.pop("loss_fn")
    optimizer = torch.optim.SGD(params=model.parameters(), **hp_optim)
    trainer = ClassifierTrainer(model, loss_fn, optimizer, "cpu")

    accuracies = [
        trainer.train_epoch(dl_train, max_batches=MAX_BATCHES, verbose=False).accuracy
        for _ in range(EPOCHS)
    ]
    assert max(accuracies) >= MIN_ACCURACY
    assert accuracies[0] < MIN_ACCURACY, "the first epoch sees the images for the first time"


# --- A tiny problem for the trainer's contract --------------------------------------------


def tiny_data(n: int = 24, seed: int = 0) -> TensorDataset:
    """Two well separated classes of (1, 4, 4) images."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 1, 4, 4, generator=g) * 0.3 + (2.0 * y - 1.0).view(-1, 1, 1, 1)
    return TensorDataset(x, y)


def tiny_trainer(lr: float = 0.1, batchnorm_dropout: bool = False) -> ClassifierTrainer:
    torch.manual_seed(0)
    layers = [nn.Flatten(), nn.Linear(16, 8)]
    if batchnorm_dropout:
        layers += [nn.BatchNorm1d(8), nn.Dropout(0.5)]
    layers += [nn.ReLU(), nn.Linear(8, 2)]
    model = ArgMaxClassifier(nn.Sequential(*layers))
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return ClassifierTrainer(model, nn.CrossEntropyLoss(), optimizer)


def loader(ds=None, batch_size: int = 4) -> DataLoader:
    return DataLoader(tiny_data() if ds is None else ds, batch_size, shuffle=False)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_fit_learns_and_reports_every_epoch():
    trainer = tiny_trainer()
    seen = []
    fit = trainer.fit(
        loader(),
        loader(tiny_data(seed=1)),
        num_epochs=4,
        print_every=0,
        post_epoch_fn=lambda epoch, train, test, verbose: seen.append(epoch),
    )
    assert fit.num_epochs == 4 and seen == [0, 1, 2, 3]
    assert all(len(v) == 4 for v in (fit.train_loss, fit.train_acc, fit.test_loss, fit.test_acc))
    assert fit.test_acc[-1] == 100.0 and fit.train_loss[-1] < fit.train_loss[0]


def test_fit_writes_a_checkpoint(tmp_path):
    trainer = tiny_trainer()
    checkpoints = tmp_path / "runs" / "best"
    trainer.fit(loader(), loader(), num_epochs=1, checkpoints=str(checkpoints), print_every=0)
    saved = torch.load(f"{checkpoints}.pt", weights_only=True)
    current = trainer.model.state_dict()
    assert saved.keys() == current.keys()
    assert all(torch.equal(saved[k], current[k]) for k in saved)


def test_early_stopping_stops_when_the_test_loss_stalls():
    trainer = tiny_trainer(lr=0.0)  # nothing changes: the test loss never improves again
    fit = trainer.fit(loader(), loader(), num_epochs=10, early_stopping=2, print_every=0)
    assert fit.num_epochs == 3 and len(fit.test_loss) == 3
    assert fit.test_loss[0] == fit.test_loss[1] == fit.test_loss[2]


def test_early_stopping_lets_an_improving_run_finish():
    fit = tiny_trainer().fit(loader(), loader(), num_epochs=5, early_stopping=2, print_every=0)
    assert fit.num_epochs == 5


def test_test_epoch_changes_nothing():
    trainer = tiny_trainer(batchnorm_dropout=True)
    before = snapshot(trainer.model)
    result = trainer.test_epoch(loader(), verbose=False)
    after = snapshot(trainer.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in trainer.model.parameters())
    assert len(result.losses) == 6


def test_test_epoch_is_deterministic_and_train_epoch_is_not():
    trainer = tiny_trainer(batchnorm_dropout=True)
    first = trainer.test_epoch(loader(), verbose=False)
    assert trainer.test_epoch(loader(), verbose=False) == first
    trainer.train_epoch(loader(), verbose=False)
    assert trainer.test_epoch(loader(), verbose=False).losses != first.losses


def test_train_batch_reports_the_loss_before_the_step():
    trainer = tiny_trainer()
    x, y = next(iter(loader()))
    with torch.no_grad():
        expected = nn.functional.cross_entropy(trainer.model(x), y).item()
    result = trainer.train_batch((x, y))
    assert result.loss == pytest.approx(expected, rel=1e-6)
    assert 0 <= result.num_correct <= len(y)


class CountingIterable:
    """Batches from a loader, counting how many were drawn; it has no ``__len__``."""

    def __init__(self, batches):
        self.batches, self.drawn = list(batches), 0

    def __iter__(self):
        for batch in self.batches:
            self.drawn += 1
            yield batch


@pytest.mark.parametrize("epoch", ["train_epoch", "test_epoch"])
def test_max_batches_is_honoured(epoch):
    trainer = tiny_trainer()
    batches = CountingIterable(loader())
    steps = []
    trainer.optimizer.register_step_post_hook(lambda *args: steps.append(1))
    result = getattr(trainer, epoch)(batches, max_batches=3, verbose=False)
    assert len(result.losses) == 3
    assert batches.drawn == 3, "no batch is loaded beyond max_batches"
    assert len(steps) == (3 if epoch == "train_epoch" else 0)


def test_a_loader_without_len_works():
    trainer = tiny_trainer()
    batches = CountingIterable(loader())
    assert not hasattr(batches, "__len__")
    result = trainer.train_epoch(batches, verbose=True)
    assert len(result.losses) == 6 and batches.drawn == 6
    gen = (batch for batch in itertools.islice(loader(), 4))
    assert len(trainer.test_epoch(gen, verbose=True).losses) == 4


def test_accuracy_counts_only_the_samples_seen():
    trainer = tiny_trainer()
    ds = tiny_data()
    x, y = ds.tensors
    with torch.no_grad():
        correct = (trainer.model.classify(x[:8]) == y[:8]).sum().item()
    result = trainer.test_epoch(loader(ds), max_batches=2, verbose=False)
    assert result.accuracy == pytest.approx(100.0 * correct / 8)
