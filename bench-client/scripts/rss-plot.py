#!/usr/bin/env python3
"""RSS over time of a deep-queue run as a small SVG, drawn by hand
(matplotlib is not installed here): the broker's VmRSS from rss.tsv
(unix time, phase, KiB, load), one colour per phase, and the messages
queued from depth.tsv (unix time, messages, data MB) on the right axis.

    bench-client/scripts/rss-plot.py OUT_DIR   # writes OUT_DIR/rss.svg
"""
import sys
from pathlib import Path

W, H, L, R, T, B = 760, 360, 70, 80, 30, 50  # size and margins, px
COLOURS = {"fill": "#1f77b4", "restart": "#d62728", "drain": "#2ca02c"}


def read(path, cols):
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            f = line.split("\t")
            if len(f) >= cols:
                rows.append(f)
    return rows


def main():
    out = Path(sys.argv[1])
    rss = [(float(f[0]), f[1], int(f[2]) / 1024) for f in read(out / "rss.tsv", 3)]
    depth = [(float(f[0]), int(f[1])) for f in read(out / "depth.tsv", 2)]
    if not rss:
        sys.exit(f"no samples in {out / 'rss.tsv'}")
    t0 = rss[0][0]
    t1 = max(rss[-1][0], depth[-1][0] if depth else 0)
    mb_max = max(r[2] for r in rss) * 1.1
    n_max = max([d[1] for d in depth] + [1]) * 1.1
    x = lambda t: L + (t - t0) / max(t1 - t0, 1) * (W - L - R)
    y = lambda v, top: H - B - v / top * (H - T - B)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18" font-size="13">{out.name}: broker RSS (MB, left) '
         f'and messages queued (right)</text>']
    for i in range(6):  # grid and both axes' labels
        yy = y(mb_max * i / 5, mb_max)
        s.append(f'<line x1="{L}" x2="{W - R}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#ddd"/>')
        s.append(f'<text x="{L - 6}" y="{yy + 4:.1f}" text-anchor="end">{mb_max * i / 5:.0f}</text>')
        s.append(f'<text x="{W - R + 6}" y="{yy + 4:.1f}">{n_max * i / 5 / 1e6:.1f}M</text>')
    for i in range(6):
        t = (t1 - t0) * i / 5
        s.append(f'<text x="{x(t0 + t):.1f}" y="{H - B + 16}" text-anchor="middle">{t / 60:.0f} min</text>')
    for phase, colour in COLOURS.items():  # one polyline per run of a phase
        runs, cur = [], []
        for t, p, mb in rss:
            if p == phase:
                cur.append(f"{x(t):.1f},{y(mb, mb_max):.1f}")
            elif cur:
                runs.append(cur)
                cur = []
        if cur:
            runs.append(cur)
        for pts in runs:
            s.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{" ".join(pts)}"/>')
    if depth:
        pts = " ".join(f"{x(t):.1f},{y(n, n_max):.1f}" for t, n in depth)
        s.append(f'<polyline fill="none" stroke="#555" stroke-dasharray="4 3" points="{pts}"/>')
    legend = list(COLOURS.items()) + [("queued", "#555")]
    for i, (name, colour) in enumerate(legend):
        lx = L + 10 + i * 90
        s.append(f'<line x1="{lx}" x2="{lx + 20}" y1="{H - 12}" y2="{H - 12}" stroke="{colour}" stroke-width="2"/>')
        s.append(f'<text x="{lx + 24}" y="{H - 8}">{name}</text>')
    s.append("</svg>")
    (out / "rss.svg").write_text("\n".join(s) + "\n")
    print(f"wrote {out / 'rss.svg'}")


if __name__ == "__main__":
    main()
