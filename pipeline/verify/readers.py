"""What a person would read in each output: every value, with where it stands.

A reader turns one output file into :data:`Value` tuples ``(where, field,
text, class)``: ``where`` a location that never holds a value (``(0008,103E)``,
``(0029,1010)>item 2>(0010,0010)``, ``hdf5:/dataset/xml>studyInformation>studyDescription``,
``parquet column subject row 4``), ``field`` the
:func:`~pipeline.verify.normalise.field_key` the value stands under, and the
:class:`~pipeline.verify.matcher.ValueClass` that decides what is looked for.

- **DICOM**: the decoded value of every element, file meta and nested items
  included, private ones too; pydicom inflates deflated syntaxes, and pixel
  data (native or compressed) is never read.  Bytes (OB, OW, UN: a CSA
  header, an unknown private block) are read as the runs of text they hold.
- **HDF5**: every attribute, every string dataset and the string fields of
  compound datasets, through h5py; an XML value (the ISMRMRD header) element
  by element, comments included.  Numeric datasets (k-space) are not read.
- **Parquet** and **CSV**: every cell, the column names and the file's
  metadata; a numeric column is a measurement (``NUMBER``).
- **JSON**: every key and value; **text** (README, changelog, SHA256SUMS)
  line by line; anything else as the runs of text its bytes hold.

Names that come from the file itself (a column, an attribute, a dataset, a
JSON key) are values too, and appear in a location only through ``label``,
which the check gives: a name that would itself be a hit is replaced by its
position (``#3``), so a location never carries PHI.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Container, Iterator
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from pipeline.verify.dicom_files import UnreadableDicom, file_elements
from pipeline.verify.matcher import ValueClass
from pipeline.verify.normalise import field_key

__all__ = ["Label", "OutputFormat", "UnreadableOutput", "Value", "output_format", "read_values"]

V = ValueClass
Value = tuple[str, str, str, ValueClass]
#: ``label(name, fallback)``: ``name`` if it is safe to show in a location, else ``fallback``.
Label = Callable[[str, str], str]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_STRING_DATASET = 64 * 2**20  # bytes of a string dataset read at once

_DICOM_CLASS = {
    "PN": V.NAME, "UI": V.UID, "DA": V.DATE, "DT": V.DATE, "TM": V.NUMBER,
    "IS": V.NUMBER, "DS": V.NUMBER,
}  # fmt: skip
# Text inside bytes (a CSA header, an unknown private block): runs of four or more
# printable ASCII characters, UTF-8 sequences, or Latin-1 letters between ASCII
# letters (Müller in ISO 8859-1).  Arbitrary high bytes are not text: compressed
# or sample data would otherwise read as long runs in which short names turn up.
_PRINTABLE = re.compile(
    rb"(?:[\t\x20-\x7e]|[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
    rb"|(?<=[A-Za-z])[\xc0-\xff](?=[A-Za-z])){4,}"
)
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")
_PERSON_FIELD = re.compile(r"(patient|physician|operator|person|performing|referring).*name")


class UnreadableOutput(ValueError):
    """An output that cannot be read as its format; the message names the format only."""

    def __init__(self, what: str, error: BaseException) -> None:
        self.what = what
        super().__init__(f"not readable as {what} ({type(error).__name__})")


class OutputFormat(enum.Enum):
    """The formats a reader knows, told by the first bytes and then the name."""

    DICOM = "dicom"
    HDF5 = "hdf5"
    PARQUET = "parquet"
    CSV = "csv"
    JSON = "json"
    OTHER = "other"


def output_format(path: Path, head: bytes) -> OutputFormat:
    """Which reader reads ``path``, by its first bytes and then by its name."""
    suffix = path.suffix.lower()
    if head[128:132] == b"DICM" or suffix == ".dcm":
        return OutputFormat.DICOM
    if head.startswith(HDF5_SIGNATURE) or suffix in (".h5", ".hdf5"):
        return OutputFormat.HDF5
    if head.startswith(b"PAR1") or suffix == ".parquet":
        return OutputFormat.PARQUET
    if suffix in (".csv", ".tsv"):
        return OutputFormat.CSV
    if suffix == ".json":
        return OutputFormat.JSON
    return OutputFormat.OTHER


def read_values(path: Path, label: Label, numbers: Container[str] | None = None) -> Iterator[Value]:
    """Every value of the output at ``path`` that a person could read.

    ``numbers`` (DICOM only): the keywords whose measurements (IS, DS, TM) the
    caller compares; the others are not decoded.

    Raises
    ------
    OSError, UnreadableOutput
        The file cannot be read as its format (the check turns this into an
        :attr:`~pipeline.verify.identifiers.IdentifierKind.UNREADABLE_OUTPUT` hit).
    """
    with open(path, "rb") as fh:
        head = fh.read(132)
    kind = output_format(path, head)
    if kind is OutputFormat.DICOM:
        yield from dicom_values(path, numbers)
    elif kind is OutputFormat.HDF5:
        yield from hdf5_values(path, label)
    elif kind is OutputFormat.PARQUET:
        yield from parquet_values(path, label)
    elif kind is OutputFormat.CSV:
        yield from csv_values(path, label)
    elif kind is OutputFormat.JSON:
        yield from json_values(path, label)
    else:
        yield from other_values(path)


# -- DICOM ------------------------------------------------------------------------


def dicom_values(path: Path, numbers: Container[str] | None = None) -> Iterator[Value]:
    try:
        found = file_elements(path, whole=True, numbers=numbers)
    except UnreadableDicom as exc:
        raise UnreadableOutput("DICOM", exc) from None
    for element in found:
        field = element.field
        if element.data:
            yield from _byte_values(element.data, element.where, field)
            continue
        cls = _DICOM_CLASS.get(element.vr, V.TEXT)
        for text in element.values:
            yield element.where, field, text, cls


def _byte_values(data: bytes, where: str, field: str) -> Iterator[Value]:
    """The text runs of a bytes value, one value per element (one scan of all its runs)."""
    runs = _PRINTABLE.findall(data)
    if runs:
        yield where, field, _decode(b"\n".join(runs)), V.TEXT


# -- HDF5 ---------------------------------------------------------------------------


def hdf5_values(path: Path, label: Label) -> Iterator[Value]:
    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise UnreadableOutput("HDF5", exc) from None
    with f:
        objects: list[tuple[str, h5py.Group | h5py.Dataset]] = [("/", f)]
        f.visititems(lambda name, obj: objects.append((name, obj)))
        for number, (name, obj) in enumerate(objects):
            shown = "/" if name == "/" else _hdf5_path(name, number, label)
            if name != "/":
                yield f"hdf5 name of object {number}", "", name, V.TEXT
            yield from _attribute_values(obj, shown, label)
            if isinstance(obj, h5py.Dataset):
                yield from _dataset_strings(obj, shown, label)


def _hdf5_path(name: str, number: int, label: Label) -> str:
    return "/" + label(name, f"object {number}")


def _attribute_values(obj: h5py.Group | h5py.Dataset, shown: str, label: Label) -> Iterator[Value]:
    for index, name in enumerate(obj.attrs):
        where = f"hdf5 attribute {label(name, f'#{index + 1}')}"
        if shown != "/":
            where += f" of {shown}"
        yield f"hdf5 attribute name #{index + 1} of {shown}", "", name, V.TEXT
        try:
            value = obj.attrs[name]
        except (OSError, TypeError, ValueError):
            continue  # an attribute h5py cannot read: nothing a person reads either
        yield from _python_values(value, where, field_key(name), label)


def _dataset_strings(ds: h5py.Dataset, shown: str, label: Label) -> Iterator[Value]:
    dtype = ds.dtype
    where = f"hdf5:{shown}"
    if dtype.names:  # compound: only its string fields
        fields = [n for n in dtype.names if _is_string_dtype(dtype[n])]
        for name in fields:
            data = ds.fields(name)[()] if ds.shape != () else ds[()][name]
            yield from _python_values(
                data, f"{where} field {label(name, '#')}", field_key(name), label
            )
        return
    if not _is_string_dtype(dtype):
        return  # k-space, images and other numbers
    field = field_key(shown.rsplit("/", 1)[-1])
    if ds.shape == () or ds.size * max(dtype.itemsize, 8) <= MAX_STRING_DATASET:
        yield from _python_values(ds[()], where, field, label)
        return
    step = max(1, ds.shape[0] * MAX_STRING_DATASET // (ds.size * max(dtype.itemsize, 8)))
    for start in range(0, ds.shape[0], step):  # a large one a slab at a time
        yield from _python_values(ds[start : start + step], where, field, label)


def _is_string_dtype(dtype: np.dtype) -> bool:
    """Strings, fixed or variable length (a variable-length float array is also kind ``O``)."""
    return h5py.check_string_dtype(dtype) is not None or dtype.kind in "SU"


def _python_values(value: object, where: str, field: str, label: Label) -> Iterator[Value]:
    """Values of an attribute or dataset: strings (an XML one element by element) or numbers."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biufc":
            for item in value.ravel()[:1024].tolist():
                yield where, field, str(item), V.NUMBER
            return
        for item in value.ravel().tolist():
            yield from _python_values(item, where, field, label)
        return
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = _decode(value)
    if isinstance(value, bool | int | float | complex):
        yield where, field, str(value), V.NUMBER
    elif isinstance(value, str):
        if value.lstrip().startswith("<"):
            yield from xml_values(value, where, label)
        else:
            yield where, field, value, _text_class(field)
    elif value is not None:
        yield where, field, str(value), V.TEXT


