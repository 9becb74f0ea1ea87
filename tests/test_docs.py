"""The README and ``docs/`` stay true to the repository: links resolve, named pieces exist, no number is typed by hand.

Three rules, over ``README.md`` and every ``docs/*.md`` page:

- **Links.** Every relative link, ``[text](target)`` or ``![alt](target)``, names an existing file or folder
  (relative to the page), and a ``#anchor`` into a markdown page (or into the page itself) names one of its headings,
  slugged as GitHub slugs them: lowercase, punctuation other than ``-`` and ``_`` dropped, each space turned into
  ``-``, a repeated heading suffixed ``-1``, ``-2``. Links inside code are not links.
- **Named pieces.** What the text names of this project exists: ``make <target>`` (in code) is a Makefile target;
  ``python -m retrofit.<module>`` a module or package under ``src/``; every ``stages/``, ``tools/``, ``bench/``,
  ``tests/`` and ``src/`` path, anywhere in the text, a file; ``dvc repro <stage>`` a stage of ``dvc.yaml``
  (``name@item`` for ``foreach:`` and ``matrix:`` stages, the items read from ``params.yaml`` as DVC reads them);
  and every key set with ``-S``/``--set KEY=VALUE`` a key of ``params.yaml``.
- **No measured number typed by hand in the README.** Outside the generated results block (between
  ``<!-- results:start (python -m retrofit.report readme) -->`` and ``<!-- results:end -->``, which
  ``make readme-results`` rewrites) and outside citation blocks (between ``<!-- citations:start -->`` and
  ``<!-- citations:end -->``: the paper's score, published MTEB scores, the anchor table), the README has no decimal
  number (``1.58``, ``+0.34``) and no percentage (``20%``). Code is exempt: inline code spans and ``bash`` blocks
  carry versions, pins and arguments (``torch==2.13.0``), not measurements; a ``console`` or unlabelled block is
  checked like prose. A link's target is an address, not text, and a number glued to a word (``Qwen2.5``, ``v2``) is
  a name. Measured numbers live in generated files (``reports/``, ``docs/performance.md``) or in a ``docs/`` page
  beside the report that holds them.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

RESULTS_BLOCK = re.compile(r"<!-- results:start.*?-->.*?<!-- results:end -->", re.S)
CITATIONS_BLOCK = re.compile(r"<!-- citations:start -->.*?<!-- citations:end -->", re.S)
FENCE = re.compile(r"^(`{3,}|~{3,})[ \t]*([\w+-]*)[^\n]*\n(.*?)^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
DECIMAL = re.compile(r"(?<![\w.])[-+]?\d+\.\d+")
PERCENT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?[ \t]?%")
#: Fenced blocks whose content is a command, exempt from the number rule.
COMMAND_LANGS = {"bash", "sh", "shell"}


def _blank(match: re.Match) -> str:
    """A match replaced by its newlines only, so that line numbers still point into the original text."""
    return "\n" * match.group(0).count("\n")


def _code(text: str) -> list[str]:
    """Every piece of code in a page: the content of each fenced block and each inline code span outside them."""
    fenced = [m.group(3) for m in FENCE.finditer(text)]
    prose = FENCE.sub(_blank, text)
    return fenced + [m.group(2) for m in INLINE_CODE.finditer(prose)]


def _prose(text: str) -> str:
    """A page without fenced blocks and inline code (each span left as a placeholder word)."""
    return INLINE_CODE.sub(lambda m: "code" + _blank(m), FENCE.sub(_blank, text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: lowercase, punctuation but ``-`` and ``_`` dropped, spaces to ``-``.

    Args:
        heading: The heading's markdown text, without its leading ``#``s.

    Returns:
        The anchor, without ``#`` and without the suffix GitHub adds to a repeated heading.
    """
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a markdown page, repeated headings numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found = set()
    for m in HEADING.finditer(FENCE.sub(_blank, page.read_text(encoding="utf-8"))):
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that name no file, or no heading of the markdown page they point into."""
    broken = []
    for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[A-Za-z][\w+.-]*:", target):  # https:, mailto: ...: not a file of this repository
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return broken


def make_targets() -> set[str]:
    """The Makefile's rule targets (variable assignments such as ``BIN := ...`` are not targets)."""
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return {t for line in re.findall(r"^([A-Za-z][\w .-]*?)[ \t]*:(?!=)", text, re.M) for t in line.split()}


