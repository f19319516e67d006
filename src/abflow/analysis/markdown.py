"""Free text in Markdown reports, shown as itself.

Reports go to pull-request comments and CI job summaries, where Markdown and inline HTML are
rendered. Some of their text comes from outside abflow: a spec's ``name``, feature names and
attribute values sent to the gateway, reasons typed by people. Such a value must not add a
link, an image or a tag, start a heading, or end its table row or list item.
"""

from __future__ import annotations

import re

__all__ = ["markdown_text"]

_SPECIAL = re.compile(r"([\\`*\[\]<|&#~!$@]|(?<![^\W_])_|_(?![^\W_]))")
"""What can start markup anywhere in a line's inline text (CommonMark and GitHub's tables,
strikethrough, inline HTML, ``$`` maths and ``@`` mentions); each is backslash-escaped, which
CommonMark allows for any ASCII punctuation. An underscore between two letters or digits
never emphasises anything, so ``false_positive_rate`` stays as it is."""

_BLOCK_START = re.compile(r"^(?:([>+-])|(\d{1,9})([.)])(?=\s|$))")
"""What opens a quote, a list or a rule (``- --``) when the text starts a list item."""


def _escape_block_start(match: re.Match[str]) -> str:
    if match[1] is None:
        return f"{match[2]}\\{match[3]}"
    return f"\\{match[1]}"


def markdown_text(text: str) -> str:
    """``text`` escaped to read as itself in one line of Markdown: line breaks become spaces,
    and the spaces around it go (leading ones would indent it into a code block)."""
    escaped = _SPECIAL.sub(r"\\\1", " ".join(text.splitlines()).strip())
    return _BLOCK_START.sub(_escape_block_start, escaped)
