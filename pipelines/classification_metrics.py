"""Metrics and tables for any classifier that outputs class probabilities (images, text)."""

import numpy as np
import pandas as pd


def classification_metrics(y_true, proba, n_classes):
    """accuracy and macro-F1 always; top-5 accuracy above five classes; for two classes ROC AUC
    and ``positive_f1``, the F1 of class 1 (the class ROC AUC scores: spam, malignant), which
    accuracy hides when that class is rare."""
    from sklearn import metrics

    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    y_pred = proba.argmax(axis=1)
    result = {"accuracy": float(metrics.accuracy_score(y_true, y_pred)),
              "macro_f1": float(metrics.f1_score(y_true, y_pred, average="macro",
                                                 labels=np.arange(n_classes), zero_division=0))}
    if n_classes > 5:
        result["top5_accuracy"] = float(metrics.top_k_accuracy_score(
            y_true, proba, k=5, labels=np.arange(n_classes)))
    if n_classes == 2:
        result["positive_f1"] = float(metrics.precision_recall_fscore_support(
            y_true, y_pred, labels=[1], zero_division=0)[2][0])
        result["roc_auc"] = (float(metrics.roc_auc_score(y_true, proba[:, 1]))
                             if len(np.unique(y_true)) == 2 else float("nan"))
    return result


def per_class_table(y_true, y_pred, class_names):
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(len(class_names)), zero_division=0)
    return pd.DataFrame({"class": list(class_names), "precision": precision.round(4),
                         "recall": recall.round(4), "f1": f1.round(4), "support": support})


def confusion(y_true, y_pred, n_classes):
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def roc_points(y_true, scores):
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y_true, scores)
    return fpr, tpr, float(roc_auc_score(y_true, scores))
