"""README.md and the docs/*.md pages read as the tests need them: their command blocks,
their relative links and the anchors GitHub gives their headings."""
import os
import re

from conftest import ROOT

DOCS = os.path.join(ROOT, "docs")
BLOCK = re.compile(r"```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S)
FENCED = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def pages():
    """Repository-relative paths of the front page and every docs page, README first."""
    return ["README.md"] + sorted("docs/" + name for name in os.listdir(DOCS)
                                  if name.endswith(".md"))


def read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def blocks(text):
    """(lang, body, line before the block) of every fenced block of ``text``."""
    for match in BLOCK.finditer(text):
        before = text[:match.start()].rstrip().splitlines()
        yield match.group("lang"), match.group("body"), before[-1].strip() if before else ""


def prose(text):
    """``text`` without its fenced blocks, whose ``#`` lines and brackets are code."""
    return FENCED.sub("", text)


def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(text):
    """The heading texts of ``text``, code blocks left out."""
    return [line.lstrip("#").strip() for line in prose(text).splitlines()
            if re.match(r"#{1,6} ", line)]


def anchors(text):
    """Every ``#anchor`` ``text`` defines; a repeated heading gets -1, -2, ... as on GitHub."""
    seen, out = {}, set()
    for heading in headings(text):
        base = slug(heading)
        out.add(base if base not in seen else "%s-%d" % (base, seen[base]))
        seen[base] = seen.get(base, 0) + 1
    return out


def links(page):
    """(target path relative to the repository, anchor or None) of every relative link
    of ``page``, images included."""
    for match in LINK.finditer(prose(read(page))):
        target = match.group("target")
        if EXTERNAL.match(target):
            continue
        path, _, anchor = target.partition("#")
        path = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        yield path, anchor or None