def xml_values(text: str, where: str, label: Label) -> Iterator[Value]:
    """Each element's text and attributes (and comments) of an XML value; unparsable: the text."""
    builder = ET.TreeBuilder(insert_comments=True, insert_pis=True)
    parser = ET.XMLParser(target=builder)
    try:
        parser.feed(text)
        root = parser.close()
    except ET.ParseError:
        yield where, "", text, V.TEXT
        return

    def walk(element: ET.Element, path: str) -> Iterator[Value]:
        for index, child in enumerate(element):
            if not isinstance(child.tag, str):  # a comment or processing instruction
                if child.text:
                    yield f"{path}>comment", "", child.text, V.TEXT
                continue
            name = child.tag.rsplit("}", 1)[-1]
            yield f"{path}>element name {index + 1}", "", name, V.TEXT
            here = f"{path}>{label(name, f'element {index + 1}')}"
            field = field_key(name)
            if child.text and child.text.strip():
                yield here, field, child.text, _text_class(field)
            for attribute, value in child.attrib.items():
                yield f"{here} attribute", "", attribute, V.TEXT
                yield (
                    f"{here} attribute {label(attribute, '#')}",
                    field_key(attribute),
                    value,
                    V.TEXT,
                )
            if child.tail and child.tail.strip():
                yield f"{here} tail", "", child.tail, V.TEXT
            yield from walk(child, here)

    if root.text and root.text.strip():
        yield where, "", root.text, V.TEXT
    yield from walk(root, where)


