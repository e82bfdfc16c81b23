"""
A griffe extension for the API reference. The package's docstrings follow transformers' style, which mkdocstrings
does not read as such:

- an argument's type is Markdown inside its parentheses (`` (`int`, *optional*, defaults to 4) ``), which
  mkdocstrings would show as code, backticks and asterisks included: it is shown as plain text, `(int, optional,
  defaults to 4)`;
- a reference to another object is written ``[`LocVTPModel`]`` or ``[`~LocVTPModel.get_clip_features`]`` (`~`: show
  the last part only): it becomes a link when the name is an object of the package, else inline code.
"""

import re

import griffe


TRANSFORMERS_REFERENCE = re.compile(r"\[`(~?)([\w.]+)`\]")


def _documented_objects(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _documented_objects(member)


class PlainDocstringTypes(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        objects = list(_documented_objects(pkg))
        # every dotted tail of the path of every object on the page: "LocVTPModel", "modeling_locvtp.LocVTPModel",
        # "LocVTPModel.get_clip_features", ... -> the paths it may name (only unambiguous tails become links)
        paths_by_tail = {}
        for obj in objects:
            parts = obj.path.split(".")
            if obj.docstring is None or any(part.startswith("_") for part in parts):
                continue  # not on the API page (mkdocstrings shows public objects with a docstring)
            for start in range(1, len(parts)):
                paths_by_tail.setdefault(".".join(parts[start:]), set()).add(obj.path)

        def link(match: re.Match) -> str:
            short, name = match.groups()
            shown = name.rsplit(".", 1)[-1] if short else name
            paths = paths_by_tail.get(name.removeprefix("locvtp_hf."), set())
            return f"[`{shown}`][{next(iter(paths))}]" if len(paths) == 1 else f"`{shown}`"

        for obj in objects:
            if obj.docstring is None:
                continue
            for section in obj.docstring.parsed:
                if isinstance(section.value, str):
                    section.value = TRANSFORMERS_REFERENCE.sub(link, section.value)
                    continue
                for item in section.value if isinstance(section.value, list) else ():
                    if isinstance(getattr(item, "description", None), str):
                        item.description = TRANSFORMERS_REFERENCE.sub(link, item.description)
                    if isinstance(getattr(item, "annotation", None), str):
                        plain = TRANSFORMERS_REFERENCE.sub(lambda match: match.group(2), item.annotation)
                        item.annotation = plain.replace("`", "").replace("*", "")
