"""Checks of RecBole atomic files before RecBole reads them, so that a bad file gets a message naming it."""

from __future__ import annotations

from pathlib import Path

from recbole_hnlm.errors import DataFormatError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


def check_atomic_file(path: str | Path, separator: str = "\t", need_rows: bool = True) -> int:
    """Check the header and every row of one atomic file; return the number of data rows."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().rstrip("\r\n")
        if not header:
            raise DataFormatError(f"{path}: the file is empty; the first line must be a header like user_id:token.")
        columns = header.split(separator)
        float_columns = []
        for index, column in enumerate(columns):
            name, _, field_type = column.rpartition(":")
            if not name or field_type not in FIELD_TYPES:
                raise DataFormatError(
                    f"{path}:1: header column '{column}' must be name:type with type one of {', '.join(FIELD_TYPES)} "
                    "(columns separated by tabs). Fix the header line."
                )
            if field_type == "float":
                float_columns.append(index)
        rows = 0
        for line_number, line in enumerate(handle, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split(separator)
            if len(fields) != len(columns):
                raise DataFormatError(
                    f"{path}:{line_number}: {len(fields)} tab-separated fields but the header has {len(columns)}. "
                    "Fix or delete that line."
                )
            for index in float_columns:
                if fields[index] != "":
                    try:
                        float(fields[index])
                    except ValueError:
                        raise DataFormatError(
                            f"{path}:{line_number}: '{fields[index]}' in column {columns[index]} is not a number."
                        ) from None
            rows += 1
    if need_rows and rows == 0:
        raise DataFormatError(f"{path}: the file has a header but no interactions; a dataset needs some.")
    return rows


def check_dataset_files(config) -> None:
    """Check every atomic file RecBole will load for ``config``'s dataset."""
    folder = Path(config["data_path"])
    name = config["dataset"]
    separator = config["field_separator"]
    benchmark = config["benchmark_filename"]
    inter_files = [f"{name}.{part}.inter" for part in benchmark] if benchmark else [f"{name}.inter"]
    for file in inter_files:
        check_atomic_file(folder / file, separator, need_rows=file == inter_files[0] or not benchmark)
    load_col = config["load_col"] or {}
    for suffix in ("user", "item"):
        if suffix in load_col and (folder / f"{name}.{suffix}").is_file():
            check_atomic_file(folder / f"{name}.{suffix}", separator)