def _text_class(field: str) -> ValueClass:
    return V.NAME if _PERSON_FIELD.search(field) else V.TEXT


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


# -- tables -------------------------------------------------------------------------


def parquet_values(path: Path, label: Label) -> Iterator[Value]:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UnreadableOutput("Parquet", exc) from None
    metadata = table.schema.metadata or {}
    for key, value in metadata.items():
        yield "parquet metadata key", "", _decode(key), V.TEXT
        yield "parquet metadata", "", _decode(value), V.TEXT
    for index, name in enumerate(table.column_names):
        yield f"parquet column name #{index + 1}", "", name, V.TEXT
        column = table.column(index)
        shown = label(name, f"#{index + 1}")
        field = field_key(name)
        kind = column.type
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        numeric = numeric or pa.types.is_decimal(kind) or pa.types.is_boolean(kind)
        cls = V.NUMBER if numeric else _text_class(field)
        for row, cell in enumerate(column.to_pylist(), start=1):
            if cell is None:
                continue
            where = f"parquet column {shown} row {row}"
            if isinstance(cell, list | dict):
                yield where, field, json.dumps(cell, default=str, ensure_ascii=False), V.TEXT
            elif isinstance(cell, bytes):
                yield where, field, _decode(cell), cls
            else:
                yield where, field, str(cell), cls


def csv_values(path: Path, label: Label) -> Iterator[Value]:
    text = _decode(path.read_bytes()).removeprefix("\ufeff")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    width = max(len(r) for r in rows)
    for index in range(width):
        name = header[index] if index < len(header) else ""
        yield f"csv column name #{index + 1}", "", name, V.TEXT
        cells = [r[index] if index < len(r) else "" for r in body]
        numeric = all(_NUMBER.fullmatch(c) for c in cells if c)
        field = field_key(name)
        cls = V.NUMBER if numeric else _text_class(field)
        shown = label(name, f"#{index + 1}") if name else f"#{index + 1}"
        for row, cell in enumerate(cells, start=1):
            if cell:
                yield f"csv column {shown} row {row}", field, cell, cls


# -- JSON, text, bytes ------------------------------------------------------------


def json_values(path: Path, label: Label) -> Iterator[Value]:
    text = _decode(path.read_bytes())
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        yield from _text_lines(text)
        return

    def walk(node: object, where: str, field: str) -> Iterator[Value]:
        if isinstance(node, dict):
            for index, (key, value) in enumerate(node.items()):
                yield f"json key #{index + 1} of {where}", "", str(key), V.TEXT
                yield from walk(
                    value, f"{where}.{label(str(key), f'#{index + 1}')}", field_key(str(key))
                )
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{where}[{index}]", field)
        elif isinstance(node, bool | int | float):
            yield f"json {where}", field, str(node), V.NUMBER
        elif isinstance(node, str):
            yield f"json {where}", field, node, _text_class(field)

    yield from walk(document, "$", "")


def other_values(path: Path) -> Iterator[Value]:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        for match in _PRINTABLE.finditer(data):
            yield f"bytes at offset {match.start()}", "", _decode(match.group()), V.TEXT
        return
    yield from _text_lines(_decode(data))


def _text_lines(text: str) -> Iterator[Value]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"line {number}", "", line, V.TEXT
