"""The documentation cannot drift from the code.

- Every ```python block of README.md and docs/**/*.md runs, offline, in a fresh temporary folder; the
  blocks of one page run in order in one namespace. A block preceded by `<!-- skip: reason -->` does not run and is
  reported as a skipped test with its reason (`pytest -rs` lists them).
- Every shell command of those pages that runs a script of the repository (`python examples/X.py ...`,
  `accelerate launch [options] examples/X.py ...`, `torchrun [options] ...`, `python -m locvtp_hf.X ...`) names a
  script that exists, and the script's own argument parser accepts the arguments shown; the script stops right after
  parsing, so nothing is trained. Launcher options are checked with the launcher's parser.
- The `>>>` examples in the package's docstrings run as doctests.
- Every page is in the site's nav, every module is in the API reference, and the README's relative links resolve.

See docs/contributing.md for the conventions.
"""

import argparse
import contextlib
import doctest
import importlib
import importlib.util
import io
import pkgutil
import re
import runpy
import shlex
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import locvtp_hf


ROOT = Path(__file__).resolve().parents[1]
# MODEL_CARD.md is the Jinja template of the generated model cards, not a page: tests/test_hub.py renders cards from
# it and runs their usage examples.
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
# CommonMark: the info string after a backtick fence holds no backtick (else the line is inline code)
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}(?=[^`]*$)|~{3,})\s*(?P<language>[\w+-]*)")
SKIP_MARKER = re.compile(r"^\s*<!--\s*skip:(?P<reason>.*?)-->\s*$")
SHELL_LANGUAGES = {"bash", "shell", "sh", "console"}
PYTHON_PROGRAM = re.compile(r"python(3(\.\d+)?)?")


def _relative(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else str(page)


@dataclass(frozen=True)
class CodeBlock:
    page: Path
    line: int  # 1-based line of the block's first code line in the page
    language: str
    code: str
    skip_reason: str | None

    @property
    def where(self) -> str:
        return f"{_relative(self.page)}:{self.line}"


def parse_page(page: Path, text: str | None = None) -> tuple[list[CodeBlock], list[str]]:
    """The fenced code blocks of a Markdown page, each with the reason of a `<!-- skip: ... -->` marker right above
    it, and the problems with the page's skip markers (no reason, or not above a ```python block)."""
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks, problems, index = [], [], 0
    marker = None  # (where, reason) of a skip marker waiting for its block

    def drop_dangling_marker():
        nonlocal marker
        if marker is not None:
            problems.append(f"{marker[0]}: skip marker not followed by a ```python block")
        marker = None

    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            if lines[index].strip():
                drop_dangling_marker()
            if found := SKIP_MARKER.match(lines[index]):
                marker = (f"{_relative(page)}:{index + 1}", found["reason"].strip())
                if not marker[1]:
                    problems.append(f"{marker[0]}: skip marker without a reason")
            index += 1
            continue
        fence, indent, language = opening["fence"], len(opening["indent"]), opening["language"].lower()
        closing = re.compile(rf"\s*{re.escape(fence[0])}{{{len(fence)},}}\s*")
        end = next((end for end in range(index + 1, len(lines)) if closing.fullmatch(lines[end])), None)
        if end is None:
            raise ValueError(f"{_relative(page)}:{index + 1}: code fence {fence} is never closed")
        body = lines[index + 1:end]
        code = "\n".join(line[indent:] if not line[:indent].strip() else line.lstrip() for line in body)
        if language not in ("python", "py"):
            drop_dangling_marker()
        blocks.append(CodeBlock(page, index + 2, language, code, marker[1] if marker else None))
        marker, index = None, end + 1
    drop_dangling_marker()
    return blocks, problems


BLOCKS = [block for page in PAGES for block in parse_page(page)[0]]
PYTHON_BLOCKS = [block for block in BLOCKS if block.language in ("python", "py")]
PAGES_WITH_PYTHON = sorted({block.page for block in PYTHON_BLOCKS if block.skip_reason is None})
SKIPPED_BLOCKS = [block for block in PYTHON_BLOCKS if block.skip_reason is not None]


@pytest.fixture
def fresh_folder(tmp_path, monkeypatch):
    """A fresh working folder, the Hub offline, and sys.argv / sys.path restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


# ----------------------------------------------------------------------------------------------- python snippets


@pytest.mark.parametrize("page", PAGES_WITH_PYTHON, ids=lambda page: str(page.relative_to(ROOT)))
def test_python_snippets_run(page, fresh_folder):
    namespace = {"__name__": "__main__"}
    for block in PYTHON_BLOCKS:
        if block.page != page or block.skip_reason is not None:
            continue
        # Padding puts every code line at its line number in the page, so tracebacks point into the Markdown file.
        try:
            exec(compile("\n" * (block.line - 1) + block.code, str(page), "exec"), namespace)
        except Exception as error:
            failure = "".join(traceback.format_exception(type(error), error, error.__traceback__.tb_next))
        else:
            continue
        pytest.fail(f"the ```python block at {block.where} failed:\n{failure}", pytrace=False)


@pytest.mark.parametrize("block", SKIPPED_BLOCKS, ids=lambda block: block.where)
def test_skipped_snippet(block):
    pytest.skip(f"{block.where}: {block.skip_reason}")


def test_skip_markers_are_well_formed():
    """A skip marker needs a reason and must stand right above a ```python block (else it silently skips nothing)."""
    problems = [problem for page in PAGES for problem in parse_page(page)[1]]
    assert not problems, "\n".join(problems)


def test_page_parser():
    text = """# Page
<!-- skip: needs a real checkpoint -->

```python
model = load('user/model')
```
- a list item:
  ```py
  if x:
      y = 1
  ```
````markdown
<!-- skip: an example inside an example -->
```python
```
````
<!-- skip: -->
```bash
ls
```
<!-- skip: dangling -->
```` ```python ```` is inline code, not a fence
"""
    blocks, problems = parse_page(Path("page.md"), text)
    assert [(block.line, block.language, block.code, block.skip_reason) for block in blocks] == [
        (5, "python", "model = load('user/model')", "needs a real checkpoint"),
        (9, "py", "if x:\n    y = 1", None),
        (13, "markdown", "<!-- skip: an example inside an example -->\n```python\n```", None),
        (19, "bash", "ls", None),
    ]
    assert problems == [
        "page.md:17: skip marker without a reason",
        "page.md:17: skip marker not followed by a ```python block",
        "page.md:21: skip marker not followed by a ```python block",
    ]


# ------------------------------------------------------------------------------------------------ shell commands


@dataclass(frozen=True)
class ScriptCommand:
    block: CodeBlock
    line: int  # the command's line in the page
    text: str  # the command as written
    launcher: str  # "python", "accelerate" or "torchrun"
    launcher_args: tuple[str, ...]
    target: str  # a script path, or "-m module"
    script_args: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{_relative(self.block.page)}:{self.line}"


def _shell_lines(code: str) -> list[tuple[int, str]]:
    """`(line offset in the block, logical line)`: continuations joined, `<placeholder>` brackets removed and shell
    variables (`$RANK`, `${RANK}`) replaced by `0`, a value that any argument type accepts."""
    logical, offset = [], 0
    for text in re.split(r"(?<!\\)\n", code):
        line = re.sub(r"\$\{?[A-Za-z_]\w*\}?", "0", re.sub(r"<([^<>\s]+)>", r"\1", text.replace("\\\n", " ")))
        if line.strip():
            logical.append((offset, line))
        offset += text.count("\n") + 1
    return logical


def _commands(line: str) -> list[list[str]]:
    """The simple commands of one shell line, split at `&&`, `||`, `;` and `|`; comments dropped, `[optional]`
    brackets removed, and the command string of `bash -c '...'` (or `sh -c`) read as commands of its own."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in lexer:
        if token and set(token) <= set(";&|"):
            commands.append(current)
            current = []
        else:
            current.append(token.strip("[]"))
    commands.append(current)
    simple = []
    for command in commands:
        command = [token for token in command if token and token != "..."]
        shell = next((index for index, token in enumerate(command[:-2]) if Path(token).name in ("bash", "sh")
                      and command[index + 1] == "-c"), None)
        simple.extend(_commands(command[shell + 2]) if shell is not None else [command] if command else [])
    return simple


def _is_launcher(tokens: list[str], index: int) -> bool:
    name = Path(tokens[index]).name
    return bool(PYTHON_PROGRAM.fullmatch(name)) or name == "torchrun" or (
        name == "accelerate" and tokens[index + 1:index + 2] == ["launch"]
    )


def _script_command(block: CodeBlock, line: int, text: str, tokens: list[str]) -> ScriptCommand | None:
    # whatever comes before the launcher (VAR=value, srun ..., time, nohup) is not checked
    start = next((index for index in range(len(tokens)) if _is_launcher(tokens, index)), None)
    if start is None:
        return None
    tokens = tokens[start:]
    program = Path(tokens[0]).name
    if PYTHON_PROGRAM.fullmatch(program):
        options = []
        for position, token in enumerate(tokens[1:], start=1):
            if token == "-m" and position + 1 < len(tokens):
                module = tokens[position + 1]
                if module.split(".")[0] != "locvtp_hf":
                    return None
                arguments = tuple(tokens[position + 2:])
                return ScriptCommand(block, line, text, "python", tuple(options), f"-m {module}", arguments)
            if token.endswith(".py"):
                return ScriptCommand(block, line, text, "python", tuple(options), token, tuple(tokens[position + 1:]))
            if not token.startswith("-") or token == "-c":
                return None
            options.append(token)
        return None
    if program == "accelerate" and tokens[1:2] == ["launch"]:
        arguments = tokens[2:]
    elif program == "torchrun":
        arguments = tokens[1:]
    else:
        return None
    script_position = next((index for index, token in enumerate(arguments) if token.endswith(".py")), None)
    if script_position is None:
        return None
    return ScriptCommand(
        block, line, text, program if program == "torchrun" else "accelerate", tuple(arguments[:script_position]),
        arguments[script_position], tuple(arguments[script_position + 1:]),
    )


SCRIPT_COMMANDS = [
    command
    for block in BLOCKS
    if block.language in SHELL_LANGUAGES
    for offset, line in _shell_lines(block.code)
    for tokens in _commands(line)
    if (command := _script_command(block, block.line + offset, line, tokens)) is not None
]


class _ArgumentsParsed(Exception):
    """Raised in place of a script's argument parser's return, to stop the script right after parsing."""


def parse_like_the_script(run, argv: list[str]) -> str | None:
    """Run a script (through `run`) with `argv` until its argument parser has parsed them.

    Returns None if the parser accepted them (or printed `--help`), else what the parser said. A parser made with
    `add_help=False` (a pre-parser that reads one option, e.g. a config file) is let through.
    """
    original = argparse.ArgumentParser.parse_known_args

    def parse_known_args(parser, args=None, namespace=None):
        namespace, unknown = original(parser, args, namespace)
        if not parser.add_help:
            return namespace, unknown
        raise _ArgumentsParsed(unknown)

    stderr = io.StringIO()
    try:
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            patch.setattr(argparse.ArgumentParser, "parse_known_args", parse_known_args)
            patch.setattr(sys, "argv", ["script", *argv])
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: "found in sys.modules" for `-m locvtp_hf.x`
            run()
    except _ArgumentsParsed as parsed:
        unknown = parsed.args[0]
        return f"unrecognized arguments: {' '.join(unknown)}" if unknown else None
    except SystemExit as exit_:
        return None if exit_.code in (0, None) else stderr.getvalue().strip() or f"exit status {exit_.code}"
    raise AssertionError("the script returned without parsing its arguments")


def _uses_an_argument_parser(source: str) -> bool:
    return bool(re.search(r"\b(ArgumentParser|HfArgumentParser)\b", source))


@pytest.mark.parametrize("command", SCRIPT_COMMANDS, ids=lambda command: command.id)
def test_documented_script_arguments_parse(command, fresh_folder):
    where = f"{command.id}: `{command.text.strip()}`"
    if command.launcher == "accelerate":
        from accelerate.commands.launch import launch_command_parser

        launcher_parser = launch_command_parser()
    elif command.launcher == "torchrun":
        from torch.distributed.run import get_args_parser

        launcher_parser = get_args_parser()
    else:
        launcher_parser = None
    if launcher_parser is not None:
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                launched = launcher_parser.parse_args([*command.launcher_args, command.target])
        except SystemExit:
            pytest.fail(f"{where}: {command.launcher} rejects its options:\n{stderr.getvalue()}", pytrace=False)
        config_file = getattr(launched, "config_file", None)
        assert config_file is None or (ROOT / config_file).is_file(), f"{where}: no config file {config_file}"

    if command.target.startswith("-m "):
        module = command.target[3:]
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.submodule_search_locations is not None:  # `python -m package` runs its __main__
            spec = importlib.util.find_spec(f"{module}.__main__")
        assert spec is not None and spec.origin, f"{where}: no module {module}"
        source = Path(spec.origin).read_text(encoding="utf-8")

        def run():
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = ROOT / command.target
        assert script.is_file(), f"{where}: the script {command.target} does not exist"
        source = script.read_text(encoding="utf-8")
        sys.path.insert(0, str(script.parent))

        def run():
            runpy.run_path(str(script), run_name="__main__")

    if not _uses_an_argument_parser(source):
        assert not command.script_args, f"{where}: {command.target} takes no arguments"
        return
    problem = parse_like_the_script(run, list(command.script_args))
    assert problem is None, f"{where}: {command.target} rejects these arguments:\n{problem}"


def test_script_command_extraction():
    block = CodeBlock(ROOT / "README.md", 1, "bash", "", None)
    line = ("FOO=1 accelerate launch --config_file a.yaml examples/pretrain.py --max_steps 3 "
            "[--seed 1]  # comment && python x.py")
    (tokens,) = _commands(line)
    command = _script_command(block, 1, line, tokens)
    assert (command.launcher_args, command.target, command.script_args) == (
        ("--config_file", "a.yaml"), "examples/pretrain.py", ("--max_steps", "3", "--seed", "1")
    )
    first, second = _commands("pip install -e . && python -m locvtp_hf.synthetic --export <folder>")
    assert _script_command(block, 1, "", first) is None
    assert _script_command(block, 1, "", second).script_args == ("--export", "<folder>")
    assert _shell_lines("ls\n\npython -m locvtp_hf.synthetic \\\n  --export <folder> --seed ${SEED}\nls") == [
        (0, "ls"), (2, "python -m locvtp_hf.synthetic    --export folder --seed 0"), (4, "ls")
    ]
    (slurm,) = _commands("srun -N 2 bash -c 'torchrun --nnodes 2 examples/pretrain.py --seed 0'")
    command = _script_command(block, 1, "", slurm)
    assert (command.launcher, command.launcher_args, command.script_args) == (
        "torchrun", ("--nnodes", "2"), ("--seed", "0")
    )
    assert _script_command(block, 1, "", ["python3", "-m", "venv", ".venv"]) is None


def test_argument_check_rejects_what_the_parser_rejects():
    def run():
        parser = argparse.ArgumentParser()
        parser.add_argument("--steps", type=int)
        parser.parse_args()
        raise AssertionError("not stopped after parsing")

    assert parse_like_the_script(run, ["--steps", "3"]) is None
    assert parse_like_the_script(run, ["--help"]) is None
    assert "unrecognized arguments: --stpes" in parse_like_the_script(run, ["--stpes", "3"])
    assert "invalid int value" in parse_like_the_script(run, ["--steps", "many"])


# ---------------------------------------------------------------------------------------------------- doctests


class _FencedDocTestParser(doctest.DocTestParser):
    """Docstring examples sit inside ```python fences; the closing fence is not expected output."""

    def parse(self, string, name="<string>"):
        return super().parse(re.sub(r"(?m)^[ \t]*```\w*[ \t]*$", "", string), name)


def _package_doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(parser=_FencedDocTestParser())
    tests = []
    for module_info in pkgutil.walk_packages(locvtp_hf.__path__, prefix="locvtp_hf."):
        module = importlib.import_module(module_info.name)
        tests.extend(test for test in finder.find(module) if test.examples)
    return sorted(tests, key=lambda test: test.name)


DOCTESTS = _package_doctests()


@pytest.mark.parametrize("test", DOCTESTS, ids=lambda test: test.name)
def test_docstring_examples(test, fresh_folder):
    if all(example.options.get(doctest.SKIP) for example in test.examples):
        pytest.skip(f"{test.name}: every example is marked `# doctest: +SKIP`")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    result = runner.run(test, out=report.write, clear_globs=True)
    assert result.failed == 0, report.getvalue()


# --------------------------------------------------------------------------------------------- site structure


def _nav_pages(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_pages(value)]
    return [page for item in nav for page in _nav_pages(item)]


def test_every_page_is_in_the_site_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    pages = sorted(str(path.relative_to(ROOT / "docs")) for path in (ROOT / "docs").rglob("*.md"))
    assert sorted(set(pages) - set(nav)) == [], "pages missing from the nav of mkdocs.yml"
    assert sorted(set(nav) - set(pages)) == [], "nav entries of mkdocs.yml without a page"


def test_every_module_is_in_the_api_reference():
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"(?m)^::: (locvtp_hf\.[\w.]+)", api))
    modules = {info.name for info in pkgutil.walk_packages(locvtp_hf.__path__, prefix="locvtp_hf.")}
    assert sorted(modules - documented) == [], "modules missing from docs/api.md"


def test_readme_links_resolve():
    broken = []
    for page in (ROOT / "README.md", ROOT / "MODEL_CARD.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            path = target.split("#")[0]
            if path and "://" not in path and not (page.parent / path).exists():
                broken.append(f"{page.name}: {target}")
    assert not broken, broken
