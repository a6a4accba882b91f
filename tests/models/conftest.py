"""A tiny model trained once per test session on drawn discs (seconds on a CPU)."""
import pytest

from models.training import TrainConfig, train_model
from tests.images_data import nuclei

TINY = dict(width=8, depth=2, patch=64, batch=4, lr=2e-3)


def disc_data(n: int, seed0: int = 0, shape=(96, 96)):
    pairs = [nuclei(shape=shape, n=8, seed=seed0 + s) for s in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="session")
def trained():
    images, labels = disc_data(6)
    return train_model(images, labels,
                       config=TrainConfig(**TINY, epochs=12, steps_per_epoch=20, patience=20))
