"""Captioning: a registry backbone's feature grid, an attention RNN decoder, greedy and beam search.

Splits are by image (a dataset row is an image with all its references). Training pairs every
training image with each of its captions (teacher forcing); evaluation writes one caption per
test image and scores it against all of that image's references.
"""

import typing
from dataclasses import dataclass

import numpy as np

from pipelines import imaging
from pipelines.tokenizer import VocabularyPreprocessing
from pipelines.config import TrainConfig, option
from pipelines.errors import UserError
from pipelines.image_files import is_image_files
from pipelines.inputs import Gathered, tf_dataset
from pipelines.tasks import Task, register_task
from tasks.captioning import figures, readers, scores
from tasks.captioning import vocabulary as vocab
from tasks.captioning.decoding import CaptionWriter
from tasks.captioning.model import build_captioner, feature_level


@dataclass
class CaptioningConfig(TrainConfig):
    data: str = option("builtin:shapes", help="a COCO captions .json or a captions.txt (image,caption) "
                       "beside an images/ folder, a folder holding one, or builtin:shapes")
    epochs: int = option(12, minimum=1, help="training epochs")
    batch_size: int = option(64, minimum=1, help="(image, caption) pairs per step")
    learning_rate: float = option(2e-3, minimum=0, exclusive_min=True, help="peak learning rate")
    backbone_options: dict = option({"batch_norm": True, "widths": [16, 32, 64]},
                                    help="backbone builder arguments (defaults apply to basic_cnn only)")
    image_size: typing.Optional[int] = option(None, minimum=8,
                                              help="square input size (default: 32 for shapes, 128 for photos)")
    feature_level: str = option("auto", help="pyramid level attended over (P3, P4, P5; auto: the deepest)")
    rnn: str = option("gru", choices=("gru", "lstm"), help="decoder cell")
    embedding_dim: int = option(128, minimum=1, help="word embedding size")
    units: int = option(256, minimum=1, help="decoder state size")
    attention_units: int = option(128, minimum=1, help="additive attention size")
    feature_dim: int = option(128, minimum=1, help="annotation vectors are projected to this size")
    dropout: float = option(0.3, minimum=0, maximum=0.9, help="dropout on word embeddings and outputs")
    min_count: int = option(2, minimum=1, help="training-caption occurrences a word needs to be kept")
    max_length: int = option(20, minimum=1, help="longest caption in words (training and decoding)")
    beam_width: int = option(3, minimum=1, help="beam search width (1 = greedy); predict --set too")
    length_alpha: float = option(1.0, minimum=0, help="beam scores are log-prob / length ** alpha")


@dataclass(kw_only=True)
class CaptioningPreprocessing(VocabularyPreprocessing):
    image_size: int
    channels: int
    max_length: int  # longest caption in words, as trained (decoding stops there)
    feature_level: str = "auto"  # the pyramid level the decoder attends over


