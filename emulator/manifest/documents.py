"""Finding and reading Architect files in their `.arc`, JSON and YAML forms.

Every form is normalized to the structure that the `.arc` parser returns:
a mapping of pragma name to a list of entries. The code that interprets
pragmas therefore sees one shape. Each key of a JSON or YAML object
becomes the entry that its `.arc` equivalent would give, so
`{"timeout": 30}` becomes `["timeout", 30]`, `{"layers": [...]}` becomes
`{"layers": [...]}`, and `{"name": null}` becomes the bare string `"name"`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emulator.errors import ConfigError
from emulator.manifest.arc import Position, parse_arc_document

# File names that Architect looks for, per kind of file, in order of
# precedence: the first file that exists is used. Source:
# `@architect/inventory` (src/read/index.js).
MANIFEST_FILES = ("app.arc", ".arc", "arc.json", "arc.yaml", "arc.yml", "package.json")
FUNCTION_CONFIG_FILES = (
    "config.arc",
    ".arc-config",
    "arc.json",
    "arc-config.json",
    "config.yaml",
    "config.yml",
    "arc-config.yaml",
    "arc-config.yml",
)
PREFERENCES_FILES = ("preferences.arc", "prefs.arc", ".preferences.arc", ".prefs.arc")

# package.json keys that hold the manifest, in order of preference.
PACKAGE_JSON_KEYS = ("arc", "architect")


@dataclass(frozen=True)
class Document:
    """A parsed Architect file: its pragmas and where each entry was written."""

    path: Path
    pragmas: dict[str, list[Any]]
    pragma_positions: dict[str, Position]
    entry_positions: dict[str, list[Position]]
    key_positions: dict[str, list[dict[str, Position]]]

    def position(self, pragma: str, index: int | None = None, key: str | None = None) -> Position:
        """Return where a pragma, one of its entries, or a key of a map entry was written."""
        if index is None:
            return self.pragma_positions.get(pragma, Position())
        if key is not None:
            keys = self.key_positions.get(pragma, [])
            if index < len(keys) and key in keys[index]:
                return keys[index][key]
        entries = self.entry_positions.get(pragma, [])
        if index < len(entries):
            return entries[index]
        return Position()

    def error(
        self, message: str, position: Position | None = None, hint: str | None = None
    ) -> ConfigError:
        """Build a ConfigError that points at `position` in this file."""
        if position is None:
            return ConfigError(message, path=self.path, hint=hint)
        if position.line is None and position.key is not None:
            message = f"{position.key}: {message}"
        return ConfigError(
            message, path=self.path, line=position.line, column=position.column, hint=hint
        )


def find_manifest(root: Path) -> Document | None:
    """Read the project manifest of `root`, or return None if there is none.

    A package.json without an `arc` or `architect` key is not a manifest,
    so the search ends there without one.
    """
    for name in MANIFEST_FILES:
        path = root / name
        if path.is_file():
            document = read_document(path)
            if document is not None:
                return document
    return None


def find_function_config(directory: Path) -> Document | None:
    """Read the first per-function config file in a handler directory, if any."""
    for name in FUNCTION_CONFIG_FILES:
        path = directory / name
        if path.is_file():
            return read_document(path)
    return None


def read_document(path: Path, *, typed: bool = True) -> Document | None:
    """Parse an Architect file, choosing the form by its name.

    Returns None only for a package.json without an Architect key. With
    `typed=False`, `.arc` values stay the strings that were written.
    """
    text = read_text(path)
    if path.name == "package.json":
        return _read_package_json(path, text)
    if path.suffix == ".json":
        return _document_from_data(path, _load_json(path, text), None)
    if path.suffix in (".yaml", ".yml"):
        data, node = _load_yaml(path, text)
        return _document_from_data(path, data, node)

    parsed = parse_arc_document(text, path, typed=typed)
    return Document(
        path,
        parsed.pragmas,
        parsed.pragma_positions,
        parsed.entry_positions,
        parsed.key_positions,
    )


def read_text(path: Path) -> str:
    """Read a UTF-8 text file (a byte order mark is dropped), raising ConfigError on failure."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"failed to read the file: {error.strerror}", path=path) from error
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"the file is not valid UTF-8 (invalid byte at offset {error.start})",
            path=path,
            hint="Save the file as UTF-8.",
        ) from error


