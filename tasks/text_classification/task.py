"""Text classification: a CNN over word vectors, tokenized in the graph with tensorflow-text."""

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines import tokenizer as tokenizing
from pipelines import word_vectors
from pipelines.classification_task import ClassificationConfig, ClassificationTask, ClassPreprocessing
from pipelines.config import option
from pipelines.data import read_text
from pipelines.errors import UserError
from pipelines.evaluation import HighlightedText
from pipelines.tasks import register_task
from tasks.text_classification import explain, readers


STEP_BUDGET = 800  # training steps a text CNN needs, whatever the data size (see fit_config)


@dataclass
class TextClassificationConfig(ClassificationConfig):
    data: str = option("builtin:sms_spam", help="a text,label CSV/TSV, a folder with train.csv + "
                       "test.csv, class folders of .txt files, or builtin:sms_spam")
    backbone: str = option("text_cnn", help="registered text backbone")
    epochs: typing.Optional[int] = option(None, minimum=1,
                                          help=f"training epochs (default: enough for about "
                                               f"{STEP_BUDGET:,} steps, at least 10: 10 on 4,000 "
                                               f"texts, 40 on 1,000)")
    early_stopping_patience: typing.Optional[int] = option(
        None, minimum=0, help="epochs without improvement; 0 = off (default: a quarter of the "
                              "epochs when the data size chose more than 10, else off)")
    batch_size: int = option(50, minimum=1, help="examples per step (Kim 2014: 50)")
    tokenizer: str = option("word", choices=tokenizing.TOKENIZERS,
                            help="word tokens, or WordPiece sub-words learnt from the training split")
    lowercase: bool = option(True, help="case-fold texts before tokenizing")
    vocabulary_size: int = option(20000, minimum=3, help="largest vocabulary, reserved tokens included")
    min_count: int = option(1, minimum=1, help="fewest occurrences in the training split to keep a word")
    max_length: typing.Optional[int] = option(None, minimum=1,
                                              help="tokens per text (default: 99th percentile "
                                                   "of the training split)")
    word_vectors: typing.Optional[str] = option(None, help="local GloVe/word2vec text file")
    freeze_word_vectors: bool = option(False, help="keep loaded word vectors static (CNN-static)")
    head_hidden: int = option(0, minimum=0, help="units of a hidden fully connected layer; 0 = none")
    head_dropout: float = option(0.0, minimum=0, maximum=0.9,
                                 help="dropout before the classifier (the backbone has its own)")
    head_max_norm: float = option(0.0, minimum=0, help="l2 max-norm of each class's weights "
                                  "(Kim 2014: 3); 0 = none")
    text_column: str = option("text", help="CSV column holding the text")
    label_column: str = option("label", help="CSV column holding the class label")
    delimiter: typing.Optional[str] = option(None, help="CSV delimiter (default: sniffed; .tsv: tab)")
    encoding: str = option("utf-8", help="text encoding of the data files")
    explain_examples: int = option(8, minimum=0, help="test messages highlighted in the report")


@dataclass(kw_only=True)
class TextPreprocessing(tokenizing.VocabularyPreprocessing, ClassPreprocessing):
    tokenizer: str  # "word" or "wordpiece", as the vocabulary was learnt
    lowercase: bool
    max_length: int  # tokens per text
    word_vectors: typing.Optional[dict] = None  # {"dim", "found", "missing", "static"} if used


