"""Text for a terminal: tables that fit its width (text columns cut, never numbers or run ids),
the per-study blocks of `kernelevolve best`, notes wrapped to the width. Imports nothing heavy:
`kernelevolve --help` answers at once."""
from __future__ import annotations

import shutil
import sys
import textwrap

TABLE_WIDTH = 100  # columns a table fits when stdout is not a terminal


def _width(wide: bool) -> int | None:
    if wide:
        return None
    if sys.stdout.isatty():
        return max(60, shutil.get_terminal_size((TABLE_WIDTH, 24)).columns)
    return TABLE_WIDTH


def _elide(text: str, width: int, middle: bool = False) -> str:
    """text cut to width with '...': at its end, or in its middle (study keys: kernel and target stay)."""
    if len(text) <= width:
        return text
    if middle and width >= 9:
        head = (width - 3) // 2
        return text[:head] + "..." + text[len(text) - (width - 3 - head):]
    return text[: max(1, width - 3)] + "..."


def _wrap_json(label: str, value: str, width: int | None, indent: str = "  ") -> list[str]:
    """`label value` with a long JSON value wrapped after its commas, continuation lines aligned."""
    first = f"{indent}{label} "
    if width is None or len(first) + len(value) <= width:
        return [first + value]
    lines, line = [], first
    for piece in value.split(", "):
        piece_text = piece if line.endswith(" ") or line == first else ", " + piece
        if len(line) + len(piece_text) + 1 > width and line.strip() != label:
            lines.append(line + ",")
            line = " " * len(first) + piece
        else:
            line += piece_text if line != first else piece
    lines.append(line)
    return [_elide(x, width) for x in lines]


def _note(text: str, width: int | None) -> str:
    return text if width is None else textwrap.fill(text, width, subsequent_indent="  ")


def _best_blocks(rows: list[dict], width: int) -> str:
    """`kernelevolve best` on a terminal: one block per study, every line within width (a table
    of these columns would leave a config no room at all; --wide prints the table)."""
    out = []
    for r in rows:
        out.append(_elide(f"study {r['study']}   run_id {r['run_id']}", width, middle=True))
        out.append(_elide(f"  retimed_ms {r['retimed_ms']}   speedup_vs_torch {r['speedup_vs_torch']}   "
                          f"tflops {r['tflops']}   candidates {r['candidates']}   timing {r['timing']}", width))
        out.append(_elide(f"  dispatched {r.get('dispatched', '-')}   triton_ms {r.get('triton_ms', '-')}", width))
        out += _wrap_json("config", r["config"], width)
        if r.get("dispatched") == "vendor":  # the fastest Triton kernel, never mistaken for the winner
            out += _wrap_json("triton_config", r.get("triton_config"), width)
    return "\n".join(out)


CUTTABLE = ("config", "failures", "study", "kernel/problem")  # column names ending so may be cut


def _table(rows: list[dict], cols: list[str], width: int | None = TABLE_WIDTH) -> str:
    """Left-aligned columns. Past `width` characters the widest cells of the text columns
    (CUTTABLE: never a number or a run id) are cut with '...' until the table fits, and a last line
    says so; width None: every cell whole (--wide)."""
    cells = [{c: str(r.get(c, "")) for c in cols} for r in rows]
    widths = {c: max([len(c)] + [len(r[c]) for r in cells]) for c in cols}
    cut = False
    if width is not None:
        floor = {c: (max(len(c), 24) if c in ("study", "kernel/problem") else max(len(c), 8))
                 if c.endswith(CUTTABLE) else widths[c] for c in cols}
        while sum(widths.values()) + 2 * (len(cols) - 1) > width:
            c = max(cols, key=lambda k: widths[k] - floor[k])
            if widths[c] <= floor[c]:
                break
            widths[c] -= 1
            cut = True
    lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip(),
             "  ".join("-" * widths[c] for c in cols)]
    lines += ["  ".join(_elide(r[c], widths[c], middle=c in ("study", "kernel/problem")).ljust(widths[c])
                        for c in cols).rstrip() for r in cells]
    if cut:
        lines.append("(long cells cut to fit: --wide shows them whole, --json gives every value)")
    return "\n".join(lines)