def _read_package_json(path: Path, text: str) -> Document | None:
    data = _load_json(path, text)
    for key in PACKAGE_JSON_KEYS:
        if key in data:
            manifest = data[key]
            if not isinstance(manifest, dict):
                raise ConfigError(
                    f"the `{key}` key of package.json must be an object of pragmas, "
                    f"found {_json_type(manifest)}",
                    path=path,
                    hint='For example: "arc": {"app": "my-app", "ws": []}',
                )
            return _document_from_data(path, manifest, None, prefix=f"{key}.")
    return None


def _load_json(path: Path, text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"invalid JSON: {error.msg}", path=path, line=error.lineno, column=error.colno
        ) from error
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a JSON object at the top level, found {_json_type(data)}", path=path
        )
    return data


def _load_yaml(path: Path, text: str) -> tuple[dict[str, Any], yaml.Node | None]:
    """Parse YAML with the safe loader, keeping the node tree for line numbers."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        problem = error.problem or error.context or "syntax error"
        raise ConfigError(
            f"invalid YAML: {problem}",
            path=path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from error
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML: {error}", path=path) from error
    finally:
        loader.dispose()

    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of pragmas at the top level, found {_json_type(data)}",
            path=path,
            line=1,
        )
    return data, node


def _document_from_data(
    path: Path, data: dict[Any, Any], node: yaml.Node | None, prefix: str = ""
) -> Document:
    """Normalize a JSON or YAML object of pragmas to the `.arc` structure."""
    pragmas: dict[str, list[Any]] = {}
    pragma_positions: dict[str, Position] = {}
    entry_positions: dict[str, list[Position]] = {}
    key_positions: dict[str, list[dict[str, Position]]] = {}
    pragma_nodes = _mapping_nodes(node)

    for raw_name, value in data.items():
        name = str(raw_name)
        key_node, value_node = pragma_nodes.get(name, (None, None))
        pragma_positions[name] = _position(key_node, prefix + name)

        entries: list[Any] = []
        positions: list[Position] = []
        keys: list[dict[str, Position]] = []

        if isinstance(value, list):
            item_nodes = _sequence_nodes(value_node, len(value))
            for index, item in enumerate(value):
                label = f"{prefix}{name}[{index}]"
                if item is None:
                    continue
                if isinstance(item, dict):
                    item_keys = _mapping_nodes(item_nodes[index])
                    for item_key, item_value in item.items():
                        item_key_node, item_value_node = item_keys.get(str(item_key), (None, None))
                        entries.append(_entry_from_pair(str(item_key), item_value))
                        positions.append(_position(item_key_node, label))
                        keys.append(_key_positions(item_value, item_value_node, label))
                else:
                    entries.append(item)
                    positions.append(_position(item_nodes[index], label))
                    keys.append({})
        elif isinstance(value, dict):
            value_keys = _mapping_nodes(value_node)
            for item_key, item_value in value.items():
                label = f"{prefix}{name}.{item_key}"
                item_key_node, item_value_node = value_keys.get(str(item_key), (None, None))
                entries.append(_entry_from_pair(str(item_key), item_value))
                positions.append(_position(item_key_node, label))
                keys.append(_key_positions(item_value, item_value_node, label))
        elif value is not None:
            entries.append(value)
            positions.append(_position(value_node, prefix + name))
            keys.append({})

        pragmas[name] = entries
        entry_positions[name] = positions
        key_positions[name] = keys

    return Document(path, pragmas, pragma_positions, entry_positions, key_positions)


def _entry_from_pair(key: str, value: Any) -> Any:
    """Turn one `key: value` of an object into the `.arc` entry that means the same."""
    if value is None:
        return key
    if isinstance(value, list | dict):
        return {key: value}
    return [key, value]


def _key_positions(value: Any, node: yaml.Node | None, label: str) -> dict[str, Position]:
    if not isinstance(value, dict):
        return {}
    nodes = _mapping_nodes(node)
    return {
        str(key): _position(nodes.get(str(key), (None, None))[0], f"{label}.{key}") for key in value
    }


def _mapping_nodes(node: yaml.Node | None) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    """Index the pairs of a YAML mapping node by the text of their scalar keys."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            pairs[str(key_node.value)] = (key_node, value_node)
    return pairs


def _sequence_nodes(node: yaml.Node | None, length: int) -> list[yaml.Node | None]:
    if isinstance(node, yaml.SequenceNode) and len(node.value) == length:
        return list(node.value)
    return [None] * length


def _position(node: yaml.Node | None, key: str) -> Position:
    if node is None:
        return Position(key=key)
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1, key=key)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
