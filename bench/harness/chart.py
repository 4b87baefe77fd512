"""The report's picture: requests per second of each peer, one bar per route, as plain SVG."""

import math
from xml.sax.saxutils import escape, quoteattr

from .peers import PEERS
from .report import best_round

COLOURS = ["#3366aa", "#ee8833", "#44aa66", "#aa4466", "#7755aa"]
BAR, GAP, GROUP_GAP = 26, 4, 26
LEFT, RIGHT, TOP, BOTTOM = 78, 20, 64, 86
PLOT_HEIGHT = 300
MIN_WIDTH = 600  # room for the title with few peers


def element(name, content=None, **attrs):
    """One SVG element; attribute names use "_" for "-" (font_size is font-size)."""
    text = " ".join(f"{k.replace('_', '-')}={quoteattr(str(v))}" for k, v in attrs.items())
    if content is None:
        return f"<{name} {text}/>"
    return f"<{name} {text}>{content}</{name}>"


def label(x, y, content, **attrs):
    return element("text", escape(content), x=f"{x:.1f}", y=f"{y:.1f}", **attrs)


def nice_step(top, ticks=5):
    """A round step (1, 2 or 5 times a power of ten) giving about `ticks` gridlines up to `top`."""
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def bars(settings, results, meta):
    apps = [a for a in settings.apps if a in results]
    routes = settings.routes
    rps = {}
    for pid in apps:
        for route in routes:
            best = best_round(results[pid], route)
            rps[pid, route] = best["wrk"]["rps"] if best else None
    top = max([v for v in rps.values() if v] or [1])
    step = nice_step(top)
    y_max = step * math.ceil(top / step)
    group_width = len(routes) * (BAR + GAP) - GAP
    width = max(MIN_WIDTH, LEFT + RIGHT + len(apps) * (group_width + GROUP_GAP))
    height = TOP + PLOT_HEIGHT + BOTTOM

    def y(v):
        return TOP + PLOT_HEIGHT - v / y_max * PLOT_HEIGHT

    load = (
        f"{meta['start']}, {meta['cores']} cores, wrk -t{settings.wrk_threads} "
        f"-c{settings.wrk_conns} -d{settings.wrk_duration}s, {settings.rounds} round(s); "
        "compare within one run"
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        element("rect", width=width, height=height, fill="white"),
        label(
            LEFT,
            22,
            "Requests per second, best round (higher is better)",
            font_size=14,
            font_weight="bold",
        ),
        label(LEFT, 40, load, fill="#555"),
    ]
    for i in range(round(y_max / step) + 1):
        tick = i * step
        out.append(
            element(
                "line",
                x1=LEFT,
                x2=width - RIGHT,
                y1=f"{y(tick):.1f}",
                y2=f"{y(tick):.1f}",
                stroke="#ddd",
            )
        )
        out.append(label(LEFT - 6, y(tick) + 4, f"{tick:,.0f}", text_anchor="end"))
    for i, pid in enumerate(apps):
        x0 = LEFT + GROUP_GAP / 2 + i * (group_width + GROUP_GAP)
        for j, route in enumerate(routes):
            v = rps[pid, route]
            x = x0 + j * (BAR + GAP)
            if not v:
                out.append(label(x + BAR / 2, y(0) - 4, "n/a", text_anchor="middle", fill="#a00"))
                continue
            tip = element("title", escape(f"{PEERS[pid].name} {route}: {v:,.0f} req/s"))
            out.append(
                element(
                    "rect",
                    tip,
                    x=f"{x:.1f}",
                    y=f"{y(v):.1f}",
                    width=BAR,
                    height=f"{y(0) - y(v):.1f}",
                    fill=COLOURS[j % len(COLOURS)],
                )
            )
            out.append(
                label(x + BAR / 2, y(v) - 4, f"{v / 1000:.1f}k", text_anchor="middle", font_size=9)
            )
        middle = x0 + group_width / 2
        out.append(label(middle, y(0) + 16, pid, text_anchor="middle", font_weight="bold"))
        # the peer's name without its id, on at most two short lines
        name = PEERS[pid].name.partition(" ")[2]
        for k, line in enumerate(wrap(name, 16)[:2]):
            out.append(
                label(
                    middle, y(0) + 30 + 12 * k, line, text_anchor="middle", fill="#555", font_size=9
                )
            )
    out.append(element("line", x1=LEFT, x2=width - RIGHT, y1=y(0), y2=y(0), stroke="#333"))
    for j, route in enumerate(routes):
        lx, ly = LEFT + j * 120, height - 18
        out.append(
            element("rect", x=lx, y=ly - 10, width=12, height=12, fill=COLOURS[j % len(COLOURS)])
        )
        out.append(label(lx + 18, ly, f"GET {route}"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def wrap(text, width):
    """Words of `text` on lines of at most `width` characters (a longer word keeps its line)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + ([line] if line else [])
