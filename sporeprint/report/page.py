"""One self-contained HTML page: sections of figures (inline base64 PNG) with a short text
beside each, tables, headline numbers and one-line notes. No scripts, fonts or links to
other files. Every piece of text is HTML-escaped here: data strings (species names,
regions, reasons) are never markup."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from html import escape


@dataclass
class Figure:
    png: bytes
    alt: str
    shows: str  # what the figure shows
    look_for: str  # what to look for


@dataclass
class Table:
    columns: list[str]
    rows: list[list]
    caption: str = ""


@dataclass
class Note:
    text: str
    kind: str = "note"  # "note"; "absent" (the section lacks its data); "omitted" (a figure
    # left out because it would be empty or degenerate, saying why)


@dataclass
class Tiles:
    """Headline numbers: ``(key, value, label)`` each, drawn as a row of tiles."""

    items: list[tuple[str, str, str]]


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)

    def absent(self, text: str) -> Section:
        self.blocks.append(Note(text, "absent"))
        return self

    @property
    def figures(self) -> int:
        return sum(isinstance(b, Figure) for b in self.blocks)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#212121;background:#fafafa}
header{background:#263238;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:24px}header p{margin:2px 0;color:#cfd8dc;font-size:14px}
nav{padding:8px 32px;background:#eceff1;font-size:14px}nav a{margin-right:16px;color:#1565c0}
main{padding:8px 32px 40px;max-width:1250px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;margin:18px 0;padding:6px 20px 14px}
h2{font-size:20px;border-bottom:2px solid #c62828;padding-bottom:4px}
figure{display:flex;gap:20px;align-items:flex-start;margin:14px 0;flex-wrap:wrap}
figure img{max-width:760px;width:100%;border:1px solid #eee}
figcaption{flex:1;min-width:240px;font-size:14px;line-height:1.45}
figcaption b{display:block;margin-top:6px}
table{border-collapse:collapse;font-size:13px;margin:10px 0}
th,td{border:1px solid #e0e0e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eceff1}td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
p.absent{color:#6d4c41;background:#fff8e1;border-left:4px solid #f9a825;padding:6px 10px}
p.note{font-size:14px}
p.omitted{font-size:14px;color:#546e7a;border-left:4px solid #b0bec5;padding:4px 10px}
div.tiles{display:flex;flex-wrap:wrap;gap:14px;margin:12px 0}
div.tile{flex:1;min-width:200px;border:1px solid #e0e0e0;border-top:4px solid #c62828;
border-radius:4px;padding:8px 12px}
div.tile b{display:block;font-size:26px;color:#b71c1c}div.tile span{font-size:13px}
footer{font-size:12px;color:#757575;padding:0 32px 24px}
"""


def _cell(v) -> str:
    if isinstance(v, float):
        return f'<td class="num">{v:.4g}</td>'
    if isinstance(v, int):
        return f'<td class="num">{v:,}</td>'
    if isinstance(v, list):
        return "<td>" + "<br>".join(escape(str(x)) for x in v) + "</td>"
    return f"<td>{escape('' if v is None else str(v))}</td>"


def _block(b) -> str:
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(b.alt)}">'
                f"<figcaption><b>What it shows</b>{escape(b.shows)}"
                f"<b>What to look for</b>{escape(b.look_for)}</figcaption></figure>")
    if isinstance(b, Table):
        head = "".join(f"<th>{escape(c)}</th>" for c in b.columns)
        body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in b.rows)
        cap = f"<caption>{escape(b.caption)}</caption>" if b.caption else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, Tiles):
        return '<div class="tiles">' + "".join(
            f'<div class="tile" data-key="{escape(k)}"><b>{escape(v)}</b><span>{escape(t)}'
            "</span></div>" for k, v, t in b.items) + "</div>"
    if isinstance(b, Note):
        return f'<p class="{escape(b.kind)}">{escape(b.text)}</p>'
    raise TypeError(f"unknown report block {type(b).__name__}")


def render(title: str, subtitle: list[str], sections: list[Section], footer: str) -> str:
    nav = "".join(f'<a href="#{escape(s.id)}">{escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{escape(s.id)}"><h2>{escape(s.title)}</h2>'
                   + "".join(_block(b) for b in s.blocks) + "</section>" for s in sections)
    sub = "".join(f"<p>{escape(line)}</p>" for line in subtitle)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{escape(title)}</h1>{sub}</header><nav>{nav}</nav>"
            f"<main>{body}</main><footer>{escape(footer)}</footer></body></html>\n")
