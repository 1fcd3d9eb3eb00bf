"""hw2/classifier.py: probabilities and predictions, and the seed's cell In [4]."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hw2.classifier import ArgMaxClassifier
from hw2.cnn import CNN
from tools.asset_specs import CNN_TEST_PARAMS, SEED


def linear_classifier(in_dim: int, classes: int) -> ArgMaxClassifier:
    torch.manual_seed(0)
    return ArgMaxClassifier(nn.Linear(in_dim, classes))


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 6), st.integers(1, 8), st.integers(1, 7), st.floats(0.1, 50.0))
def test_probabilities_and_predictions(n, in_dim, classes, scale):
    model = linear_classifier(in_dim, classes)
    x = scale * torch.randn(n, in_dim, generator=torch.Generator().manual_seed(n))
    scores = model(x)
    proba = model.predict_proba(x)
    assert scores.shape == proba.shape == (n, classes)
    assert (proba >= 0).all()
    torch.testing.assert_close(proba.sum(dim=1), torch.ones(n))
    torch.testing.assert_close(proba, torch.softmax(scores, dim=1))

    labels = model.classify(x)
    assert labels.shape == (n,) and labels.dtype == torch.long
    assert torch.equal(labels, torch.argmax(scores, dim=1))
    assert torch.equal(model.classify_scores(scores), labels)


def test_argmax_picks_the_largest_score():
    model = ArgMaxClassifier(nn.Identity())
    scores = torch.tensor([[0.1, 3.0, -1.0], [5.0, 4.0, 4.5], [-2.0, -3.0, -1.0]])
    assert model.classify(scores).tolist() == torch.argmax(scores, dim=1).tolist()


def test_seed_cell_4():
    # In [4]: a CNN of test 0 wrapped in the classifier, on one image of pixel values
    torch.manual_seed(SEED)
    model = ArgMaxClassifier(model=CNN(**CNN_TEST_PARAMS[0]))
    image = torch.randint(low=0, high=256, size=(3, 100, 100), dtype=torch.float).unsqueeze(0)
    assert model.classify(image).shape == (1,)
    assert model.predict_proba(image).shape == (1, 10)
    assert abs(torch.sum(model.predict_proba(image)).item() - 1.0) <= 1e-3


def test_seed_cell_4_code_is_what_we_run(seed_cells):
    code = seed_cells[4]
    assert "ArgMaxClassifier(model=CNN(**test_params[0]))" in code
    assert "size=(3, 100, 100), dtype=torch.float" in code
