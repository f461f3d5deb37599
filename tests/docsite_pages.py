"""Write the docsite's extra pages, docs/docsite/rst/NAME.rst, from the hand-written docs/NAME.md.

antsibull-docs takes extra pages only as RST below docs/docsite/rst (the ones docs/docsite/extra-docs.yml lists);
the Markdown pages stay the source. A relative link to another converted page points at its docsite page, any other
relative link at the file in the repository. With --check nothing is written and a page that is not what its
Markdown makes fails.
"""

from __future__ import annotations

import pathlib
import re
import sys

import m2r2
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RST = DOCS / "docsite" / "rst"
LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)(#[^)\s]*)?\)")


def converter() -> m2r2.M2R2:
    """m2r2 for plain Markdown: its RST passthrough took `_channel.py`: ... drives: for an RST role."""
    md_to_rst = m2r2.M2R2(inline_math=None)
    for rule in ("rest_role", "rest_link", "rst_footnote_ref"):
        md_to_rst.md.inline.rules.remove(rule)
    return md_to_rst


def pages() -> list[str]:
    """The page names extra-docs.yml lists."""
    extra = yaml.safe_load((DOCS / "docsite" / "extra-docs.yml").read_text(encoding="utf-8"))
    return [entry if isinstance(entry, str) else entry["ref"] for section in extra["sections"] for entry in section["toctree"]]


def convert(name: str, names: list[str], repository: str, md_to_rst: m2r2.M2R2) -> str:
    def link(match: re.Match) -> str:
        target, anchor = match.group(1), match.group(2) or ""
        if target.endswith(".md") and target[:-3] in names:
            return f"]({target[:-3]}.html{anchor})"
        resolved = (DOCS / target).resolve().relative_to(ROOT)
        return f"]({repository}/blob/main/{resolved}{anchor})"

    markdown = LINK.sub(link, (DOCS / f"{name}.md").read_text(encoding="utf-8"))
    return (
        f".. Made from docs/{name}.md by tests/docsite_pages.py (make docsite-pages): edit that file instead.\n\n"
        f".. _ansible_collections.ferry.runc.docsite.{name}:\n\n" + md_to_rst(markdown).lstrip("\n")
    )


def main() -> None:
    check = sys.argv[1:] == ["--check"]
    repository = yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))["repository"]
    names = pages()
    md_to_rst = converter()
    stale = []
    for name in names:
        path = RST / f"{name}.rst"
        text = convert(name, names, repository, md_to_rst)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    unlisted = sorted(p.relative_to(ROOT).as_posix() for p in RST.glob("*.rst") if p.stem not in names)
    if stale or unlisted:
        sys.exit(f"docsite pages not made from docs/*.md: {', '.join(stale + unlisted)}; run make docsite-pages")


if __name__ == "__main__":
    main()
