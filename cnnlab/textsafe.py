"""User and imported text (run names, status messages, tags, error texts quoting them) shown as text.

Streamlit renders st.error/warning/info/success/caption/toast/markdown as Markdown, so a run name
`![x](http://host/beacon.png)` would make every viewer's browser fetch that URL and `[x](url)` would be a
link; Plotly renders `<a href>`, `<b>` and friends in trace names and hover text. Every piece of such text
passes through one of these before it is drawn.
"""

from __future__ import annotations

import re
from typing import Any

# Escaped: what makes images, links, autolinks, HTML, code, emphasis, math and tables. Left alone (so messages
# read and search the same in source and on screen): punctuation that only matters at a line start, which
# is escaped there, and underscores inside words (CommonMark never reads those as emphasis).
_MD_ALWAYS = re.compile(r"([\\`*\[\]{}<>#|~$!&@])")
_MD_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_MD_LINE_START = re.compile(r"^([ \t]*)([-+=]|[0-9]+[.)])", re.M)
_MD_AUTOLINK = re.compile(r"(?i)(\b(?:https?|ftp|mailto|file|data|javascript)):|(\bwww)\.")


def md_text(text: Any) -> str:
    """`text` escaped for an element that renders Markdown: it shows as typed and nothing in it is a link."""
    out = _MD_ALWAYS.sub(r"\\\1", str(text))
    out = _MD_UNDERSCORE.sub(r"\\_", out)
    out = _MD_AUTOLINK.sub(lambda m: f"{m.group(1)}\\:" if m.group(1) else f"{m.group(2)}\\.", out)
    return _MD_LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)[:-1]}\\{m.group(2)[-1]}", out)


def plot_text(text: Any) -> str:
    """`text` escaped for Plotly labels (trace names, hover templates), which interpret a subset of HTML."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("%{", "%&#123;"))  # hovertemplate placeholders
