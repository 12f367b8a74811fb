"""One validated reader for every input file the plugin reads, and the check of the files RecBole reads itself.

Atomic ``.inter``/``.item``/``.user`` files, pre-split ``user item item ...`` text and JSON all pass through here:
the bytes are decoded as UTF-8, a byte-order mark is stripped (or refused where RecBole reads the file), CRLF
line ends are accepted, and every problem is a :class:`DataFormatError` whose one line names the file, the line
and the fix. Atomic rows are split exactly as RecBole's ``pandas.read_csv(engine="python")`` splits them, so that
what passes here is what RecBole loads. This module is a leaf of the import graph: it imports only the errors
and the standard library.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from recbole_hnlm.errors import DataFormatError, DatasetNotFoundError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
BOM = "\ufeff"

# pandas.read_csv, which RecBole uses to load atomic files, reads these strings as missing values, and RecBole
# skips its NaN filter for benchmark files, so an id spelled like this would break loading.
PANDAS_NA_STRINGS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    }
)

SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}
ROW_NOUNS = {"inter": "interactions", "item": "items", "user": "users"}

logger = logging.getLogger()


def token_problem(token: str) -> str:
    """Why ``token`` cannot be a RecBole id, or an empty string when it can."""
    if not token:
        return "is empty"
    if any(char.isspace() for char in token):
        return "contains whitespace"
    if token in PANDAS_NA_STRINGS:
        return "is read as a missing value by pandas/RecBole"
    return ""


def require_file(path: Path, what: str) -> None:
    """Raise DatasetNotFoundError unless ``path`` is an existing file."""
    if not path.is_file():
        raise DatasetNotFoundError(f"{what} file not found: {path}. Check the path (relative paths start at the cwd).")


def read_text(path: Path, allow_bom: bool = True) -> str:
    """The file decoded as UTF-8, without a leading byte-order mark; refuse one when ``allow_bom`` is false."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataFormatError(
            f"{path}:{line}: not valid UTF-8 ({error.reason}). Fix: re-save the file as UTF-8."
        ) from None
    if text.startswith(BOM):
        if not allow_bom:
            raise DataFormatError(
                f"{path}:1: the file starts with a UTF-8 byte-order mark, which RecBole reads as part of the first "
                f"column's name. Fix: re-save it as UTF-8 without a BOM: sed -i '1s/^\\xEF\\xBB\\xBF//' {path}"
            )
        text = text[1:]
    return text


def text_lines(path: Path, allow_bom: bool = True) -> list[str]:
    """The file's lines without their LF or CRLF ends (a final line end adds no empty line)."""
    lines = read_text(path, allow_bom).split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _separator_name(separator: str) -> str:
    return SEPARATOR_NAMES.get(separator, repr(separator))


def _header_columns(text: str, separator: str) -> list[tuple[str, str]] | None:
    """``[(name, type), ...]`` when every column of ``text`` split on ``separator`` is ``name:type``, else None."""
    columns = []
    for column in text.split(separator):
        parts = column.split(":")
        if len(parts) != 2 or not parts[0] or parts[1] not in FIELD_TYPES:
            return None
        columns.append((parts[0], parts[1]))
    return columns


def _other_separator(text: str, separator: str, expected_fields: int | None) -> str:
    """Another separator that splits ``text`` into the expected fields (or a valid header), or ''."""
    for candidate in SEPARATOR_NAMES:
        if candidate == separator or candidate not in text:
            continue
        parts = text.split(candidate)
        if expected_fields is None and len(parts) > 1 and _header_columns(text, candidate):
            return candidate
        if expected_fields is not None and len(parts) == expected_fields:
            return candidate
    return ""


def _wrong_separator_message(path: Path, line: int, found: str, separator: str) -> str:
    expected = (
        "RecBole atomic files are tab-separated"
        if separator == "\t"
        else f"this dataset's field_separator is {separator!r}"
    )
    return (
        f"{path}:{line}: the line is {_separator_name(found)}-separated; {expected}. Fix: re-save the file with "
        f"{_separator_name(separator)}s between fields (or set field_separator to match the file)."
    )


@dataclass
class AtomicTable:
    """The columns and checked rows of one atomic file, every cell a string as RecBole's pandas reads it."""

    path: Path
    names: list[str]
    types: list[str]
    rows: list[list[str]]
    counts: dict[str, int] = field(default_factory=dict)

    def records(self) -> list[dict[str, str]]:
        """Each row as ``{column name: cell}``."""
        return [dict(zip(self.names, row, strict=True)) for row in self.rows]


