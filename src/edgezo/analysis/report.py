"""One report of every result: ``report.md`` (figures next to it) and a self-contained ``report.html``.

Reads what ``edgezo run``, ``edgezo memory``, ``edgezo cost``, ``edgezo landscape`` and
``edgezo hw report`` wrote under a results directory (one folder each: ``cross-domain/``,
``memory/``, ``cost/``, ``landscape/``, ``hw/``...), puts each claim of the papers beside
our number (:mod:`edgezo.analysis.claims`), then includes every study's,
memory, cost, landscape and hardware Markdown as written, with its figures.

Every number in the report comes from a results file: the claims table's "ours"
is formatted from the JSON files, the sections are those files' own Markdown,
and the papers' numbers come from :data:`~edgezo.analysis.claims.CLAIMS`.

Figures are copied next to ``report.md`` (``OUT/<folder>/<file>``, unless they
are already there) and embedded in ``report.html`` as base64 ``data:`` URIs, so
the HTML is one file. Markdown becomes HTML with markdown-it-py (CommonMark
plus tables).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import importlib
import json
import mimetypes
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ..cache import atomic_write
from ..extras import require
from .claims import (
    CLAIMS,
    HW,
    INCONCLUSIVE,
    LANDSCAPE,
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    STUDIES,
    VACUOUS,
    Claim,
    Finding,
    Source,
)

#: Each kind's Markdown file, beside its JSON.
MARKDOWN = {
    "study": "results.md",
    "memory": "memory.md",
    "cost": "cost.md",
    "landscape": "landscape.md",
    "hw": "report.md",
}
#: Section titles, in the report's order.
SECTIONS = {
    "study": "Studies",
    "memory": "Memory",
    "cost": "Time per iteration",
    "landscape": "Loss landscape",
    "hw": "Hardware",
}
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})(?=\s)")
FENCE = re.compile(r"^\s*(```|~~~)")
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:75em;margin:2em auto;padding:0 1em;"
    "line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
    "th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}th{background:#f3f3f3}"
    "img{max-width:100%}code{background:#f6f6f6;padding:0 .2em}"
)


@dataclass(frozen=True)
class Artifact:
    """One results folder: what made it, where it is, its JSON and its Markdown."""

    source: Source
    directory: Path
    data: Mapping
    markdown: str


@dataclass(frozen=True)
class ClaimRow:
    """A claim, our finding and the commands that made (or would make) its results."""

    claim: Claim
    finding: Finding
    commands: tuple[str, ...]


# -- collecting ------------------------------------------------------------------------------
def identify(folder: Path) -> tuple[Source, dict] | None:
    """The source whose results file ``folder`` holds, and its JSON (``None``: none)."""
    if (folder / "results.json").is_file():
        data = _load(folder / "results.json", "study", "study")
        return Source("study", str(data["study"])), data
    if (folder / "memory.json").is_file():
        data = _load(folder / "memory.json", "memory", "meta")
        return Source("memory", str(data["meta"].get("model", "")).split(" (")[0]), data
    if (folder / "cost.json").is_file():
        data = _load(folder / "cost.json", "cost", "meta", "cells")
        return Source("cost", str(data["meta"]["model"]).split(" (")[0]), data
    if (folder / "landscape.json").is_file():
        return LANDSCAPE, _load(folder / "landscape.json", "landscape", "panels")
    if (folder / "report.json").is_file():
        data = _load(folder / "report.json", "hardware", "rows")
        return (HW, data) if "target" in data else None
    return None


def _load(path: Path, kind: str, *keys: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}); re-run the command that wrote it"
        ) from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise ValueError(f"{path} is not a {kind} results file (no {missing[0]!r}); re-run the "
                         "command that wrote it or move it out of the results directory")  # fmt: skip
    return data


def collect(results: Path) -> list[Artifact]:
    """Every results folder directly under ``results``, in the report's order."""
    if not results.is_dir():
        raise ValueError(
            f"results directory {results} does not exist: run studies into it "
            f"(edgezo run STUDY --out {results}) or add --run-quick"
        )
    found = []
    for folder in sorted(p for p in results.iterdir() if p.is_dir()):
        hit = identify(folder)
        if hit is None:
            continue
        source, data = hit
        md = folder / MARKDOWN[source.kind]
        text = md.read_text() if md.is_file() else ""  # "": remade by rebuilt() from the JSON
        found.append(Artifact(source, folder, data, text))
    return sorted(found, key=_order)


