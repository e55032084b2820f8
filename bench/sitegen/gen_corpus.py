#!/usr/bin/env python3
"""Generates the benchmark corpus: N Markdown pages (headings, lists, a table, fenced code in
Rust, JSON, bash or Python, internal links with anchors) in 20 sections (the shape of the
corpus in issue 16), with TOML front matter that both sitegen and Hugo read. Weights start at 1:
Hugo takes weight 0 for no weight and sorts such pages last, sitegen would put them first, and
the two sidebars would differ in order.

usage: gen_corpus.py OUT_CONTENT_DIR [PAGES] [SECTIONS] [PARTS]

PARTS (default 5) is the number of `## Part` headings of a page, each with its paragraphs,
list, link line and every other one a code block: the size of a body.
"""
import os
import random
import sys

WORDS = ("sync object chunk push pull head version tree dir file client server merge "
         "conflict project team token stream frame hash store catalog node cluster event "
         "request response header body retry commit base root entry name limit cache").split()

CODE = {
    "rust": "fn {name}(input: &[u8]) -> Result<Vec<u8>, Error> {{\n    let mut out = Vec::with_capacity(input.len());\n    for byte in input {{\n        out.push(byte ^ {n});\n    }}\n    // {comment}\n    Ok(out)\n}}\n",
    "json": "{{\n  \"name\": \"{name}\",\n  \"version\": {n},\n  \"tags\": [\"{comment}\", \"cairn\"],\n  \"enabled\": true\n}}\n",
    "bash": "#!/bin/sh\n# {comment}\nfor i in $(seq 1 {n}); do\n  echo \"{name} $i\"\ndone\n",
    "python": "def {name}(items):\n    \"\"\"{comment}\"\"\"\n    total = {n}\n    for item in items:\n        total += len(item)\n    return {{\"total\": total}}\n",
}


def sentence(rng, n=12):
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def page_url(section, page):
    return f"/docs/s{section:03d}/p{page:04d}/"


def main():
    out = sys.argv[1]
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    wanted_sections = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    parts_per_page = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    per_section = max(1, (total + wanted_sections - 1) // wanted_sections)
    sections = (total + per_section - 1) // per_section
    rng = random.Random(42)
    os.makedirs(os.path.join(out, "docs"), exist_ok=True)
    with open(os.path.join(out, "_index.md"), "w") as f:
        f.write('+++\ntitle = "Benchmark home"\ndescription = "Home of the benchmark corpus."\n+++\n\nThe [docs](/docs/).\n')
    with open(os.path.join(out, "docs", "_index.md"), "w") as f:
        f.write('+++\ntitle = "Docs"\ndescription = "All sections of the benchmark corpus."\n+++\n\nSections.\n')
    count = 0
    for s in range(sections):
        folder = os.path.join(out, "docs", f"s{s:03d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "_index.md"), "w") as f:
            f.write(f'+++\ntitle = "Section {s}"\ndescription = "Pages of section {s}."\nweight = {s + 1}\n+++\n\n{sentence(rng)}\n')
        for p in range(per_section):
            if count >= total:
                break
            count += 1
            parts = [
                "+++",
                f'title = "Page {s}-{p}: {rng.choice(WORDS)} {rng.choice(WORDS)}"',
                f'description = "Benchmark page {p} of section {s} about {rng.choice(WORDS)}."',
                f"weight = {p + 1}",
                "+++",
                "",
                sentence(rng, 30),
                "",
            ]
            for h in range(parts_per_page):
                parts.append(f"## Part {h}")
                parts.append("")
                parts.append(sentence(rng, 40) + " " + sentence(rng, 25))
                parts.append("")
                for _ in range(4):
                    parts.append(f"- {sentence(rng, 8)}")
                parts.append("")
                ts = rng.randrange(sections)
                tp = rng.randrange(min(per_section, total - ts * per_section))
                parts.append(
                    f"See [page {ts}-{tp}]({page_url(ts, tp)}) and "
                    f"[its first part]({page_url(ts, tp)}#part-0), or [home](/docs/)."
                )
                parts.append("")
                if h == 1:
                    parts.append("| Field | Type | Meaning |")
                    parts.append("|---|---|---|")
                    for _ in range(3):
                        parts.append(f"| `{rng.choice(WORDS)}` | {rng.choice(WORDS)} | {sentence(rng, 6)} |")
                    parts.append("")
                if h % 2 == 0:
                    lang = rng.choice(sorted(CODE))
                    parts.append(f"```{lang}")
                    parts.append(CODE[lang].format(name=f"f{s}_{p}_{h}", n=rng.randrange(1000), comment=sentence(rng, 5)).rstrip("\n"))
                    parts.append("```")
                    parts.append("")
                parts.append(f"### Detail {h}")
                parts.append("")
                parts.append(sentence(rng, 50))
                parts.append("")
            text = "\n".join(parts) + "\n"
            with open(os.path.join(folder, f"p{p:04d}.md"), "w") as f:
                f.write(text)
    print(f"{count} pages in {sections} sections")


if __name__ == "__main__":
    main()
