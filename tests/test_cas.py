"""Classification Accuracy Score: the classifier learns real classes, fails on scrambled labels, and is seeded."""

import numpy as np
import pytest
import torch

from pipeline.metrics.cas import LabelledImages, accuracy, classification_accuracy_score, load_labelled, train_classifier
from pipeline.metrics.sources import WorldImages

CLASSES = ("circle", "star", "cross")


def shapes_set(world, split, n):
    data = load_labelled(WorldImages(world, split, n, 32))
    keep = torch.isin(data.labels, torch.tensor([world.classes.index(c) for c in CLASSES]))
    return LabelledImages(data.images[keep], data.labels[keep])


@pytest.fixture(scope="module")
def sets(world):
    return shapes_set(world, "cas-unit-train", 1500), shapes_set(world, "cas-unit-test", 600)


@pytest.mark.slow  # trains a classifier
def test_cas_learns_real_classes(world, sets):
    train, test = sets
    out = classification_accuracy_score(train, test, len(world.classes), steps=400, seed=0, progress=False,
                                        class_names=dict(enumerate(world.classes)))
    assert out["accuracy"] >= 0.85, out
    assert set(out["per_class"]) == set(CLASSES)
    assert out["n_train"] == len(train) and out["n_test"] == len(test)


@pytest.mark.slow  # trains a classifier
def test_cas_on_scrambled_labels_is_near_chance(world, sets):
    train, test = sets
    rng = np.random.default_rng(0)
    scrambled = LabelledImages(train.images, train.labels[torch.from_numpy(rng.permutation(len(train)))])
    out = classification_accuracy_score(scrambled, test, len(world.classes), steps=150, seed=0, progress=False)
    assert out["accuracy"] < 0.6, out  # chance is 1/3


@pytest.mark.slow  # trains a classifier
def test_classifier_is_deterministic_per_seed(world, sets):
    train, test = sets
    small = LabelledImages(train.images[:200], train.labels[:200])
    a = accuracy(train_classifier(small, len(world.classes), 20, seed=3, progress=False), test)
    b = accuracy(train_classifier(small, len(world.classes), 20, seed=3, progress=False), test)
    assert a == b


def test_unlabelled_images_are_refused():
    data = [(torch.zeros(3, 8, 8, dtype=torch.uint8), -1)] * 4
    with pytest.raises(ValueError, match="label"):
        load_labelled(data)
