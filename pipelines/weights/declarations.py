"""What a registry entry declares about its pretrained weights (timm's ``default_cfg``)."""

from dataclasses import dataclass

from pipelines.errors import UserError

PRETRAINED_SPECS = ("imagenet",)
KERAS_HUB_PREFIX = "keras_hub:"


@dataclass(frozen=True)
class Pretrained:
    """One set of pretrained weights of a backbone: where they come from (a source of
    :mod:`pipelines.weights.sources`), under what licence, and what they were trained on and
    with. ``mean``/``std`` are per RGB channel on 0..255; the backbone applies them itself."""

    description: str
    licence: str
    source: object
    input_size: tuple  # (height, width, channels) the weights were trained at
    mean: tuple
    std: tuple
    preprocessing: str
    classes: int = 0  # the size of the ImageNet top the source holds (0: none)

    def record(self):
        """What a run records of these weights (beside the files' paths and sha256)."""
        return {"description": self.description, "licence": self.licence,
                "origin": self.source.describe(), "input_size": list(self.input_size),
                "mean": list(self.mean), "std": list(self.std), "preprocessing": self.preprocessing}


def is_pretrained_spec(value):
    """True for ``--backbone-weights`` values that name weights rather than a file."""
    return value in PRETRAINED_SPECS or str(value or "").startswith(KERAS_HUB_PREFIX)


def declared(name, options=None):
    """{spec: Pretrained} the registry entry ``name`` declares for ``options`` (an entry whose
    weights depend on its options, as MobileNet's width, declares a function of them)."""
    from pipelines.backbones import BACKBONES

    table = BACKBONES.entry(name).meta.get("pretrained") or {}
    if callable(table):
        try:
            table = table(**(options or {}))
        except TypeError as error:
            raise UserError(f"backbone {name!r}: bad backbone_options ({error})") from None
    return dict(table)


def pretrained_of(name, spec, options=None, flag=None):
    """The Pretrained of backbone ``name`` for ``spec``; a UserError naming the entries that have
    such weights when this one has none."""
    from pipelines.backbones import BACKBONES

    table = declared(name, options)
    if spec in table:
        return table[spec]
    flag = flag or f"--backbone-weights {spec}"
    have = [n for n in BACKBONES.names() if spec in declared(n)]
    if callable(BACKBONES.entry(name).meta.get("pretrained")):
        raise UserError(f"{flag}: backbone {name!r} has no {spec} weights with options {options or {}}")
    raise UserError(f"{flag}: backbone {name!r} has no {spec} weights; backbones that have them: "
                    f"{', '.join(have) or 'none'} (choose one with --backbone)")


def weights_table(name):
    """[(spec, Pretrained, state)] of an entry's default-option weights for ``cnn-tasks
    backbones``; state says whether the source is installed or cached here."""
    try:
        table = declared(name)
    except UserError:
        return []
    return [(spec, pretrained, pretrained.source.state()) for spec, pretrained in sorted(table.items())]