def _order(a: Artifact) -> tuple:
    kind = list(SECTIONS).index(a.source.kind)
    known = STUDIES.index(a.source.name) if a.source.name in STUDIES else len(STUDIES)
    preferred = True
    if a.source.kind == "memory":  # several runs of one model: the claims read full fine-tuning
        preferred = a.data["meta"].get("regime") == "ft"
    elif a.source.kind == "cost":  # ...the run in the folder the claim names (cost/: batch 8)
        preferred = a.directory.name == a.source.directory
    return kind, known, not preferred, a.directory.name


def by_source(artifacts: Sequence[Artifact]) -> dict[Source, Artifact]:
    """The artifact read for each source: the first in report order (memory: regime ``ft``;
    cost: the folder :attr:`Source.directory` names)."""
    out: dict[Source, Artifact] = {}
    for a in artifacts:
        out.setdefault(a.source, a)
    return out


# -- the claims table ------------------------------------------------------------------------------
def evaluate(
    found: Mapping[Source, Artifact], results: str, claims: Sequence[Claim] = CLAIMS
) -> list[ClaimRow]:
    """Each claim checked on the results present; ``not run`` with the commands where none is."""
    rows = []
    for claim in claims:
        present = {s: found[s].data for s in claim.sources if s in found}
        missing = [s for s in claim.sources if s not in found]
        if claim.sources and not present:
            files = ", ".join(f"{s.directory}/{s.filename}" for s in missing)
            commands = tuple(s.command(None, results) for s in missing)
            rows.append(ClaimRow(claim, Finding("n/a", NOT_RUN, f"no {files}"), commands))
            continue
        try:
            finding = claim.check(present)
        except KeyError as e:
            finding = Finding("n/a", NOT_COMPARABLE, f"the results lack {e}")
        why = finding.why
        if missing:
            why += "; not run: " + ", ".join(s.directory for s in missing)
        if any(d.get("quick") for d in present.values()):
            why += "; quick run"
        commands = tuple(s.command(d, results) for s, d in present.items())
        rows.append(ClaimRow(claim, Finding(finding.ours, finding.verdict, why), commands))
    return rows


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def claims_markdown(rows: Sequence[ClaimRow]) -> str:
    """The claims table: paper, claim, its number, ours, verdict, why, command."""
    lines = [
        "| paper | claim | paper's number | ours | verdict | why | command |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        command = " ".join(f"`{c}`" for c in r.commands) or "n/a"
        cells = (r.claim.paper, r.claim.text, r.claim.number, r.finding.ours,
                 f"**{r.finding.verdict}**", r.finding.why)  # fmt: skip
        lines.append("| " + " | ".join(map(_cell, cells)) + f" | {_cell(command)} |")
    return "\n".join(lines) + "\n\n" + verdict_counts(rows) + "\n"


def verdict_counts(rows: Sequence[ClaimRow]) -> str:
    """One line: how many claims got each verdict (reproduced, not reproduced, inconclusive,
    vacuous, not comparable, not run), in that order; verdicts no claim got are left out."""
    order = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, VACUOUS, NOT_COMPARABLE, NOT_RUN)
    seen = [r.finding.verdict for r in rows]
    parts = [f"{seen.count(v)} {v}" for v in order if v in seen]
    parts += [f"{seen.count(v)} {v}" for v in dict.fromkeys(seen) if v not in order]
    return f"Verdicts of {len(rows)} claims: " + ", ".join(parts) + "."


# -- the sections ------------------------------------------------------------------------------
def demote(text: str, top: int) -> str:
    """``text`` with its headings shifted so that the highest becomes level ``top``."""
    lines, fenced, levels = text.splitlines(), False, []
    marks = []
    for line in lines:
        if FENCE.match(line):
            fenced = not fenced
        m = None if fenced else HEADING.match(line)
        marks.append(m)
        if m:
            levels.append(len(m.group(1)))
    shift = top - min(levels) if levels else 0
    return "\n".join(
        ("#" * min(6, len(m.group(1)) + shift) + line[len(m.group(1)) :]) if m else line
        for line, m in zip(lines, marks, strict=True)
    )


def place_figures(artifact: Artifact, out: Path) -> str:
    """The artifact's Markdown with its figures copied under ``out`` and linked from there;
    figures of the folder that its Markdown does not show are appended."""
    folder = artifact.directory
    target_dir = out / folder.name

    def place(name: str) -> str | None:
        src = folder / unquote(name)
        if not src.is_file():
            return None
        dst = target_dir / unquote(name)
        if not (dst.exists() and os.path.samefile(src, dst)):
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        return dst.relative_to(out).as_posix()

    shown: set[str] = set()

    def relink(m: re.Match) -> str:
        alt, name = m.group(1), m.group(2)
        if ":" in name:  # a URL: left alone
            return m.group(0)
        placed = place(name)
        shown.add(Path(unquote(name)).name)
        return f"![{alt}]({placed})" if placed else f"(figure {name} is missing)"

    text = IMAGE.sub(relink, artifact.markdown)
    extra = [p.name for p in sorted(folder.glob("*.png")) if p.name not in shown]
    text += "".join(f"\n\n![{Path(n).stem}]({place(n)})" for n in extra)
    return text.strip() + "\n"


