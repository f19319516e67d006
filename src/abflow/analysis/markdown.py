"""Free text in Markdown reports, shown as itself.

Reports go to pull-request comments and CI job summaries, where Markdown and inline HTML are
rendered. Some of their text comes from outside abflow: a spec's ``name``, feature names and
attribute values sent to the gateway, reasons typed by people. Such a value must not add a
link, an image or a tag, start a heading, or end its table row or list item.
"""

from __future__ import annotations

import re

__all__ = ["markdown_text"]

_SPECIAL = re.compile(r"([\\`*_\[\]<>|&#~!])")
"""What can start markup in a line's inline text (CommonMark and GitHub's tables,
strikethrough and inline HTML); each is backslash-escaped, which CommonMark allows for any
ASCII punctuation."""


_LIST_MARKER = re.compile(r"^(?:([-+=])|(\d+)([.)]))")
"""A line-start that would open a list (or underline a heading) where the text begins a list
item or a quote."""


def markdown_text(text: str) -> str:
    """``text`` escaped to read as itself in one line of Markdown: line breaks become spaces,
    and the spaces around it go (leading ones would indent it into a code block)."""
    escaped = _SPECIAL.sub(r"\\\1", " ".join(text.splitlines()).strip())
    return _LIST_MARKER.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", escaped)
