"""Small HTML report pages: one template, sections of HTML, tables from rows. Used by every report."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from dermascan import _io

_env = Environment(loader=PackageLoader("dermascan", "templates"), autoescape=select_autoescape(["html"]))


@dataclass
class Section:
    heading: str
    html: str

    @property
    def id(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An HTML table; floats are shown with 3 decimals, None/NaN as an em dash."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "—"
        if isinstance(v, float):
            return f"{v:.3f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(src: str | Path, alt: str = "") -> str:
    return f'<img src="{html.escape(str(src))}" alt="{html.escape(alt)}">'


def paragraph(text: str, cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<p{attr}>{html.escape(text)}</p>"


def write_page(path: str | Path, title: str, sections: Sequence[Section], subtitle: str = "") -> Path:
    from dermascan import __version__

    page = _env.get_template("page.html").render(title=title, subtitle=subtitle, sections=sections, version=__version__)
    return _io.write_text(path, page)
