"""Free text in the Markdown reports reads as itself, checked by a CommonMark parser with
inline HTML and GitHub's tables on (markdown-it-py, which Rich depends on): no value adds a
tag, link or image, starts a heading or list, or ends its table row."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from abflow.analysis.markdown import markdown_text

MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

PIECES = [
    "> ",
    "+ ",
    "2) ",
    "--",
    "$x$",
    "@team ",
    "a_b",
    "__",
    *"\\`*_[]<>|&#~!-+=()0123456789.:/ ax\n\t\r{}\"'",
    "<img src=x onerror=alert(1)>",
    "</script>",
    "![p](http://evil/p.png)",
    "[link](http://evil)",
    "[a]: http://evil",
    "&amp;",
    "&#60;",
    "<!--",
    "```",
    "~~",
    "***",
    "1. ",
    "- ",
    "    ",
    "\u2028",
]
HOSTILE = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
)


def _text_of(tokens: list[Token]) -> str:
    """The inline text of ``tokens``, failing on any inline token but text."""
    parts: list[str] = []
    for token in tokens:
        for child in token.children or []:
            assert child.type in {"text", "softbreak"}, (child.type, child.content)
            parts.append(child.content)
    return " ".join("".join(parts).split())


def _shown(text: str) -> str:
    return " ".join(text.split())


@settings(max_examples=3000, deadline=None)
@given(HOSTILE)
def test_escaped_text_reads_as_itself_in_a_cell_a_heading_and_a_list_item(text: str) -> None:
    escaped = markdown_text(text)
    assert not {"\n", "\r"} & set(escaped)

    table = MARKDOWN.parse(f"| {escaped} | x |\n|---|---|\n| {escaped} | y |\n")
    cells = [token for token in table if token.type == "inline"]
    assert len(cells) == 4  # neither row gained or lost a cell
    assert _text_of(cells[:1]) == _text_of(cells[2:3]) == _shown(text)

    heading = MARKDOWN.parse(f"## ✅ {escaped} — ship\n")
    assert [t.type for t in heading] == ["heading_open", "inline", "heading_close"]
    assert _text_of(heading) == _shown(f"✅ {text} — ship")

    if _shown(text):
        item = MARKDOWN.parse(f"- {escaped}\n")
        assert [t.type for t in item][:3] == [
            "bullet_list_open",
            "list_item_open",
            "paragraph_open",
        ]
        assert [t.type for t in item].count("bullet_list_open") == 1
        assert _text_of([t for t in item if t.type == "inline"]) == _shown(text)
