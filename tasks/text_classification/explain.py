"""Which n-grams drove a text CNN's decisions: the windows that win the max-over-time pooling.

For a message, channel ``j`` of the sentence vector is the maximum of the feature map over
positions; the winning position ``i`` and the channel's span ``(left, right)`` name the n-gram
``tokens[i-left .. i+right]``. Its contribution to class ``c`` is ``sentence_j * d logit_c /
d sentence_j`` (exact for a linear head, a first-order estimate otherwise). Summing
contributions over the tokens each window covers gives per-token weights for highlighting.
"""

import collections
from dataclasses import dataclass

import numpy as np

from pipelines.backbones import BACKBONE_LAYER_NAME, BACKBONES
from pipelines.heads import HEAD_LAYER_NAME

TOKENIZER_LAYER_NAME = "tokenizer"


@dataclass
class Explanation:
    tokens: list  # per message: the tokens the model saw
    ngrams: list  # per message: [(ngram string, contribution to the predicted class)], strongest first
    token_weights: list  # per message: one weight per token (toward the predicted class)
    predicted: np.ndarray


def channel_spans(backbone_name, options, channels):
    spans = BACKBONES.entry(backbone_name).meta.get("spans")
    if spans is None:
        return np.zeros((channels, 2), int)
    result = np.asarray(spans(**options), int)
    return result if len(result) == channels else np.zeros((channels, 2), int)


def explain(model, texts, backbone_name, backbone_options, *, top=5, batch_size=256):
    import tensorflow as tf

    from pipelines.tokenizer import token_strings

    tokenizer = model.get_layer(TOKENIZER_LAYER_NAME)
    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    head = model.get_layer(HEAD_LAYER_NAME)
    texts = np.asarray(texts, dtype=object)
    tokens = token_strings(tokenizer, texts)
    spans = None
    ngrams, weights, predicted = [], [], []
    for start in range(0, len(texts), batch_size):
        ids = tokenizer(tf.constant(texts[start:start + batch_size].astype(str)))
        outputs = backbone(ids, training=False)
        features, sentence = outputs["features"].numpy(), outputs["sentence"]
        with tf.GradientTape() as tape:
            tape.watch(sentence)
            logits = head(sentence, training=False)
            classes = tf.argmax(logits, axis=1)
            score = tf.reduce_sum(tf.gather(logits, classes, batch_dims=1))
        contributions = (tape.gradient(score, sentence) * sentence).numpy()
        if spans is None:
            spans = channel_spans(backbone_name, backbone_options, features.shape[-1])
        winners = features.argmax(axis=1)  # (batch, channels)
        for row, message_tokens in enumerate(tokens[start:start + batch_size]):
            found, token_weight = _message(message_tokens, winners[row], contributions[row], spans, top)
            ngrams.append(found)
            weights.append(token_weight)
        predicted += classes.numpy().tolist()
    return Explanation(tokens, ngrams, weights, np.asarray(predicted))


def _message(tokens, winners, contributions, spans, top):
    n = len(tokens)
    token_weight = np.zeros(n)
    by_ngram = collections.defaultdict(float)
    for channel in np.flatnonzero(contributions):
        position = winners[channel]
        if position >= n:
            continue
        low, high = max(0, position - spans[channel, 0]), min(n, position + spans[channel, 1] + 1)
        token_weight[low:high] += contributions[channel] / (high - low)
        by_ngram[" ".join(tokens[low:high])] += contributions[channel]
    ranked = sorted(by_ngram.items(), key=lambda kv: -kv[1])[:top]
    return [(g, float(w)) for g, w in ranked if w > 0], token_weight.tolist()


def top_ngrams_per_class(explanation, class_names, *, per_class=10, truth=None):
    """Rows (class, n-gram, total contribution, messages) over correctly predicted messages."""
    import pandas as pd

    rows = []
    for c, name in enumerate(class_names):
        totals, counts = collections.defaultdict(float), collections.Counter()
        for i, found in enumerate(explanation.ngrams):
            if explanation.predicted[i] != c or (truth is not None and truth[i] != c):
                continue
            for gram, weight in found:
                totals[gram] += weight
                counts[gram] += 1
        for gram, total in sorted(totals.items(), key=lambda kv: -kv[1])[:per_class]:
            rows.append({"class": name, "n-gram": gram, "total contribution": round(total, 3),
                         "messages": counts[gram]})
    return pd.DataFrame(rows, columns=["class", "n-gram", "total contribution", "messages"])
