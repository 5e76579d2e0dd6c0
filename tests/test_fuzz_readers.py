"""Fuzzed readers (issue 17): whatever bytes, text or array shapes a user hands a reader, the only
outcomes allowed are a dataset or a UserError of one line that names the file or option; never
another exception (which the CLI would show as a traceback, exit 1).

Every task is reached through its own ``load(spec, config)`` (what ``train``, ``evaluate
--data`` and ``predict`` call), so a new task's reader can join by adding a case here.
"""

import io
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import config as config_lib
from pipelines.errors import UserError
from pipelines.tasks import get_task

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Characters that break naive readers: CSV syntax, Unicode line separators that str.splitlines()
# splits on and CSV does not (U+0085, U+2028, U+2029, form feed), NUL, BOM, quotes, tabs.
TRICKY = "a,\"\n\r\t;|.0123456789-eE+ \x00\x0c\x85\u2028\u2029\ufeff\u00e9\u4e2d"
tricky_text = st.text(alphabet=st.sampled_from(TRICKY) | st.characters(codec="utf-8"), max_size=300)


def _outcome(task_name, spec, named):
    """Load ``spec`` with the task's defaults; a UserError must be one line naming ``named``."""
    task = get_task(task_name)
    config = config_lib.resolve(task.Config)
    try:
        task.load(str(spec), config)
    except UserError as error:
        message = str(error)
        assert message.strip() and "\n" not in message.strip(), message
        assert named in message, f"{named!r} not named in {message!r}"
        return "refused"
    return "read"


@pytest.fixture
def workdir():
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _fresh(root, name):
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


# -- raw bytes where a file format is expected ----------------------------------------------------
FILE_CASES = [
    ("image-classification", "data.npz"),
    ("volume-classification", "data.npz"),
    ("image-classification", "labels.csv"),
    ("volume-classification", "labels.csv"),
    ("text-classification", "data.csv"),
    ("text-classification", "data.tsv"),
    ("captioning", "captions.json"),
    ("captioning", "captions.txt"),
    ("steering", "driving_log.csv"),
    ("steering", "labels.csv"),
]


@pytest.mark.parametrize("task_name,file_name", FILE_CASES)
@FUZZ
@given(data=st.binary(max_size=400) | tricky_text.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_are_read_or_refused_in_one_line(workdir, task_name, file_name, data):
    folder = _fresh(workdir, "case")
    path = folder / file_name
    path.write_bytes(data)
    spec = folder if file_name == "driving_log.csv" else path
    _outcome(task_name, spec, file_name if spec == path else folder.name)


# -- files that parse, with random content --------------------------------------------------------
HEADERS = ["path,label", "text,label", "path,steering", "image,caption", "path,label,split",
           "center,left,right,steering,throttle,brake,speed", ""]


@pytest.mark.parametrize("task_name,file_name", [c for c in FILE_CASES if c[1].endswith((".csv", ".tsv", ".txt"))])
@FUZZ
@given(header=st.sampled_from(HEADERS), body=tricky_text)
def test_tables_with_a_plausible_header_and_random_rows(workdir, task_name, file_name, header, body):
    folder = _fresh(workdir, "case")
    path = folder / file_name
    path.write_text(header + "\n" + body, encoding="utf-8", errors="surrogatepass")
    spec = folder if file_name == "driving_log.csv" else path
    _outcome(task_name, spec, file_name if spec == path else folder.name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["images", "annotations", "id", "image_id", "file_name", "caption", "x"]),
        inner, max_size=4),
    max_leaves=20)


@FUZZ
@given(document=json_values)
def test_coco_json_of_any_shape(workdir, document):
    folder = _fresh(workdir, "case")
    (folder / "captions.json").write_text(json.dumps(document), encoding="utf-8")
    _outcome("captioning", folder / "captions.json", "captions.json")


dtypes = st.sampled_from([np.uint8, np.int16, np.float32, np.float64, np.bool_])


@st.composite
def npz_arrays(draw, volumes):
    """An .npz of x and y with random shapes, dtypes and values (NaN and inf included)."""
    rank = draw(st.integers(1, 6))
    shape = tuple(draw(st.lists(st.integers(0, 9), min_size=rank, max_size=rank)))
    x = draw(st.sampled_from([np.zeros, np.ones]))(shape, dtype=draw(dtypes))
    if x.size and x.dtype.kind == "f" and draw(st.booleans()):
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    y = np.asarray(draw(st.lists(st.integers(-1, 3) | st.just(2 ** 40), max_size=12)))
    arrays = {"x": x, "y": y}
    if draw(st.booleans()):
        arrays["class_names"] = np.asarray(draw(st.lists(st.text(max_size=4), max_size=3)), dtype=str)
    if volumes and draw(st.booleans()):
        arrays["patient_id"] = np.arange(len(y)) % 3
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("task_name", ["image-classification", "volume-classification"])
@FUZZ
@given(data=st.data())
def test_npz_arrays_of_any_shape_and_dtype(workdir, task_name, data):
    folder = _fresh(workdir, "case")
    (folder / "data.npz").write_bytes(data.draw(npz_arrays(volumes=task_name == "volume-classification")))
    _outcome(task_name, folder / "data.npz", "data.npz")


@FUZZ
@given(image=st.binary(max_size=300), label=st.binary(max_size=300))
def test_msd_folders_with_corrupt_nifti(workdir, image, label):
    folder = _fresh(workdir, "msd")
    for kind, data in (("imagesTr", image), ("labelsTr", label)):
        (folder / kind).mkdir()
        (folder / kind / "case_000.nii.gz").write_bytes(data)
    _outcome("medical-segmentation", folder, "case_000.nii.gz")


@FUZZ
@given(text=tricky_text)
def test_config_files_and_set_values(workdir, text):
    """--config FILE.toml and --set KEY=VALUE: any text is a config or a one-line refusal."""
    task = get_task("image-classification")
    path = workdir / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for attempt in (lambda: config_lib.resolve(task.Config, toml=path),
                    lambda: config_lib.resolve(task.Config, sets=config_lib.parse_set([text])),
                    lambda: config_lib.resolve(task.Config, sets=config_lib.parse_set([f"epochs={text}"]))):
        try:
            attempt()
        except UserError as error:
            assert str(error).strip() and "\n" not in str(error).strip(), str(error)
