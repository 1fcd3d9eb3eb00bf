"""cs236781/data.py: the offline stand-in for CIFAR-10, and failing loudly without the data."""

import urllib.error

import pytest
import torch

from cs236781.data import OFFLINE_ENV, SyntheticCIFAR10, load_cifar10


@pytest.fixture
def offline_unset(monkeypatch):
    monkeypatch.delenv(OFFLINE_ENV, raising=False)


@pytest.fixture(scope="module")
def offline_datasets():
    return load_cifar10(offline=True)


def test_offline_has_cifar10s_sizes_as_the_seed_printed(seed_cells, offline_datasets):
    # In [5] printed these lines for the real CIFAR-10
    ds_train, ds_test = offline_datasets
    printed = seed_cells[5]
    assert f"Train: {len(ds_train)} samples" in printed
    assert f"Test: {len(ds_test)} samples" in printed
    assert f"input image size = {ds_train[0][0].shape}" in printed


def test_offline_samples_look_like_cifar10(offline_datasets):
    ds_train, ds_test = offline_datasets
    assert (len(ds_train), len(ds_test)) == (50_000, 10_000)
    labels = set()
    for ds in (ds_train, ds_test):
        for i in [0, 1, 2, 17, 999, len(ds) - 1, *range(100, 160)]:
            x, y = ds[i]
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32
            assert 0.0 <= x.min() and x.max() <= 1.0
            assert isinstance(y, int) and 0 <= y < 10
            labels.add(y)
    assert labels == set(range(10))
    assert len(ds_train.classes) == 10
    with pytest.raises(IndexError):
        ds_train[len(ds_train)]


def test_offline_is_deterministic_and_splits_differ():
    a, b = SyntheticCIFAR10(train=True), SyntheticCIFAR10(train=True)
    for i in (0, 5, 49_999):
        assert torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1]
    test = SyntheticCIFAR10(train=False)
    assert not torch.equal(a[0][0], test[0][0])
    assert not torch.equal(a[0][0], a[1][0])


def test_offline_is_announced(capsys):
    load_cifar10(offline=True)
    err = capsys.readouterr().err
    assert "OFFLINE DATA" in err and OFFLINE_ENV in err


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_env_var_selects_offline(monkeypatch, capsys, value):
    monkeypatch.setenv(OFFLINE_ENV, value)
    ds_train, ds_test = load_cifar10()
    assert isinstance(ds_train, SyntheticCIFAR10) and isinstance(ds_test, SyntheticCIFAR10)
    assert "OFFLINE DATA" in capsys.readouterr().err


def test_argument_overrides_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(RuntimeError, match=OFFLINE_ENV):
        load_cifar10(root=tmp_path, offline=False, download=False)


def test_missing_real_data_fails_loudly(offline_unset, tmp_path, capsys):
    with pytest.raises(RuntimeError) as error:
        load_cifar10(root=tmp_path, download=False)
    message = str(error.value)
    assert OFFLINE_ENV in message and str(tmp_path) in message
    assert "OFFLINE DATA" not in capsys.readouterr().err


def test_failed_download_fails_loudly(offline_unset, tmp_path, monkeypatch):
    # No network: torchvision's download raises as urllib does when DNS fails.
    import torchvision.datasets.cifar

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    monkeypatch.setenv(OFFLINE_ENV, "0")
    with pytest.raises(RuntimeError) as error:
        load_cifar10(root=tmp_path)
    assert OFFLINE_ENV in str(error.value) and "name resolution" in str(error.value)
    assert isinstance(error.value.__cause__, urllib.error.URLError)
