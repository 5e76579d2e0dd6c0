"""What preprocessing learned from the training split, as each task's own typed record.

A task subclasses :class:`Preprocessing` as a dataclass (class names, image size, a vocabulary,
scaling, ...) and names it ``Task.Preprocessing``. The pipeline only moves it around: it records
``to_json()`` in config.json and export metadata, and calls ``save_assets`` / ``load_assets`` on
the run's ``assets/`` folder. What a field means, and any file beside ``info.json`` (a vocabulary
list), is the subclass's business, so shared code never special-cases a modality.
"""

import dataclasses
from pathlib import Path

from pipelines.errors import UserError

INFO_FILE = "info.json"


@dataclasses.dataclass(kw_only=True)
class Preprocessing:
    """Base record: ``notes`` are lines the report shows (what was dropped or adapted)."""

    notes: list = dataclasses.field(default_factory=list)

    def to_json(self):
        """A JSON-able description (config.json, metadata.json, assets/info.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data, *, source="preprocessing"):
        """The record from :meth:`to_json`'s output. Keys a newer or older version wrote that
        this one does not know are ignored; a missing field without a default is an error."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        missing = [name for name, f in fields.items() if name not in data and _required(f)]
        if missing:
            raise UserError(f"{source}: missing {', '.join(missing)}; the run was written by an "
                            f"incompatible version")
        return cls(**{name: data[name] for name in fields if name in data})

    def save_assets(self, folder, write_json):
        """Write what a run needs to rebuild this record into ``folder`` (``write_json`` is the
        run directory's atomic writer)."""
        write_json(Path(folder) / INFO_FILE, self.to_json())

    @classmethod
    def load_assets(cls, folder):
        from pipelines.runs import read_json

        path = Path(folder) / INFO_FILE
        return cls.from_json(read_json(path, "asset file"), source=str(path))


def _required(field):
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING

