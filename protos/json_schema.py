"""JSON Schema (draft 2020-12) of a public message, as the CLI prints it.

`advex report NAME --json` (and `evaluate --json`, `get`, ...) print
messages with protobuf's JSON mapping, proto field names kept and every
field without presence printed (`advex.cli.render.to_dict`). This writes
the schema of that JSON from the .proto files themselves, comments
included as descriptions, so the schema cannot drift from the API:

    python protos/json_schema.py advex.v1.Report > docs/report.schema.json

`make proto` runs it and `make check-proto` fails when the committed schema
differs. The mapping, per field:
- 32-bit integers are JSON integers; 64-bit integers are decimal strings
  (the JSON mapping's rule, so no precision is lost in JavaScript);
- float and double are numbers, or "NaN", "Infinity", "-Infinity";
- enums are their value names; bytes are base64 strings;
- a field with presence (optional, a message, a oneof member) may be
  absent; every other field is always there (`required`);
- repeated fields are arrays, maps are objects; unknown fields are refused
  (`additionalProperties: false`), so a test validating real reports also
  catches a schema that forgot a field.
A dev tool: it needs grpcio-tools (protoc), which the services do not.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

PROTOS = Path(__file__).resolve().parent
_FDP = descriptor_pb2.FieldDescriptorProto
_INT32 = {_FDP.TYPE_INT32, _FDP.TYPE_UINT32, _FDP.TYPE_SINT32, _FDP.TYPE_FIXED32, _FDP.TYPE_SFIXED32}
_INT64 = {_FDP.TYPE_INT64, _FDP.TYPE_UINT64, _FDP.TYPE_SINT64, _FDP.TYPE_FIXED64, _FDP.TYPE_SFIXED64}
_UNSIGNED = {_FDP.TYPE_UINT32, _FDP.TYPE_FIXED32, _FDP.TYPE_UINT64, _FDP.TYPE_FIXED64}
# message DescriptorProto field numbers, for source-code-info paths.
_MESSAGE_FIELD, _NESTED_TYPE, _ENUM_TYPE = 2, 3, 4
_FILE_MESSAGE = 4


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """Every public .proto, compiled by protoc with its comments."""
    from importlib import resources

    from grpc_tools import protoc

    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "advex" / "v1").glob("*.proto"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "set.binpb"
        code = protoc.main([
            "protoc", f"-I{PROTOS}", f"-I{well_known}", "--include_source_info", "--include_imports",
            f"--descriptor_set_out={out}", *sources,
        ])
        if code != 0:
            raise SystemExit(f"protoc failed ({code})")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


class _Types:
    """Messages and enums by full name, with their comments."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[tuple, str] = {}  # (message full name, field name or "") -> text
        for file in files.file:
            by_path = {tuple(loc.path): loc.leading_comments for loc in file.source_code_info.location}
            for i, message in enumerate(file.message_type):
                self._add(message, file.package, (_FILE_MESSAGE, i), by_path)
            for enum in file.enum_type:
                self.enums[f"{file.package}.{enum.name}"] = enum

    def _add(self, message, scope: str, path: tuple, by_path: dict) -> None:
        name = f"{scope}.{message.name}"
        self.messages[name] = message
        self.comments[(name, "")] = _clean(by_path.get(path, ""))
        for i, field in enumerate(message.field):
            self.comments[(name, field.name)] = _clean(by_path.get((*path, _MESSAGE_FIELD, i), ""))
        for i, nested in enumerate(message.nested_type):
            self._add(nested, name, (*path, _NESTED_TYPE, i), by_path)
        for enum in message.enum_type:
            self.enums[f"{name}.{enum.name}"] = enum


def _clean(comment: str) -> str:
    return " ".join(comment.split())


def schema(root: str, files: descriptor_pb2.FileDescriptorSet | None = None) -> dict:
    """The JSON Schema of message `root` (e.g. "advex.v1.Report")."""
    types = _Types(files or descriptor_set())
    defs: dict[str, dict] = {}
    pending = [root]
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        defs[name] = _message_schema(types, name, pending)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": root,
        "description": (
            f"{types.comments[(root, '')]} As the advex CLI prints it with --json (protobuf's JSON mapping, "
            "proto field names, fields without presence always printed). Generated from protos/ by "
            "protos/json_schema.py; do not edit."
        ).strip(),
        "$ref": f"#/$defs/{root}",
        "$defs": dict(sorted(defs.items())),
    }


def _message_schema(types: _Types, name: str, pending: list[str]) -> dict:
    message = types.messages[name]
    properties, required = {}, []
    map_entries = {n.name: n for n in message.nested_type if n.options.map_entry}
    for field in message.field:
        value = _field_schema(types, field, map_entries, pending)
        comment = types.comments.get((name, field.name))
        if comment:
            value = {"description": comment, **value}
        properties[field.name] = value
        has_presence = (
            field.proto3_optional or field.HasField("oneof_index") or field.type == _FDP.TYPE_MESSAGE
        ) and field.label != _FDP.LABEL_REPEATED
        if not has_presence:
            required.append(field.name)
    out = {"type": "object"}
    if types.comments.get((name, "")):
        out["description"] = types.comments[(name, "")]
    out.update(properties=properties, required=required, additionalProperties=False)
    return out


def _field_schema(types: _Types, field, map_entries: dict, pending: list[str]) -> dict:
    if field.label == _FDP.LABEL_REPEATED:
        entry = map_entries.get(field.type_name.rsplit(".", 1)[-1])
        if entry is not None:
            value = _scalar_schema(types, entry.field[1], pending)
            return {"type": "object", "additionalProperties": value}
        return {"type": "array", "items": _scalar_schema(types, field, pending)}
    return _scalar_schema(types, field, pending)


def _scalar_schema(types: _Types, field, pending: list[str]) -> dict:
    kind = field.type
    if kind == _FDP.TYPE_MESSAGE:
        name = field.type_name.lstrip(".")
        if name.startswith("google.protobuf."):
            return _well_known(name)
        pending.append(name)
        return {"$ref": f"#/$defs/{name}"}
    if kind == _FDP.TYPE_ENUM:
        enum = types.enums[field.type_name.lstrip(".")]
        return {"type": "string", "enum": [v.name for v in enum.value]}
    if kind in _INT32:
        return {"type": "integer", **({"minimum": 0} if kind in _UNSIGNED else {})}
    if kind in _INT64:
        return {"type": "string", "pattern": "^[0-9]+$" if kind in _UNSIGNED else "^-?[0-9]+$"}
    if kind in (_FDP.TYPE_DOUBLE, _FDP.TYPE_FLOAT):
        return {"oneOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}
    if kind == _FDP.TYPE_BOOL:
        return {"type": "boolean"}
    if kind == _FDP.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}


def _well_known(name: str) -> dict:
    if name == "google.protobuf.Timestamp":
        return {"type": "string", "format": "date-time"}
    if name == "google.protobuf.Duration":
        return {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"}
    raise SystemExit(f"no JSON Schema mapping for {name}: add one to protos/json_schema.py")


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python protos/json_schema.py advex.v1.Report > docs/report.schema.json")
    sys.stdout.write(json.dumps(schema(argv[0]), indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