def _param(params: dict, dotted: str) -> object:
    """The value at a dotted key of ``params.yaml`` (``KeyError`` when a part is missing)."""
    node: object = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _items(value: object, params: dict) -> list[str]:
    """The items of a ``foreach:`` or one ``matrix:`` axis, with ``${key}`` read from ``params.yaml``."""
    if isinstance(value, str) and (m := re.fullmatch(r"\$\{([\w.]+)\}", value)):
        value = _param(params, m.group(1))
    return [str(v) for v in (value.keys() if isinstance(value, dict) else value)]


def dvc_stages() -> set[str]:
    """Every stage name ``dvc repro`` accepts: each ``stages:`` key, and ``name@item`` for its generated stages."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    names = set(stages)
    for name, stage in stages.items():
        if "foreach" in stage:
            names |= {f"{name}@{item}" for item in _items(stage["foreach"], params)}
        if "matrix" in stage:
            axes = [_items(values, params) for values in stage["matrix"].values()]
            names |= {f"{name}@{'-'.join(combo)}" for combo in itertools.product(*axes)}
    return names


def missing_pieces(page: Path) -> list[str]:
    """What ``page`` names of this project that does not exist: make targets, modules, scripts, stages, params."""
    text = page.read_text(encoding="utf-8")
    code = _code(text)
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    targets, stages, missing = make_targets(), dvc_stages(), []
    for snippet in code:
        for target in re.findall(r"(?<![\w.-])make[ \t]+([A-Za-z][\w-]*)", snippet):
            if target not in targets:
                missing.append(f"make {target}: no such Makefile target")
        for module in re.findall(r"python3?[ \t]+-m[ \t]+(retrofit(?:\.\w+)*)", snippet):
            base = REPO / "src" / Path(*module.split("."))
            if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
                missing.append(f"python -m {module}: no such module under src/")
        for stage in re.findall(r"dvc[ \t]+repro[ \t]+([A-Za-z_][\w@.-]*)", snippet):
            if stage not in stages:
                missing.append(f"dvc repro {stage}: no such stage in dvc.yaml")
        keys = re.findall(r"(?:-S|--set-param)[ \t]+([a-z_][\w.]*)=", snippet)  # KEY=VALUE placeholders aside
        for group in re.findall(r"--set((?:[ \t]+[a-z_][\w.]*=\S+)+)", snippet):  # stages' --set K=V K=V
            keys += re.findall(r"([\w.]+)=", group)
        for key in keys:
            try:
                _param(params, key)
            except KeyError:
                missing.append(f"{key}=...: no such key in params.yaml")
    for path in re.findall(r"(?<![\w/.-])((?:stages|tools|bench|tests|src)/[\w/.-]*\.\w+)", text):
        if not (REPO / path).is_file():
            missing.append(f"{path}: no such file")
    return sorted(set(missing))


def typed_numbers(readme: str) -> list[str]:
    """Decimal numbers and percentages in prose, outside generated, cited and command text, with their line numbers.

    Args:
        readme: The README's text.

    Returns:
        ``"line N: number"`` for every number the rule forbids (see the module docstring).
    """
    text = CITATIONS_BLOCK.sub(_blank, RESULTS_BLOCK.sub(_blank, readme))
    text = re.sub(r"<!--.*?-->", _blank, text, flags=re.S)
    text = FENCE.sub(lambda m: _blank(m) if m.group(2).lower() in COMMAND_LANGS else f"\n{m.group(3)}", text)
    text = INLINE_CODE.sub(_blank, text)
    text = re.sub(r"\]\([^)]*\)", "]", text)  # a link's target
    text = re.sub(r"<[A-Za-z][\w+.-]*:[^>\s]*>|https?://\S+", "", text)  # autolinks and bare addresses
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        found += [f"line {number}: {m.group(0)}" for m in DECIMAL.finditer(line)]
        found += [f"line {number}: {m.group(0)}" for m in PERCENT.finditer(line)]
    return found


def _name(page: Path) -> str:
    """A page's path in the repository, as test ids and messages name it."""
    return str(page.relative_to(REPO))