def _split_row(line: str, separator: str, path: Path, line_number: int) -> list[str]:
    """Split one line as pandas' python engine does, refusing a quote that would run into the next lines."""
    if '"' not in line or len(separator) != 1:
        return line.split(separator)
    try:
        return next(csv.reader([line], delimiter=separator, quotechar='"', doublequote=True, strict=True))
    except csv.Error as error:
        raise DataFormatError(
            f"{path}:{line_number}: unbalanced quote ({error}); RecBole would read the following lines into this "
            'field. Fix: remove the stray " or quote the whole field and double each quote inside it ("").'
        ) from None


def _id_problem(value: str) -> str:
    """Why a cell of an id column would not load as the id it shows, or ''."""
    if not value:
        return "is empty"
    if value in PANDAS_NA_STRINGS:
        return f"'{value}' is read by pandas as a missing value"
    if value != value.strip():
        return f"'{value}' has whitespace around it"
    return ""


def _check_float(value: str, path: Path, line_number: int, column: str) -> None:
    if value in PANDAS_NA_STRINGS:
        return
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise DataFormatError(
            f"{path}:{line_number}: '{value}' in column {column} is not a number. "
            "Fix: write a finite number there, or leave the field empty."
        )


def read_atomic(
    path: Path | str,
    separator: str = "\t",
    required_ids: tuple[str, ...] = (),
    unique_id: str | None = None,
    need_rows: bool = True,
    allow_bom: bool = True,
    keep_rows: bool = True,
) -> AtomicTable:
    """Read and check one atomic file; every id column in ``required_ids`` must be in the header and filled.

    ``unique_id`` names a column whose value identifies a row (an ``.item`` or ``.user`` file): a later row with
    the same id is refused, or dropped and counted when it repeats the earlier row exactly. Blank lines, which
    RecBole skips, are counted. With ``keep_rows=False`` (a large ``.inter`` that RecBole loads itself) the rows
    are checked but not kept.
    """
    path = Path(path)
    require_file(path, "Atomic")
    noun = ROW_NOUNS.get(path.suffix.lstrip("."), "rows")
    lines = text_lines(path, allow_bom)
    if not lines or not lines[0].strip():
        raise DataFormatError(f"{path}:1: the first line must be a header like user_id:token. Fix: add the header.")
    header = lines[0]
    columns = _header_columns(header, separator)
    if columns is None:
        other = _other_separator(header, separator, None)
        if other:
            raise DataFormatError(_wrong_separator_message(path, 1, other, separator))
        bad = next(
            column for column in header.split(separator) if _header_columns(column, separator) is None or not column
        )
        raise DataFormatError(
            f"{path}:1: header column '{bad}' must be name:type with type one of {', '.join(FIELD_TYPES)} "
            f"(columns separated by {_separator_name(separator)}s). Fix the header line."
        )
    names = [name for name, _ in columns]
    types = [kind for _, kind in columns]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated:
        raise DataFormatError(f"{path}:1: column '{repeated}' occurs twice in the header. Fix: rename or drop one.")
    for name in required_ids:
        if name not in names:
            raise DataFormatError(
                f"{path}:1: the header {header.split(separator)} has no {name} column. Fix: name the id column "
                f"{name}:token (or set the dataset's USER_ID_FIELD/ITEM_ID_FIELD to its name)."
            )
    id_indexes = [(names.index(name), name) for name in required_ids]
    float_indexes = [index for index, kind in enumerate(types) if kind == "float"]
    unique_index = names.index(unique_id) if unique_id else None
    header_fields = header.split(separator)
    rows: list[list[str]] = []
    seen_lines: set[str] = set()
    first_line_of: dict[str, tuple[int, list[str]]] = {}
    counts = {"rows": 0, "blank_lines": 0, "duplicate_rows": 0}
    for line_number, line in enumerate(lines[1:], start=2):
        if not line:
            counts["blank_lines"] += 1
            continue
        fields = _split_row(line, separator, path, line_number)
        if len(fields) != len(names):
            other = _other_separator(line, separator, len(names)) if len(fields) == 1 else ""
            if other:
                raise DataFormatError(_wrong_separator_message(path, line_number, other, separator))
            raise DataFormatError(
                f"{path}:{line_number}: {len(fields)} {_separator_name(separator)}-separated fields but the header "
                f"has {len(names)}. Fix or delete that line (a {_separator_name(separator)} inside a text must be "
                'quoted: "a\tb").'
            )
        if fields == header_fields:
            raise DataFormatError(
                f"{path}:{line_number}: the header line is repeated here (were two files joined?). Fix: delete it."
            )
        for index, name in id_indexes:
            problem = _id_problem(fields[index])
            if problem:
                raise DataFormatError(
                    f"{path}:{line_number}: {name} {problem}; RecBole would load it as another or a missing id. "
                    "Fix: write the id as a plain token or delete the line."
                )
        for index in float_indexes:
            _check_float(fields[index], path, line_number, f"{names[index]}:{types[index]}")
        if unique_index is not None:
            key = fields[unique_index]
            if key in first_line_of:
                first_line, first_fields = first_line_of[key]
                if first_fields != fields:
                    raise DataFormatError(
                        f"{path}:{line_number}: {names[unique_index]} '{key}' repeats line {first_line} with other "
                        "values. Fix: keep one of the two lines."
                    )
                counts["duplicate_rows"] += 1
                continue
            first_line_of[key] = (line_number, fields)
        elif line in seen_lines:
            counts["duplicate_rows"] += 1
        else:
            seen_lines.add(line)
        counts["rows"] += 1
        if keep_rows:
            rows.append(fields)
    if need_rows and counts["rows"] == 0:
        raise DataFormatError(
            f"{path}: the file has a header but no {noun}; a dataset needs some. Fix: add rows or remove the file."
        )
    if unique_index is not None and counts["duplicate_rows"]:
        logger.warning(f"{path}: {counts['duplicate_rows']} rows repeat an earlier row exactly; each is read once.")
    elif counts["duplicate_rows"]:
        logger.warning(
            f"{path}: {counts['duplicate_rows']} rows repeat an earlier row exactly; RecBole keeps them unless "
            "rm_dup_inter is set."
        )
    if counts["blank_lines"]:
        logger.info(f"{path}: skipped {counts['blank_lines']} blank lines, as RecBole does.")
    return AtomicTable(path, names, types, rows, counts)


