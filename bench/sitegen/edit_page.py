#!/usr/bin/env python3
"""Edits one page's body (a different last paragraph each time), for the incremental timing."""
import sys
import time

path = sys.argv[1]
text = open(path).read()
marker = "\nEdited at "
if marker in text:
    text = text[: text.index(marker)] + "\n"
text = text.rstrip("\n") + f"\n{marker.strip()} {time.time_ns()}.\n"
open(path, "w").write(text)
