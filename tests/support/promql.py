"""Metric names referenced by a PromQL expression (enough of PromQL for our rules/dashboards).

Used to prove that every name an alert or panel reads exists in the live exporter output: a
misspelt metric makes PromQL return nothing, which an alert shows as "never fires".
"""

from __future__ import annotations

import re

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
             "group_left", "group_right", "inf", "nan"}
_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        word = m.group(0)
        after = text[m.end():].lstrip()
        before = text[:m.start()]
        if after.startswith("("):  # a function call
            continue
        if word.lower() in _KEYWORDS:
            continue
        if re.search(r"[0-9.]$", before) or re.fullmatch(r"[0-9]+[smhdwy]", word):
            continue  # part of a number or a duration
        names.add(word)
    return names
