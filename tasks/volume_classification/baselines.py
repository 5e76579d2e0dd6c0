"""The size rule: nodule size alone is very predictive on LIDC (a known shortcut), so a network
on the voxels has to beat one threshold on the diameter, fitted on the training split."""

import numpy as np

from pipelines.classification_metrics import classification_metrics


def size_rule(train_diameter, y_train, test_diameter, y_test, n_classes):
    """The threshold on ``diameter`` (class 1 at or above it) with the best training accuracy;
    its metrics on the test split. Two classes only; the rule's AUC ranks by diameter itself."""
    train_diameter, y_train = np.asarray(train_diameter, float), np.asarray(y_train)
    candidates = np.unique(train_diameter)
    accuracy = [np.mean((train_diameter >= t) == (y_train == 1)) for t in candidates]
    threshold = float(candidates[int(np.argmax(accuracy))])
    scores = np.asarray(test_diameter, float)
    proba = np.zeros((len(scores), n_classes))
    proba[:, 1] = (scores >= threshold) * 0.5 + 0.5 * (scores - scores.min()) / max(np.ptp(scores), 1e-9)
    proba[:, 0] = 1 - proba[:, 1]
    return {"name": f"diameter_rule (>= {threshold:.1f} mm)",
            "metrics": classification_metrics(np.asarray(y_test), proba, n_classes)}
