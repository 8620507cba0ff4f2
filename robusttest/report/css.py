"""The HTML report's stylesheets: one for the screen, one for print (and PDF).

Inline in the page (the report is one self-contained file); no fonts, images or imports
from anywhere, so the Content-Security-Policy can forbid every fetch.
"""

from __future__ import annotations

CSS = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--pass:#1A7F37;--fail:#B42318;
--nogate:#57606a;--error:#9A3412;--bg2:#f6f8fa}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;
color:var(--fg);margin:0 auto;max-width:1320px;padding:16px 24px 48px;line-height:1.45;
font-size:14px;background:#fff}
h1{font-size:22px;margin:4px 0 2px}h2{font-size:19px;margin:28px 0 8px;
border-bottom:2px solid var(--line);padding-bottom:4px}h3{font-size:16px;margin:20px 0 6px}
h4{font-size:14px;margin:14px 0 4px}
code{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px;
overflow-wrap:anywhere}
.muted{color:var(--muted);font-weight:normal;font-size:13px}
.meta{color:var(--muted);margin:0 0 12px}
nav{margin:8px 0;font-size:13px}nav a{margin-right:14px;color:#0550ae}
.banner{color:#fff;border-radius:8px;padding:14px 18px;margin:10px 0 12px}
.b-passed{background:#1A7F37}.b-failed{background:#B42318}.b-incomplete{background:#B54708}
.verdict-word{font-size:30px;font-weight:800;letter-spacing:.04em}
.verdict-counts{font-size:15px;margin-top:2px}
.banner .failed-h{color:#fff;border:0;font-size:15px;margin:10px 0 4px;padding:0}
.banner ul.failed{margin:0;padding-left:0;list-style:none;background:#fff;color:var(--fg);
border-radius:6px;padding:8px 12px;max-height:340px;overflow:auto}
.banner ul.failed li{margin:3px 0}
.banner .incomplete{background:#fff;color:var(--fg);border-radius:6px;padding:8px 12px;margin:8px 0 0}
.howto{background:var(--bg2);border-left:4px solid #0969da;padding:8px 12px;margin:8px 0}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:700;
white-space:nowrap;border:1px solid currentColor}
.v-pass{color:var(--pass)}.v-fail{color:#fff;background:var(--fail);border-color:var(--fail)}
.v-no-gate{color:var(--nogate);font-weight:500}.v-error{color:#fff;background:var(--error)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px}
th,td{padding:3px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--bg2);font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.r-fail td{background:#fdecea}tr.r-error td{background:#fff1e6}
.reason{color:var(--muted);font-size:12px;white-space:normal}
.lvl{color:var(--muted)}
a.override{font-size:11px;color:var(--fail);text-decoration:none;white-space:nowrap}
tr.override td{background:#fff4e5}
table.heatmap td.heat{text-align:center;font-variant-numeric:tabular-nums;white-space:nowrap;
border:1px solid #fff;min-width:52px;padding:2px 4px;font-size:12.5px;line-height:1.25}
table.heatmap thead th{text-align:center}
table.heatmap th.fam{text-align:center;border-left:2px solid #fff}
table.heatmap td.empty{background:#eee}
.sym{font-weight:800}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #999;vertical-align:middle}
.legend{font-size:12.5px;color:var(--muted)}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:10px}
figure{margin:0}figure.plot{border:1px solid var(--line);border-radius:6px;padding:4px}
svg.curve{width:100%;height:auto;display:block}
table.gallery td,table.gallery th{border:0;padding:3px}
table.gallery th.rowh{white-space:nowrap;font-size:11.5px;vertical-align:middle}
table.heatmap th.rowh,table.heatmap td{vertical-align:middle}
table.gallery thead th{font-size:12px;vertical-align:bottom}
table.gallery img{width:132px;height:auto;display:block;image-rendering:auto;border-radius:3px}
figcaption{font-size:11.5px;color:var(--muted);max-width:160px;overflow-wrap:anywhere}
.strip{display:flex;flex-wrap:wrap;gap:10px}
figure.worst{border:1px solid var(--line);border-radius:6px;padding:6px;width:160px}
figure.worst img{width:146px;height:auto;display:block}
.wc{font-size:12px;margin-bottom:3px}
.noimg{width:132px;height:132px;background:#eee;color:var(--muted);font-size:12px;
display:flex;align-items:center;justify-content:center}
.sr{position:absolute;left:-9999px}
table.kv th{width:190px;font-weight:600;background:var(--bg2)}
pre{background:var(--bg2);padding:8px;overflow:auto;max-height:420px;font-size:12px}
details{margin:6px 0}summary{cursor:pointer;color:#0550ae}
footer{margin-top:32px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);
padding-top:8px}
td.case code{white-space:nowrap}
figcaption{white-space:pre-line}
"""

# Printed (to paper or PDF, the form a regulatory file takes): landscape pages, every
# column of every table on the page (no scroll boxes to clip them), heat-map colours kept,
# no row or figure cut across two pages, page numbers in the margin.
PRINT_CSS = """
@page{size:landscape;margin:11mm 9mm 12mm;
@bottom-right{content:"page " counter(page) " of " counter(pages);font-size:8pt;color:#57606a}}
@media print{
*{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{max-width:none;padding:0;font-size:9pt;line-height:1.3}
h1{font-size:15pt}h2{font-size:12.5pt;margin:14px 0 6px}h3{font-size:11pt;margin:10px 0 4px}
h4{font-size:9.5pt}h2,h3,h4{break-after:avoid}
nav{display:none}
.scroll{overflow:visible}
pre,.banner ul.failed{max-height:none;overflow:visible}
table{font-size:7.5pt}th,td{padding:1px 4px}
thead{display:table-header-group}
tr,figure,li,.banner .incomplete{break-inside:avoid}
code{font-size:7pt}
table.cases{width:100%}
table.cases td:nth-child(6),table.cases td:nth-child(8){white-space:normal}
table.heatmap{width:100%}
table.heatmap td.heat{min-width:0;font-size:7pt;padding:1px 2px}
table.heatmap th{font-size:7pt;padding:1px 2px}
table.heatmap th.rowh{white-space:normal;overflow-wrap:anywhere}
.plots{display:grid;grid-template-columns:repeat(3,1fr);gap:6px}
table.gallery{width:100%;table-layout:fixed}
table.gallery thead th:first-child{width:9%}
table.gallery img{width:100%}
table.gallery th.rowh,table.gallery thead th{white-space:normal;overflow-wrap:anywhere;
font-size:6.5pt}
figcaption{max-width:none;font-size:6.5pt}
figure.worst{width:118px;padding:3px}figure.worst img{width:110px}
table.kv th{width:150px}
footer{margin-top:12px}
}
"""
