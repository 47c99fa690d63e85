import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    from e2train.torch import data
    return data.load("digits")


@pytest.fixture
def tiny(digits):
    """The first 128 digits: enough for a few batches."""
    from e2train.torch.data import Data
    return Data("digits", digits.x_train[:128], digits.y_train[:128], digits.x_test[:64], digits.y_test[:64])
