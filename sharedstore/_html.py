"""HTML previews for notebooks (``_repr_html_``): kind, size and the first few entries."""

from __future__ import annotations

import html
import itertools

from .errors import human_bytes

PREVIEW = 10


def _esc(x) -> str:
    text = repr(x)
    return html.escape(text if len(text) <= 80 else text[:77] + "...")


def table(title: str, rows, headers=("key", "value")) -> str:
    head = "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<div><b>{html.escape(title)}</b><table><tr>{head}</tr>{body}</table></div>"


def mapping(title: str, items, n: int) -> str:
    rows = [(_esc(k), _esc(v)) for k, v in itertools.islice(items, PREVIEW)]
    if n > PREVIEW:
        rows.append(("...", f"{n - PREVIEW} more"))
    return table(title, rows)


def store(s) -> str:
    st = s.stats()
    objects = ", ".join(f"{k} {v}" for k, v in st["objects"].items()) or "none"
    title = (f"sharedstore.Store {s.name!r}: {human_bytes(st['used'])} used of "
             f"{human_bytes(st['reserved'])} reserved; objects: {objects}; "
             f"{st['workers']} attached")
    return mapping(title, iter(s.items()), len(s))


def vector(v) -> str:
    n = len(v)
    arr = v[:PREVIEW] if n else []
    what = v.struct.name if v.struct is not None else str(v.dtype)
    title = f"{type(v).__name__} of {what}: {n} slots"
    rows = [(str(i), _esc(x.item() if hasattr(x, "item") and v.struct is None else x))
            for i, x in enumerate(arr)]
    if n > PREVIEW:
        rows.append(("...", f"{n - PREVIEW} more"))
    return table(title, rows, ("index", "value"))
