"""A :class:`~bench.report.model.Report` as one self-contained HTML page (``index.html``: inline CSS and JS,
pictures beside it, sortable tables). Every string from a result or a file name goes through :func:`e`."""

from __future__ import annotations

import html
from typing import Any

from bench.report.model import BASELINE_METHOD, Report, Section, describe_group, warnings_of


def e(text: Any) -> str:
    return html.escape(str(text), quote=True)


_CSS = """
:root{color-scheme:light;--fg:#1d2330;--muted:#5b6474;--line:#d9dee7;--head:#f1f4f9;--zebra:#fafbfd;--accent:#2456b3;--warn:#8a5a00;--warnbg:#fff6e0}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:#fff}
main{max-width:1280px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:24px;margin:4px 0 4px}h2{font-size:19px;margin:36px 0 6px;padding-top:8px;border-top:1px solid var(--line)}
.meta,.desc,figcaption,.notes{color:var(--muted);font-size:13px}
nav{margin:10px 0 0;font-size:14px}nav a{color:var(--accent);margin-right:14px;text-decoration:none}nav a:hover{text-decoration:underline}
.warn{background:var(--warnbg);color:var(--warn);border-left:4px solid #e0a400;padding:6px 10px;margin:8px 0;font-size:14px}
.scroll{overflow-x:auto;margin:10px 0;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:14px;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);white-space:nowrap;text-align:left}
th{background:var(--head);position:sticky;top:0;cursor:pointer;user-select:none;font-weight:600}
th:hover{background:#e4e9f2}th:focus{outline:2px solid var(--accent);outline-offset:-2px}
th.num,td.num{text-align:right}
th[aria-sort=ascending]::after{content:" ▲";font-size:10px}th[aria-sort=descending]::after{content:" ▼";font-size:10px}
tbody tr:nth-child(even){background:var(--zebra)}tbody tr:hover{background:#eef3fb}
tr.baseline td:first-child{font-style:italic}
sup{color:var(--muted)}
figure{margin:18px 0}figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
ol.notes{margin:4px 0 0 0;padding-left:22px}
code{font-size:13px}
"""

# Sort any table by any column: numbers by value, text by locale order, empty cells always last.
_JS = """
(function(){
  function sortTable(table, col, th){
    var dir = th.getAttribute('aria-sort') === 'descending' ? 'ascending' : 'descending';
    if (th.getAttribute('aria-sort') === null && th.dataset.type !== 'num') dir = 'ascending';
    Array.prototype.forEach.call(th.parentNode.cells, function(c){ c.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir);
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows), num = th.dataset.type === 'num';
    rows.sort(function(a, b){
      var x = a.cells[col].getAttribute('data-sort'), y = b.cells[col].getAttribute('data-sort');
      var xm = x === null || x === '', ym = y === null || y === '';
      if (xm || ym) return xm === ym ? 0 : (xm ? 1 : -1);
      var r = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
      return dir === 'ascending' ? r : -r;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, col){
      th.tabIndex = 0;
      th.addEventListener('click', function(){ sortTable(table, col, th); });
      th.addEventListener('keydown', function(ev){ if (ev.key === 'Enter' || ev.key === ' '){ ev.preventDefault(); sortTable(table, col, th); } });
    });
  });
})();
"""


def _attr(name: str, value: Any) -> str:
    return "" if value is None else f' {name}="{e(value)}"'


def _html_table(section: Section, idx: int) -> list[str]:
    t = section.table
    out = [f'<div class="scroll"><table class="sortable" id="table-{idx}">', "<thead><tr>"]
    for h in t.headers:
        out.append(f'<th scope="col"{_attr("class", "num" if h.numeric else None)}{_attr("data-type", "num" if h.numeric else "text")}'
                   f'{_attr("data-key", h.key)}{_attr("title", h.title)}>{e(h.text)}</th>')
    out.append("</tr></thead><tbody>")
    for row in t.rows:
        cls = "baseline" if row[0].sort == BASELINE_METHOD else None  # the sort key is the method, the text its label
        out.append(f"<tr{_attr('class', cls)}>")
        for h, c in zip(t.headers, row):
            body = e(c.text)
            if c.bold:
                body = f"<strong>{body}</strong>"
            if c.note:
                body += f'<sup><a href="#note-{idx}-{c.note}">{c.note}</a></sup>'
            sort = None if c.sort is None else (repr(c.sort) if isinstance(c.sort, float) else c.sort)
            out.append(f"<td{_attr('class', 'num' if h.numeric else None)}{_attr('data-sort', sort)}{_attr('title', c.title)}>{body}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    if t.notes:
        out.append('<ol class="notes">' + "".join(f'<li id="note-{idx}-{i}">{e(n)}</li>' for i, n in enumerate(t.notes, 1)) + "</ol>")
    return out


def render_html(report: Report) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>colorbench leaderboard</title>", f"<style>{_CSS}</style></head><body><main>",
           "<h1>colorbench leaderboard</h1>",
           f'<p class="meta">Generated {e(report.created)} from the results under <code>{e(report.root)}</code>. '
           "Values are read from stored results, never recomputed. Click a column heading to sort; "
           "± is half the width of the stored 95% confidence interval; bold is the best value of a column.</p>"]
    if len(report.sections) > 1 or report.failed:
        links = [f'<a href="#section-{i}">{e(s.group.title)}</a>' for i, s in enumerate(report.sections)]
        if report.failed:
            links.append('<a href="#failed">failed runs</a>')
        out.append("<nav>" + "".join(links) + "</nav>")
    for i, s in enumerate(report.sections):
        out.append(f'<section id="section-{i}"{_attr("data-dataset", s.group.dataset)}{_attr("data-split", s.group.split)}>')
        out.append(f"<h2>{e(s.group.title)}</h2>")
        out += [f'<p class="warn">{e(w)}</p>' for w in warnings_of(s)]
        out.append(f'<p class="desc">{e(describe_group(s.group))}</p>')
        out += _html_table(s, i)
        for f in s.figures:
            out.append(f'<figure class="{e(f.kind)}"><img src="{e(f.path.as_posix())}" alt="{e(f.caption)}" loading="eager">'
                       f"<figcaption>{e(f.caption)}</figcaption></figure>")
        if s.notes:
            out.append('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in s.notes) + "</ul>")
        out.append("</section>")
    if report.failed:
        out.append('<section id="failed"><h2>Failed runs</h2><div class="scroll"><table class="sortable" id="table-failed"><thead><tr>'
                   + "".join(f'<th scope="col" data-type="text">{h}</th>' for h in ("method", "dataset", "split", "seed", "stage", "error"))
                   + "</tr></thead><tbody>")
        for r in report.failed:
            cells = [r.method, r.dataset, r.split, r.seed, r.data.get("stage", "evaluate"), str(r.data.get("error", "unknown error"))[:300]]
            out.append("<tr>" + "".join(f"<td{_attr('data-sort', c)}>{e(c)}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table></div></section>")
    out.append(f"</main><script>{_JS}</script></body></html>")
    return "\n".join(out) + "\n"