@register_task("text-classification")
class TextClassification(ClassificationTask):
    modality = "text"
    Config = TextClassificationConfig
    Preprocessing = TextPreprocessing
    summary = "texts to classes: a CNN over word vectors (Kim 2014)"
    builtin_data = tuple(readers.BUILTIN)
    tflite_unsupported = "the model tokenizes raw strings with tensorflow-text ops, which TFLite lacks"

    def load(self, spec, config):
        return readers.load(spec, text_column=config.text_column, label_column=config.label_column,
                            delimiter=config.delimiter, encoding=config.encoding)

    # -- preprocessing -----------------------------------------------------------------------
    def fit_config(self, config, train):
        """Epochs (and early stopping with them), and for the default backbone its embedding
        size and word dropout, from the training split's size (each only where the user left
        it); config.json records them. Word vectors without a word channel are refused here,
        where the backbone's options are final (a --backbone-from source's included) and no run
        folder exists yet."""
        if config.word_vectors and "word" not in str(config.backbone_options.get("channels", "word")).split("+"):
            raise UserError(f"--set word_vectors={config.word_vectors}: backbone {config.backbone} "
                            f"with channels={config.backbone_options['channels']} has no word "
                            f"channel to load them into; use channels word or word+char")
        changes = {}
        if config.epochs is None:
            changes["epochs"] = epochs_for(len(train), config.batch_size)
        if config.early_stopping_patience is None:  # long runs chosen for small data stop early
            chosen = changes.get("epochs", 0)
            changes["early_stopping_patience"] = max(5, chosen // 4) if chosen > 10 else 0
        if config.backbone == type(config)().backbone:
            changes["backbone_options"] = {**small_data_options(len(train)), **config.backbone_options}
        return dataclasses.replace(config, **changes)

    def fit_preprocessing(self, train, config, min_size):
        kind, lowercase = config.tokenizer, config.lowercase
        if config.backbone_from:  # tokenize as the source did, so its embedding rows match by token
            source = self.Preprocessing.load_assets(Path(config.backbone_from) / "assets")
            kind, lowercase = source.tokenizer, source.lowercase
        vocabulary = tokenizing.build_vocabulary(train.x, tokenizer=kind, max_size=config.vocabulary_size,
                                                 min_count=config.min_count, lowercase=lowercase)
        length = config.max_length
        if not length:
            probe = tokenizing.TextTokenizer(vocabulary, 1, tokenizer=kind, lowercase=lowercase)
            length = tokenizing.fixed_length(tokenizing.token_strings(probe, train.x, clip=False))
        vectors = {"dim": word_vectors.peek_dim(config.word_vectors)} if config.word_vectors else None
        return TextPreprocessing(class_names=list(train.info["class_names"]), tokenizer=kind,
                                 lowercase=bool(lowercase), max_length=int(length),
                                 vocabulary=vocabulary, word_vectors=vectors)

    def input_shape(self, info):
        return (info.max_length,)

    def backbone_arguments(self, info, config):
        arguments = {"vocab_size": len(info.vocabulary)}
        if info.word_vectors:
            arguments["embedding_dim"] = info.word_vectors["dim"]
        return arguments

    def embedding_tokens(self, info):
        return info.vocabulary

    def encode(self, dataset, info):
        return np.asarray(dataset.x, dtype=object), np.asarray(dataset.y, dtype=np.int32)

    # -- model -------------------------------------------------------------------------------
    def build(self, backbone, info, config):
        import keras

        from pipelines.backbones.text_cnn import char_ngram_spec
        from pipelines.heads import classifier_head, softmax

        if info.word_vectors:
            vectors = word_vectors.load(config.word_vectors, info.vocabulary,
                                        seed=config.seed)
            embedding = _word_embedding(backbone, config)
            embedding.set_weights([vectors.matrix])
            embedding.trainable = not config.freeze_word_vectors
            info.word_vectors.update(found=vectors.found, missing=vectors.missing,
                                     static=bool(config.freeze_word_vectors))
            info.notes.append(f"Word vectors {vectors.summary()}; "
                              f"{'static' if config.freeze_word_vectors else 'fine-tuned'}.")
        texts = keras.Input(shape=(), dtype="string", name="text")
        ids = tokenizing.TextTokenizer(info.vocabulary, info.max_length,
                                       tokenizer=info.tokenizer, lowercase=info.lowercase,
                                       char_ngrams=char_ngram_spec(backbone),
                                       name=explain.TOKENIZER_LAYER_NAME)(texts)
        sentence = backbone(ids)["sentence"]
        head = classifier_head(sentence.shape[1:], len(info.class_names), norm=self.head_norm(config),
                               hidden=config.head_hidden, dropout=config.head_dropout,
                               max_norm=config.head_max_norm)
        return keras.Model(texts, softmax(head(sentence)), name="text_classifier")

    # -- evaluation --------------------------------------------------------------------------
    def predict_dataset(self, model, dataset, info, config, progress=None):
        return model.predict(np.asarray(dataset.x, dtype=object), batch_size=256, verbose=0)

    def baseline(self, train, test, info, config, model=None):
        """TF-IDF of word 1-2-grams and character 2-5-grams, logistic regression; same split."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        features = make_union(
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2))
        estimator = make_pipeline(features, LogisticRegression(C=20, max_iter=3000))
        return self.probability_baseline("tfidf_word_char_logistic_regression", estimator,
                                         list(train.x), np.asarray(train.y), list(test.x),
                                         np.asarray(test.y), info)

    def tables(self, dataset, outputs, info, baseline=None):
        import pandas as pd

        result = super().tables(dataset, outputs, info, baseline)
        names = info.class_names
        y, predicted = np.asarray(dataset.y), outputs.argmax(axis=1)
        wrong = np.flatnonzero(predicted != y)
        wrong = wrong[np.argsort(-outputs[wrong, predicted[wrong]])][:25]
        result[f"Misclassified test texts ({int((predicted != y).sum())} in all, most confident first)"] = \
            pd.DataFrame({"text": [_clip(dataset.x[i]) for i in wrong],
                          "truth": [names[y[i]] for i in wrong],
                          "predicted": [names[predicted[i]] for i in wrong],
                          "probability": [round(float(outputs[i, predicted[i]]), 4) for i in wrong]},
                         columns=["text", "truth", "predicted", "probability"])
        return result

    def figures(self, model, dataset, outputs, info, config, baseline=None):
        return self.classification_figures(dataset.y, outputs, info, baseline)

    def explanations(self, model, dataset, outputs, info, config):
        names = info.class_names
        found = explain.explain(model, dataset.x, config.backbone, config.backbone_options)
        table = explain.top_ngrams_per_class(found, names, truth=np.asarray(dataset.y))
        chosen = _examples(np.asarray(dataset.y), outputs, config.explain_examples)
        items = []
        for i in chosen:
            grams = ", ".join(f"'{g}'" for g, _ in found.ngrams[i][:3])
            verdict = "right" if found.predicted[i] == dataset.y[i] else f"wrong, truth {names[dataset.y[i]]}"
            items.append(HighlightedText(found.tokens[i], found.token_weights[i],
                                         f"predicted {names[found.predicted[i]]} "
                                         f"({outputs[i].max():.3f}, {verdict}); strongest n-grams: {grams}"))
        return ({"Top n-grams per class (windows that won the max-over-time pooling, correctly "
                 "classified test texts)": table},
                {"Words that drove the decisions (green: toward the predicted class)": items})

    def report_notes(self, dataset, info):
        notes = super().report_notes(dataset, info)
        notes.append(f"Tokenizer: {info.tokenizer}, vocabulary of {len(info.vocabulary):,} "
                     f"tokens from the training split, {info.max_length} tokens per text.")
        return notes

    # -- prediction --------------------------------------------------------------------------
    def predict_inputs(self, model, inputs, info, options, out=None):
        texts = [_read_text(p) for p in inputs] if _truthy(options.get("from_files")) else list(inputs)
        proba = model.predict(np.asarray(texts, dtype=object), verbose=0)
        return [{"input": text, **record}
                for text, record in zip(inputs, self.top_classes(proba, info, options))]

    # -- serving -----------------------------------------------------------------------------
    def serving_signatures(self, model, info):
        import tensorflow as tf

        from pipelines.serving import Signature

        def serving_default(text):
            return self.class_outputs(model(text, training=False), info)

        return {"serving_default": Signature(
            serving_default, [tf.TensorSpec([None], tf.string, name="text")],
            "raw UTF-8 strings -> class; normalised and tokenized in the graph (tensorflow-text)",
            notes=["tensorflow-text ops: a Python client imports tensorflow_text before loading; "
                   "TF Serving's model server has them built in"])}

    def format_prediction(self, record):
        return f"{_clip(record['input'], 60)}: {record['class']}  ({self.format_top(record)})"

    # -- assets ------------------------------------------------------------------------------


def epochs_for(n_train, batch_size):
    """A fixed budget of steps, not of passes. Ten passes over 4,000 texts are 800 steps of 50;
    over 1,000 texts they are 200, and the network stops while still learning (TREC at 1,000
    training questions: 0.744 after 10 epochs, 0.796 after 40)."""
    steps_per_epoch = -(-n_train // batch_size)
    return int(min(100, max(10, -(-STEP_BUDGET // steps_per_epoch))))


def small_data_options(n_train):
    """text_cnn's options for ``n_train`` texts: Kim's (300-d embeddings, word dropout 0.1 here)
    from 4,000 on; toward 1,000 and below, 128-d embeddings and word dropout 0.25, so that fewer
    texts are not memorised word by word (TREC at 1,000 training questions, seed 1: 0.822 with
    Kim's, 0.834 with 128-d, 0.846 with word dropout 0.25; benchmarks/RESULTS.md)."""
    if n_train >= 4000:
        return {}
    shrink = min(1.0, math.log2(4000 / max(n_train, 1)) / 2)  # 0 at 4,000 texts, 1 at 1,000
    return {"embedding_dim": int(round(300 - 172 * shrink)), "word_dropout": round(0.1 + 0.15 * shrink, 3)}


def _word_embedding(backbone, config):
    from pipelines.backbones.text_cnn import EMBEDDING_LAYER_NAME

    try:
        return backbone.get_layer(EMBEDDING_LAYER_NAME)
    except ValueError:
        raise UserError(f"--set word_vectors={config.word_vectors}: backbone {config.backbone} "
                        f"with these options has no word channel; use channels word or "
                        f"word+char") from None


def _clip(text, width=200):
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _truthy(value):
    return str(value).lower() in ("1", "true", "yes")


def _read_text(path):
    if not Path(path).is_file():
        raise UserError(f"{path}: no such text file (from_files=true reads each input as a file)")
    return read_text(path)


def _examples(y, outputs, count):
    """A few right and wrong test texts per class, most confident first."""
    predicted = outputs.argmax(axis=1)
    confidence = outputs.max(axis=1)
    chosen = []
    wrong = np.flatnonzero(predicted != y)
    chosen += wrong[np.argsort(-confidence[wrong])][:max(1, count // 4)].tolist()
    for c in np.unique(y):
        right = np.flatnonzero((predicted == y) & (y == c))
        chosen += right[np.argsort(-confidence[right])][:max(1, (count - len(chosen)) // 2)].tolist()
    return chosen[:count]
