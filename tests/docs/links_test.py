#!/usr/bin/env python3
"""Every relative link and image of every Markdown file of the repository leads to a file.

    links_test.py SOURCE_DIR

Links with a scheme (https:, mailto:) are not followed. A link to a section (FILE#section, or
#section within a page) must name a heading of that Markdown file, by GitHub's anchor rule.
"""
import os
import re
import subprocess
import sys

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def markdown_text(path):
    """The file's text with fenced code blanked (it is not Markdown), lines kept in place."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return re.sub(r"```.*?```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def anchors(path):
    """The anchors GitHub gives the file's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated one numbered."""
    seen, out = {}, set()
    for m in re.finditer(r"^#{1,6} +(.*?) *#* *$", markdown_text(path), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def main():
    root = sys.argv[1]
    try:
        files = subprocess.run(["git", "-C", root, "ls-files", "--cached", "--others",
                                "--exclude-standard", "*.md"], capture_output=True, text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:  # no git, or not a checkout: every Markdown file below the root
        files = [os.path.relpath(os.path.join(d, f), root)
                 for d, dirs, names in os.walk(root) for f in names if f.endswith(".md")
                 and "/build" not in d]
    broken, checked = [], 0
    for md in files:
        text = markdown_text(os.path.join(root, md))
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue
            path, _, section = target.partition("#")
            checked += 1
            line = text.count("\n", 0, m.start()) + 1
            full = os.path.normpath(os.path.join(root, os.path.dirname(md), path)) if path else \
                os.path.join(root, md)
            if not os.path.exists(full):
                broken.append(f"{md}:{line}: '{target}' leads to no file")
            elif section and full.endswith(".md") and section not in anchors(full):
                broken.append(f"{md}:{line}: '{target}': {path or md} has no section '{section}'")
    for b in broken:
        print(f"links: {b}")
    print(f"links: {checked} relative links in {len(files)} Markdown files, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
