"""An item's text from a template of parts, compiled to a native Spark expression.

Each part is a string with ``{column}`` placeholders. A part is used only when every column it
names is non-empty (so "in {locality}" vanishes for POIs without a locality instead of leaving
"in ."), and the used parts are joined with the separator.
"""
from __future__ import annotations

import re

from pyspark.sql import Column
from pyspark.sql import functions as F

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def template_columns(parts: list[str]) -> list[str]:
    return sorted({name for part in parts for name in _PLACEHOLDER.findall(part)})


def validate_template(parts: list[str], available: list[str], key: str = "dataset.text_template") -> None:
    for i, part in enumerate(parts):
        names = _PLACEHOLDER.findall(part)
        if not names:
            raise ValueError(f"{key}[{i}]: part {part!r} names no {{column}}")
        missing = [n for n in names if n not in available]
        if missing:
            raise ValueError(f"{key}[{i}]: column(s) {missing} not in the raw item file")


def text_expression(parts: list[str], separator: str) -> Column:
    """Spark expression producing the item text (never null; '' when no part applies)."""
    rendered = []
    for part in parts:
        pieces: list[Column] = []
        conditions: list[Column] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(part):
            if match.start() > pos:
                pieces.append(F.lit(part[pos : match.start()]))
            value = F.trim(F.col(match.group(1)))
            conditions.append(value.isNotNull() & (value != ""))
            pieces.append(value)
            pos = match.end()
        if pos < len(part):
            pieces.append(F.lit(part[pos:]))
        condition = conditions[0]
        for c in conditions[1:]:
            condition = condition & c
        rendered.append(F.when(condition, F.concat(*pieces)))
    # concat_ws skips nulls: parts whose columns are empty disappear with their separator.
    return F.concat_ws(separator, *rendered)


def render_python(parts: list[str], separator: str, row: dict) -> str:
    """The same rendering in plain Python (used by tests and synthetic data generators)."""
    out = []
    for part in parts:
        names = _PLACEHOLDER.findall(part)
        values = {n: (str(row.get(n) or "").strip()) for n in names}
        if all(values.values()):
            out.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], part))
    return separator.join(out)
