"""How useful a model's features are to a classifier: the 1-nearest-neighbour and linear-probe
test accuracies of the representation-learning literature (the BiGAN paper's 1-NN protocol: the
training split's features as memory, the test split's classified by their nearest one).

Each accuracy means little alone (a 1-NN classifier on raw MNIST pixels is already about 97%
right), so the metrics record two floors beside it: the same classifier on the raw pixels, and on
the features of an untrained network of the same model, built from the run's config with a fixed
seed.
"""

from __future__ import annotations

import torch

# Test examples compared with the whole memory at once: bounds the distance matrix's size.
_CHUNK = 1024


def knn_accuracy(
    memory: torch.Tensor, memory_labels: torch.Tensor, test: torch.Tensor, labels: torch.Tensor
) -> float:
    """The share of ``test`` rows whose nearest ``memory`` row (Euclidean) has their label."""
    memory = memory.flatten(1).double()
    correct = 0
    for start in range(0, test.shape[0], _CHUNK):
        rows = test[start : start + _CHUNK].flatten(1).double()
        nearest = torch.cdist(rows, memory).argmin(dim=1)
        correct += int((memory_labels[nearest] == labels[start : start + _CHUNK]).sum())
    return correct / test.shape[0]


def linear_accuracy(
    memory: torch.Tensor,
    memory_labels: torch.Tensor,
    test: torch.Tensor,
    labels: torch.Tensor,
    seed: int,
) -> float:
    """Test accuracy of a multinomial logistic regression (scikit-learn's, on standardised
    features) trained on the ``memory`` rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    probe.fit(memory.flatten(1).double().numpy(), memory_labels.numpy())
    return float(probe.score(test.flatten(1).double().numpy(), labels.numpy()))