@register_task("captioning")
class Captioning(Task):
    modality = "image"
    Config = CaptioningConfig
    Preprocessing = CaptioningPreprocessing
    summary = "a sentence per image: CNN encoder + attention GRU/LSTM decoder, greedy and beam search"
    builtin_data = tuple(readers.BUILTIN)
    key_metrics = ("bleu4", "cider", "rouge_l")

    # -- data --------------------------------------------------------------------------------
    def load(self, spec, config):
        return readers.load(spec, image_size=config.image_size)

    def fit_preprocessing(self, train, config, min_size):
        captions = [c for refs in train.y for c in refs]
        vocabulary = vocab.build(captions, min_count=config.min_count)
        size = int(max(train.x.shape[1], min_size))
        notes = [f"vocabulary: {len(vocabulary) - len(vocab.SPECIAL)} words seen {config.min_count}+ "
                 f"times in the training captions cover {vocab.coverage(captions, vocabulary):.1%} of "
                 f"their words"]
        return CaptioningPreprocessing(vocabulary=vocabulary, image_size=size, channels=3,
                                       max_length=int(config.max_length),
                                       feature_level=config.feature_level, notes=notes)

    def input_shape(self, info):
        return (info.image_size, info.image_size, info.channels)

    def _images(self, images, info):
        """At the network's size: lazily read files stay lazy (decoded when indexed)."""
        if is_image_files(images):
            return images.at(info.channels, info.image_size)
        return imaging.resize_batch(np.asarray(images, np.float32), info.image_size)

    def encode(self, dataset, info):
        """One row per (image, caption): inputs start..last word, targets first word..end. Each
        image is kept once; its captions' rows gather it."""
        rows = np.repeat(np.arange(len(dataset)), [len(refs) for refs in dataset.y])
        ids = vocab.encode([c for refs in dataset.y for c in refs], info.vocabulary, info.max_length)
        return {"image": Gathered(self._images(dataset.x, info), rows), "tokens": ids[:, :-1]}, ids[:, 1:]

    def class_weight(self, y, config):
        return None

    # -- model -------------------------------------------------------------------------------
    def build(self, backbone, info, config):
        return build_captioner(backbone, len(info.vocabulary), level=config.feature_level,
                               feature_dim=config.feature_dim, embedding_dim=config.embedding_dim,
                               units=config.units, attention_units=config.attention_units,
                               rnn=config.rnn, dropout=config.dropout)

    def loss(self, config, info):
        import keras

        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=vocab.PAD_ID)

    def epoch_scores(self, val_set, info, config):
        """BLEU-4 of greedy captions for the validation images after every epoch (``val_bleu4``):
        the token loss says little about the sentences written."""
        if val_set is None or not len(val_set):
            return None
        images, references, writers = self._images(val_set.x, info), list(val_set.y), {}

        def score(model):
            if id(model) not in writers:  # one writer (and its traced steps) per trained model
                writers[id(model)] = self._writer(model, info)
            return {"bleu4": scores.bleu4(references, [c.text for c in writers[id(model)].greedy(images)])}

        return score

    # -- evaluation --------------------------------------------------------------------------
    def _writer(self, model, info):
        return CaptionWriter(model, info.vocabulary, max_length=info.max_length)

    def predict_dataset(self, model, dataset, info, config, progress=None):
        writer = self._writer(model, info)
        images = self._images(dataset.x, info)
        decoded = writer.greedy_and_beam(images, config.beam_width, config.length_alpha, progress=progress)
        scored = {}
        for name, captions in decoded.items():
            values, per_image = scores.caption_scores(list(dataset.y), [c.text for c in captions])
            scored[name] = {"captions": captions, "metrics": values, "cider": per_image}
        main = list(scored)[-1]
        return {"decoding": main, "scored": scored, "grid": _grid_shape(model, info)}

    def metrics(self, dataset, outputs, info):
        return outputs["scored"][outputs["decoding"]]["metrics"]

    def baseline(self, train, test, info, config, model=None):
        """Nearest-neighbour retrieval: each test image gets the consensus caption of the training
        image whose pooled backbone features are closest (cosine)."""
        if model is None:
            return None
        from tasks.captioning.model import encoder_of

        encoder = encoder_of(model)

        def pooled(images):
            stream = tf_dataset(self._images(images, info), np.zeros(len(images)), batch_size=64,
                                training=False, cache="none")
            grid = encoder.predict(stream, verbose=0).mean(axis=1)
            return grid / np.maximum(np.linalg.norm(grid, axis=1, keepdims=True), 1e-8)

        nearest = np.argmax(pooled(test.x) @ pooled(train.x).T, axis=1)
        hypotheses = [_consensus(train.y[i]) for i in nearest]
        values, _ = scores.caption_scores(list(test.y), hypotheses)
        return {"name": "nearest_neighbour_retrieval", "metrics": values}

    def tables(self, dataset, outputs, info, baseline=None):
        import pandas as pd

        rows = [{"decoding": name, **{k: round(v, 4) for k, v in s["metrics"].items()}}
                for name, s in outputs["scored"].items()]
        main = outputs["scored"][outputs["decoding"]]
        examples = [{"image": i, "generated": main["captions"][i].text, "reference": dataset.y[i][0],
                     "cider_d": round(float(main["cider"][i]), 3)} for i in range(min(12, len(dataset)))]
        return {"Decoding: greedy vs beam search": pd.DataFrame(rows),
                "First test images: generated vs first reference": pd.DataFrame(examples)}

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        main = outputs["scored"][outputs["decoding"]]
        images = self._images(dataset.x, info)
        texts = [c.text for c in main["captions"]]
        order = np.argsort(main["cider"])[::-1]
        picks = [order[0], order[len(order) // 2]] if len(order) > 1 else list(order)
        examples = [(images[i], main["captions"][i]) for i in picks]
        return {
            "gallery": (figures.gallery(images, texts, list(dataset.y), main["cider"],
                                        per_side=min(4, len(dataset))),
                        f"Best (top) and worst (bottom) test images by CIDEr-D ({outputs['decoding']} "
                        f"decoding): generated caption and the first reference."),
            "attention": (figures.attention_maps(examples, outputs["grid"]),
                          "Where the decoder looked for each word (the best and the median test image)."),
        }

    # -- prediction --------------------------------------------------------------------------
    def predict_inputs(self, model, inputs, info, options, out=None):
        width = int(options.get("beam_width", 3))
        if width < 1:
            raise UserError(f"--set beam_width={width}: must be at least 1")
        images = np.concatenate([imaging.resize_batch(imaging.read_image(p, channels=3)[None], info.image_size)
                                 for p in inputs])
        writer = self._writer(model, info)
        decoded = writer.greedy_and_beam(images, width, float(options.get("length_alpha", 1.0)))
        greedy = decoded["greedy"]
        beam = decoded.get(f"beam {width}", greedy)
        grid = _grid_shape(model, info)
        return [{"input": str(path), "caption": b.text, "greedy": g.text, "beam_width": width,
                 "words": b.words + [vocab.END],
                 "attention_grid": list(grid),
                 "attention": np.round(b.attention, 4).tolist()}
                for path, g, b in zip(inputs, greedy, beam)]

    # -- serving -----------------------------------------------------------------------------
    def serving_signatures(self, model, info):
        from tasks.captioning import serving

        return serving.serving_signatures(model, info)

    def tflite_signatures(self, model, info):
        from tasks.captioning import serving

        return serving.tflite_signatures(model, info)

    def format_prediction(self, record):
        return f"{record['input']}: {record['caption']}"


def _grid_shape(model, info):
    from pipelines.backbones import pyramid_outputs

    backbone = model.get_layer("backbone")
    level = feature_level(backbone, info.feature_level)
    return tuple(int(d) for d in pyramid_outputs(backbone)[level].shape[1:3])


def _consensus(references):
    """The reference sharing the most words and word pairs with the image's other references."""
    if len(references) == 1:
        return references[0]
    rows = vocab.words(references)
    grams = [set(r) | set(zip(r, r[1:])) for r in rows]
    overlap = [sum(len(g & other) for j, other in enumerate(grams) if j != i) for i, g in enumerate(grams)]
    return references[int(np.argmax(overlap))]
