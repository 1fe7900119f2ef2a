"""YAML reading that remembers where each value came from.

A technician fixing a policy needs "school.yaml, line 42", so the loader keeps
the line of every mapping key and sequence item beside the plain Python data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a policy file, for error messages."""

    file: str
    line: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}"


class Located:
    """Mixin: the source position of a mapping or sequence and of its members."""

    where: Where
    member_where: dict[Any, Where]

    def at(self, key: Any) -> Where:
        return self.member_where.get(key, self.where)


class LMap(dict[str, Any], Located):
    pass


class LList(list[Any], Located):
    pass


class PolicySyntaxError(ValueError):
    def __init__(self, where: Where, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def _convert(node: yaml.Node, file: str, loader: yaml.SafeLoader) -> Any:
    where = Where(file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = LMap()
        out.where, out.member_where = where, {}
        for key_node, value_node in node.value:
            key = _convert(key_node, file, loader)
            if isinstance(key, (LMap, LList)):
                raise PolicySyntaxError(where, "a key must be a plain word, not a list or mapping")
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                raise PolicySyntaxError(
                    Where(file, key_node.start_mark.line + 1), f"'{key}' is given twice"
                )
            out[key] = _convert(value_node, file, loader)
            out.member_where[key] = Where(file, key_node.start_mark.line + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        seq = LList()
        seq.where, seq.member_where = where, {}
        for i, item in enumerate(node.value):
            seq.append(_convert(item, file, loader))
            seq.member_where[i] = Where(file, item.start_mark.line + 1)
        return seq
    return loader.construct_object(node, deep=True)


def load_located(path: Path) -> Any:
    """Parse a YAML file into LMap/LList/scalars; raise PolicySyntaxError with the line."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicySyntaxError(Where(file, 0), f"cannot read the file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise PolicySyntaxError(Where(file, 0), "the file is not UTF-8 text") from exc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicySyntaxError(Where(file, 1), "the file is empty")
        return _convert(node, file, loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise PolicySyntaxError(
            Where(file, line), f"this is not valid YAML ({exc.problem or exc.context})"
        ) from exc
    finally:
        loader.dispose()