def test_slug_follows_github():
    assert slug("The encoder's runtime") == "the-encoders-runtime"
    assert slug("Generation on your own GPUs (vLLM)") == "generation-on-your-own-gpus-vllm"
    assert slug("`openai` (any OpenAI-compatible endpoint)") == "openai-any-openai-compatible-endpoint"
    assert slug("Any CPU: runtime params decided at start-up") == "any-cpu-runtime-params-decided-at-start-up"
    assert slug("Generation: requests per accepted example, by language") == (
        "generation-requests-per-accepted-example-by-language"
    )
    assert slug("snake_case and [a link](x.md)") == "snake_case-and-a-link"


def test_number_rule_on_known_text():
    text = "\n".join([
        "A gain of 0.34 here.",  # line 1: typed
        "`torch==2.13.0` and [arXiv:2510.14274](https://arxiv.org/abs/2510.14274) aside,",  # line 2: the link text
        "<!-- citations:start -->",
        "The paper reports 60.56.",
        "<!-- citations:end -->",
        "```bash",
        "pip install torch==2.13.0",
        "```",
        "```console",
        "loss 0.751087",  # line 10: recorded output counts
        "```",
        "Qwen2.5 at 20% MFU, 45 minutes.",  # line 12: the percentage only
    ])
    assert typed_numbers(text) == ["line 1: 0.34", "line 2: 2510.14274", "line 10: 0.751087", "line 12: 20%"]


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    linked = {(REPO / t.partition("#")[0]).resolve() for t in LINK.findall(_prose(readme))}
    assert [_name(p) for p in PAGES[1:] if p.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_resolve(page: Path):
    assert broken_links(page) == [], f"{_name(page)} has broken links"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_named_pieces_exist(page: Path):
    assert missing_pieces(page) == [], f"{_name(page)} names what the repository does not have"


def test_readme_types_no_measured_number():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert RESULTS_BLOCK.search(readme), "the README lost its generated results block"
    assert typed_numbers(readme) == [], "a measured number belongs in a generated file or a docs page beside its source"


def expand_braces(text: str) -> list[str]:
    """Shell-style brace expansion: ``a_{x,y}{1,2}`` -> ``a_x1, a_x2, a_y1, a_y2`` (innermost first, no ranges)."""
    m = re.search(r"\{([^{}]*)\}", text)
    if m is None:
        return [text]
    return [e for alt in m.group(1).split(",") for e in expand_braces(text[: m.start()] + alt + text[m.end():])]


def diagram_trainings(page: Path) -> dict[str, set[str]]:
    """The items of ``train@{...}`` and ``train_run@{...}`` in a page's pipeline diagram (a ``{`` may span lines)."""
    text = page.read_text(encoding="utf-8")
    out: dict[str, set[str]] = {}
    for stage in ("train", "train_run"):
        m = re.search(rf"\b{stage}@\{{", text)
        assert m, f"{_name(page)}: no {stage}@{{...}} in its diagram"
        depth, end = 0, m.end() - 1
        for end in range(m.end() - 1, len(text)):
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
        body = re.sub(r"[\s│]+", "", text[m.end() - 1 : end + 1])  # the box-drawing margin and line breaks
        out[stage] = {e for part in _top_level_split(body[1:-1]) for e in expand_braces(part)}
    return out


def _top_level_split(text: str) -> list[str]:
    """``a,b_{x,y},c`` -> ``['a', 'b_{x,y}', 'c']``: split at commas outside braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def test_brace_expansion_on_known_text():
    assert expand_braces("div_{lang,task}_seed{2,3}") == ["div_lang_seed2", "div_lang_seed3", "div_task_seed2",
                                                          "div_task_seed3"]
    assert _top_level_split("a,b_{x,y},c") == ["a", "b_{x,y}", "c"]


@pytest.mark.parametrize("page", [REPO / "README.md", REPO / "docs" / "pipeline.md"], ids=_name)
def test_pipeline_diagram_names_every_training(page: Path):
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    assert diagram_trainings(page) == {"train": {str(n) for n in params["scale"]["per_language"]},
                                       "train_run": set(params["runs"])}
