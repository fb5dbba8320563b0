"""The command blocks of README.md and the guides in docs/, and how each is checked.

A fenced block is a shell block when its info string starts with ``bash``, ``sh``, ``shell`` or
``console``. A second word says how the test treats it:

=============  ==========================================================================================
``bash``       run for real, to completion, from the checkout (a mirror of it: see ``test_doc_blocks``)
``bash serve`` a server the reader leaves running (``make dev``...): started, answered, stopped
``bash client`` run beside the doc's last ``serve`` block, against that server
``bash train`` a training: the exact command line, on a tiny copy of the shared dataset (6 photos a
               class) with ``--epochs 1 --fine-tune-layers 0`` appended (minutes otherwise); the
               rest of its options parse like every block's
``bash outside`` run from a folder outside the checkout, with ``.venv/bin`` on ``PATH`` and no
               ``PYTHONPATH``
``bash suite`` ``make test`` itself: run with ``PYTEST_ARGS`` naming one small module (the suite
               cannot run inside itself)
``bash aws``   needs an AWS account: never run; checked for syntax (``bash -n``) and options only
``bash docker`` needs Docker (``sam local``): the same checks as ``aws``
=============  ==========================================================================================

Every shell block, whatever its kind, is also checked for options: ``bash -n``; each ``make``
target exists and each ``VAR=`` is one the Makefile reads (``make -n TARGET VAR=...`` succeeds);
each ``imgrec`` command line parses with ``devtools.cli``'s own parser; each ``-c key=value`` is a
context key of ``cdk.json`` / ``infra/settings.py``. Inline ``make X`` and ``imgrec X --flag``
mentions in the prose are checked the same way, by name.

docs/api.md's plain ``bash`` blocks are the API examples ``test_api_md.py`` runs against the local
server; this module checks that it runs each of them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.support import REPO

SHELLS = ("bash", "sh", "shell", "console")
KINDS = ("run", "serve", "client", "train", "outside", "suite", "aws", "docker")
CHECKED_ONLY = ("aws", "docker")
# Generated reports (written by the commands that measure them), not guides: not read as guides.
REPORTS = {
    f"{name}.md"
    for name in ("benchmarks", "capture", "models", "recipes", "reliability", "scale", "training")
}


def guides() -> list[Path]:
    """README.md, then the guides in the index's order, then any other guide."""
    index = (REPO / "docs" / "README.md").read_text()
    ordered = [REPO / "docs" / name for name in re.findall(r"^\d+\. \[[^]]+\]\(([^)]+)\)", index, re.M)]
    others = sorted(p for p in (REPO / "docs").glob("*.md") if p.name not in REPORTS and p not in ordered)
    return [REPO / "README.md", *ordered, *others]


@dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    language: str
    kind: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """Every fenced block of ``doc`` (shell or not), with its kind."""
    found: list[Block] = []
    lines = doc.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = re.match(r"^```(\S*)\s*(.*)$", lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        language, words = opening.group(1), opening.group(2).split()
        kind = words[0] if words else "run"
        found.append(Block(doc, i + 1, language, kind, "\n".join(lines[i + 1 : end]) + "\n"))
        i = end + 1
    return found


def shell_blocks(docs: list[Path] | None = None) -> list[Block]:
    return [b for d in docs or guides() for b in blocks(d) if b.language in SHELLS]


def logical_lines(code: str) -> list[str]:
    """Lines with their backslash continuations joined."""
    return code.replace("\\\n", " ").splitlines()


OPERATORS = {"|", "||", "&&", ";", "(", ")", "{", "}", "$(", "`"}


def commands(code: str) -> list[list[str]]:
    """Each simple command of the block as words (comments dropped; ``$(...)`` opened up)."""
    found: list[list[str]] = []
    for line in logical_lines(code):
        lexer = shlex.shlex(line.replace("$(", " ( "), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError:  # an unclosed quote spanning lines: bash -n judges the block
            continue
        current: list[str] = []
        for word in words:
            if set(word) <= set("|&;(){}`"):
                if current:
                    found.append(current)
                current = []
            else:
                current.append(word)
        if current:
            found.append(current)
    return found


def after_assignments(words: list[str]) -> list[str]:
    """A command without its leading ``NAME=value`` environment assignments."""
    i = 0
    while i < len(words) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[i]):
        i += 1
    return words[i:]


def make_calls(code: str) -> list[tuple[list[str], dict[str, str]]]:
    """``(targets, variables)`` of each ``make`` command of a block."""
    calls = []
    for words in commands(code):
        words = after_assignments(words)
        if words[:1] != ["make"]:
            continue
        targets = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        variables = dict(w.split("=", 1) for w in words[1:] if "=" in w and not w.startswith("-"))
        calls.append((targets, variables))
    return calls


def imgrec_calls(code: str) -> list[list[str]]:
    """The arguments of each ``imgrec`` command (``imgrec`` or ``.venv/bin/imgrec``)."""
    calls = []
    for words in commands(code):
        words = after_assignments(words)
        if words and (words[0] == "imgrec" or words[0].endswith("/imgrec")):
            calls.append(words[1:])
    return calls


def context_keys(code: str) -> list[str]:
    """Every ``-c key=value`` of a block, inside ``CONTEXT="..."`` too."""
    keys = []
    for words in commands(code):
        contexts = [w.removeprefix("CONTEXT=").split() for w in words if w.startswith("CONTEXT=")]
        if words and words[0].endswith("cdk"):
            contexts.append(words)
        for expanded in contexts:
            keys += [expanded[i + 1].split("=")[0] for i, w in enumerate(expanded[:-1]) if w == "-c"]
    return keys


def makefile_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z0-9][a-z0-9-]*):", text, re.M))


def makefile_reads(variable: str) -> bool:
    """Whether the Makefile reads ``variable`` (``$(VAR)``, ``$(or $(VAR)...``, ``VAR ?=``)."""
    text = (REPO / "Makefile").read_text()
    return bool(re.search(rf"\$\({variable}\)|^(export )?{variable} \?=", text, re.M))


def inline_code(doc: Path) -> list[str]:
    """The inline code spans of a doc's prose (fenced blocks left out)."""
    prose = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
    return [span.replace("\n", " ") for span in re.findall(r"`([^`]+)`", prose)]