#: How a section is remade from its JSON when its Markdown is not there (committed results keep
#: only the JSON): kind -> ``module:function``, called as ``function(folder, data)``, which
#: draws the figures into ``folder`` and returns the Markdown the command would have written.
REBUILD = {
    "study": "edgezo.analysis.tables:rebuild_report",
    "memory": "edgezo.analysis.memory:rebuild_report",
    "cost": "edgezo.analysis.cost:rebuild_report",
    "landscape": "edgezo.studies.landscape:rebuild_report",
    "hw": "edgezo.hw.report:rebuild_report",
}


def rebuilt(artifact: Artifact) -> Artifact:
    """``artifact`` with its Markdown (and figures) remade from its JSON when it has none."""
    if artifact.markdown or artifact.source.kind not in REBUILD:
        return artifact
    module, name = REBUILD[artifact.source.kind].split(":")
    text = getattr(importlib.import_module(module), name)(artifact.directory, artifact.data)
    return dataclasses.replace(artifact, markdown=text)


def report_markdown(
    artifacts: Sequence[Artifact],
    rows: Sequence[ClaimRow],
    results: str,
    out: Path,
    missing: Sequence[Source] = (),
    notes: Mapping[str, str] | None = None,
) -> str:
    """The whole report as Markdown (figures copied under ``out``). ``missing``: the sources
    without results, listed with their commands and ``notes`` (command -> why not run)."""
    lines = [
        "# edgezo report",
        "",
        f"Results read from `{results}`. Each claim of the two papers (PAPERS.md: PeZO, QZO-FF) "
        "stands beside our number, read from the results files included below. A claim whose "
        "results are missing is *not run* and names the command that makes them (`edgezo "
        "report --run-quick` runs the quick versions of all of them); *quick run* marks "
        "results of `--quick` runs, which are small and noisy. Drop `--quick` for the full studies.",
        "",
        "## The papers' claims",
        "",
        claims_markdown(rows),
    ]
    not_run = [s.command(None, results) for s in missing]
    if not_run:
        notes = notes or {}
        lines += ["## Not run", ""]
        lines += [f"- `{c}`" + (f": {notes[c]}" if c in notes else "") for c in not_run] + [""]
    for kind, title in SECTIONS.items():
        mine = [a for a in artifacts if a.source.kind == kind]
        if not mine:
            continue
        lines += [f"## {title}", ""]
        for a in mine:
            body = demote(place_figures(rebuilt(a), out), top=3)
            lines += [body, "", f"Files: `{results}/{a.directory.name}/`.", ""]
    return "\n".join(lines).rstrip() + "\n"


# -- HTML ------------------------------------------------------------------------------
def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI (base64)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def to_html(text: str, base: Path, title: str = "edgezo report") -> str:
    """Markdown ``text`` as one HTML page; images (paths relative to ``base``) embedded."""
    MarkdownIt = require("markdown_it", "studies", needed_by="edgezo report").MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                child.attrSet("src", data_uri(base / unquote(str(child.attrGet("src")))))
    body = md.renderer.render(tokens, md.options, {})
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}</body></html>\n"
    )


def build_report(
    results: str | Path, out: str | Path | None = None, notes: Mapping[str, str] | None = None
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for the results under ``results`` into ``out``
    (default: ``results`` itself); returns their paths. ``notes``: see :func:`report_markdown`."""
    label = str(results)
    results = Path(results)
    out = Path(out) if out is not None else results
    artifacts = collect(results)
    found = by_source(artifacts)
    rows = evaluate(found, label)
    wanted = dict.fromkeys(s for c in CLAIMS for s in c.sources)
    missing = [s for s in wanted if s not in found]
    out.mkdir(parents=True, exist_ok=True)
    text = report_markdown(artifacts, rows, label, out, missing, notes)
    md_path, html_path = out / "report.md", out / "report.html"
    for path, content in ((md_path, text), (html_path, to_html(text, out))):
        atomic_write(path, lambda f, c=content: f.write(c.encode("utf-8")))
    return md_path, html_path
