#!/usr/bin/env python3
"""Every relative link and image of every Markdown file of the repository leads to a file.

    links_test.py SOURCE_DIR

Links with a scheme (https:, mailto:) and links within a page (#section) are not followed.
"""
import os
import re
import subprocess
import sys

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


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
        with open(os.path.join(root, md), encoding="utf-8") as f:
            text = f.read()
        # Fenced code is not Markdown.
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            path = target.split("#", 1)[0]
            checked += 1
            if not os.path.exists(os.path.join(root, os.path.dirname(md), path)):
                line = text.count("\n", 0, m.start()) + 1
                broken.append(f"{md}:{line}: '{target}' leads to no file")
    for b in broken:
        print(f"links: {b}")
    print(f"links: {checked} relative links in {len(files)} Markdown files, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