def load_json_object(path: Path) -> dict[str, object]:
    """Load a JSON file whose top level is an object, refusing repeated keys, which json.load would drop."""
    require_file(path, "JSON")

    def refuse_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for key, value in pairs:
            if key in result:
                raise DataFormatError(f"{path}: key '{key}' occurs twice in one object. Fix: keep one of them.")
            result[key] = value
        return result

    try:
        data = json.loads(read_text(path), object_pairs_hook=refuse_repeated_keys)
    except json.JSONDecodeError as error:
        raise DataFormatError(
            f"{path}: invalid JSON at line {error.lineno} column {error.colno} (char {error.pos}): {error.msg}. "
            "Fix the file there or re-export it."
        ) from None
    if not isinstance(data, dict):
        raise DataFormatError(
            f"{path}: the top level must be a JSON object, found {type(data).__name__}. Fix: re-export it as one."
        )
    return data


def check_dataset_files(config) -> dict[str, dict[str, int]]:
    """Check every atomic file RecBole will load for ``config``'s dataset; return each file's counts.

    The counts (rows, blank lines RecBole skips, rows repeating an earlier one) are logged and returned so that
    a caller can record them with the run's results.
    """
    folder = Path(config["data_path"])
    name = config["dataset"]
    separator = config["field_separator"]
    benchmark = config["benchmark_filename"]
    uid, iid = config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]
    inter_files = [f"{name}.{part}.inter" for part in benchmark] if benchmark else [f"{name}.inter"]
    counts = {}
    for file in inter_files:
        table = read_atomic(
            folder / file,
            separator,
            required_ids=(uid, iid),
            need_rows=file == inter_files[0] or not benchmark,
            allow_bom=False,
            keep_rows=False,
        )
        counts[file] = table.counts
    load_col = config["load_col"] or {}
    for suffix, id_field in (("user", uid), ("item", iid)):
        path = folder / f"{name}.{suffix}"
        if suffix in load_col and path.is_file():
            table = read_atomic(path, separator, (id_field,), unique_id=id_field, allow_bom=False, keep_rows=False)
            counts[path.name] = table.counts
    logger.info(f"Checked the atomic files of {name}: {counts}")
    return counts
