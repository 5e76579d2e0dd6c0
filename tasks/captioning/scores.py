"""Caption metrics with the COCO caption evaluation's own scorers (pycocoevalcap).

BLEU-1..4 are corpus-level (clipped n-gram precision over all test images, one brevity
penalty), CIDEr-D is the mean over images of the consensus score against all references (its
IDF comes from the test references, so it may exceed 1), ROUGE-L the mean longest-common-
subsequence F-score. Hypotheses and references are the same lower-cased, punctuation-free words
(:func:`tasks.captioning.vocabulary.words`), the role the COCO PTB tokenizer plays there.
"""

import numpy as np

from tasks.captioning.vocabulary import words

KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "cider", "rouge_l")


def _joined(texts):
    return [" ".join(row) or "<empty>" for row in words(texts)]


def _scorer_inputs(references, hypotheses):
    """pycocoevalcap's {image: [reference texts]} and {image: [hypothesis]}."""
    if len(references) != len(hypotheses) or not hypotheses:
        raise ValueError("one hypothesis per image, and at least one image")
    flat = _joined([r for refs in references for r in refs])
    gts, at = {}, 0
    for i, refs in enumerate(references):
        gts[i], at = flat[at:at + len(refs)], at + len(refs)
    return gts, {i: [h] for i, h in enumerate(_joined(hypotheses))}


def caption_scores(references, hypotheses):
    """({metric: value}, per-image CIDEr-D array) for hypotheses[i] against references[i]."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts, res = _scorer_inputs(references, hypotheses)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, per_image = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    values = [*bleu, cider, rouge]
    return {k: float(v) for k, v in zip(KEYS, values)}, np.asarray(per_image, float)


def bleu4(references, hypotheses):
    """Corpus BLEU-4 alone, as :func:`caption_scores` computes it (for scoring every epoch)."""
    from pycocoevalcap.bleu.bleu import Bleu

    gts, res = _scorer_inputs(references, hypotheses)
    return float(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
