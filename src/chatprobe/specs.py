"""The schemas and dialect profiles of ``specs/``, loaded once and compiled once.

    load_profile(name_or_path) -> Profile       bundled name (cached) or a user YAML file
    validator(dialect_or_profile, kind)          compiled once per schema file, cached
    validate(dialect, kind, instance)            -> list[SchemaError] (empty: valid)

Validation has two speeds. ``jsonschema_rs`` (Rust) answers "valid?" on the hot
path (every chunk of a load test); only when it says *invalid* does the
pure-Python ``jsonschema`` run to produce the detailed error list, because its
errors carry the schema path that rule names are derived from.

Rule names (documented in specs/README.md) are ``<field path>.<keyword>``: the
names of the object members on the way to the failing value, without array
indices or map keys, then the failed keyword (``temperature.maximum``,
``messages.role.enum``, ``model.required``). A schema can name a rule itself
with the annotation ``"x-rule"`` (used for conditional rules such as
``top_logprobs.requires_logprobs``). For ``oneOf`` / ``anyOf`` failures the most
specific branch error is reported.

A broken bundled or user profile / schema raises :class:`SpecError`; an unknown
dialect name or a missing file raises :class:`UsageError`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema
import jsonschema.exceptions
import referencing
import referencing.exceptions
import referencing.jsonschema

from chatprobe import inputs
from chatprobe.errors import SpecError, UsageError
from chatprobe.paths import specs_dir

_fast_lib: Any
try:  # the fast path; the pure-Python validator alone is correct, only slower
    import jsonschema_rs as _fast_lib
except ImportError:  # pragma: no cover - jsonschema-rs is a declared dependency
    _fast_lib = None

__all__ = [
    "KINDS",
    "SCHEMA_BASE",
    "Auth",
    "Framing",
    "Kind",
    "Profile",
    "SchemaError",
    "SchemaValidator",
    "bundled_dialects",
    "load_profile",
    "rule_name",
    "validate",
    "validator",
]

Kind = Literal["request", "response", "chunk", "error"]
KINDS: tuple[Kind, ...] = ("request", "response", "chunk", "error")
FeatureLevel = Literal["must", "may", "absent"]

#: Every bundled schema's ``$id`` is this base + its path under specs/.
SCHEMA_BASE = "https://chatprobe.dev/specs/"
_PROFILE_SCHEMA = "profile.schema.json"
_MESSAGE_LIMIT = 300  # jsonschema repeats whole instances in messages; keep findings readable


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class SchemaError:
    """One way an instance fails its schema."""

    rule: str  # e.g. "temperature.maximum" (see rule_name)
    pointer: str  # JSON pointer into the instance ("" = the whole document)
    keyword: str  # the JSON Schema keyword that failed
    message: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "pointer": self.pointer, "keyword": self.keyword, "message": self.message}


def _pointer(path: Iterable[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


# Keywords followed in a schema path by a segment that is not a member name
# (a pattern, an index, a dependency name): both are skipped.
_KEYWORD_WITH_ARGUMENT = {"patternProperties", "prefixItems", "allOf", "anyOf", "oneOf", "dependentSchemas"}


def _field_names(schema_path: Sequence[str | int]) -> list[str]:
    """The member names on the way to the failing value: the names reached
    through ``properties`` in the schema path. Array indices and map keys
    (reached through items / additionalProperties / patternProperties) are
    thereby left out, which is what makes the names stable."""
    names: list[str] = []
    i = 0
    while i < len(schema_path):
        seg = schema_path[i]
        if seg == "properties" and i + 1 < len(schema_path):
            names.append(str(schema_path[i + 1]))
            i += 2
        elif isinstance(seg, str) and seg in _KEYWORD_WITH_ARGUMENT:
            i += 2
        else:
            i += 1
    return names


def _keyword(err: jsonschema.exceptions.ValidationError) -> str:
    # a `false` subschema fails with no keyword at all
    return str(err.validator) if err.validator is not None else "false"


def _missing_property(err: jsonschema.exceptions.ValidationError) -> str | None:
    # jsonschema yields one "'x' is a required property" error per missing name
    required = err.validator_value if isinstance(err.validator_value, list) else []
    instance = err.instance if isinstance(err.instance, dict) else {}
    for name in required:
        if name not in instance and err.message.startswith(repr(name)):
            return str(name)
    return None


def rule_name(err: jsonschema.exceptions.ValidationError) -> str:
    """The stable rule name of one (already most-specific) jsonschema error."""
    if isinstance(err.schema, dict):
        override = err.schema.get("x-rule")
        if isinstance(override, str):
            return override
    names = _field_names(list(err.absolute_schema_path))
    keyword = _keyword(err)
    if keyword == "required":
        missing = _missing_property(err)
        if missing is not None:
            names.append(missing)
    return ".".join([*names, keyword]) if names else keyword


def _most_specific(err: jsonschema.exceptions.ValidationError) -> list[jsonschema.exceptions.ValidationError]:
    """For a oneOf / anyOf failure, the errors of the branch that came closest:
    branches that fail only on the value's type are the wrong branch; among the
    rest, the one whose errors reach deepest, then the one with fewest errors."""
    if not err.context:
        return [err]
    branches: dict[object, list[jsonschema.exceptions.ValidationError]] = {}
    for sub in err.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    groups = list(branches.values())
    depth = len(err.absolute_path)

    def wrong_type(group: list[jsonschema.exceptions.ValidationError]) -> bool:
        return all(e.validator == "type" and len(e.absolute_path) == depth for e in group)

    candidates = [g for g in groups if not wrong_type(g)] or groups
    best = max(candidates, key=lambda g: (max(len(e.absolute_path) for e in g), -len(g)))
    return [leaf for sub in best for leaf in _most_specific(sub)]


def _short(message: str) -> str:
    return message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 1] + "…"


def _to_schema_errors(errors: Iterable[jsonschema.exceptions.ValidationError]) -> list[SchemaError]:
    out: dict[tuple[str, str], SchemaError] = {}
    for err in (leaf for raw in errors for leaf in _most_specific(raw)):
        rule = rule_name(err)
        pointer = _pointer(err.absolute_path)
        # an overlay (allOf of openai + vendor) can report one fault twice
        out.setdefault((rule, pointer), SchemaError(rule, pointer, _keyword(err), _short(err.message)))
    return sorted(out.values(), key=lambda e: (e.pointer, e.rule))


# --------------------------------------------------------------------------- schemas


def _read_json(path: Path) -> Any:
    # a regular file of at most 10 MiB, nested at most 64 deep (chatprobe.inputs)
    try:
        return inputs.load_json(path, "schema")
    except UsageError as exc:
        raise SpecError(str(exc)) from None


@dataclass(frozen=True)
class _SchemaStore:
    """Every schema under specs/ by ``$id``, checked against the 2020-12 meta-schema."""

    schemas: Mapping[str, Any]
    _validators: dict[str, SchemaValidator] = field(default_factory=dict, compare=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def load(cls, root: Path) -> _SchemaStore:
        schemas: dict[str, Any] = {}
        for path in sorted(root.rglob("*.schema.json")):
            schema = _read_json(path)
            expected = SCHEMA_BASE + path.relative_to(root).as_posix()
            if not isinstance(schema, dict) or schema.get("$id") != expected:
                raise SpecError(f"{path}: $id must be {expected!r}")
            _check_schema(path, schema)
            schemas[expected] = schema
        return cls(schemas)

    def with_schema(self, uri: str, schema: Any) -> _SchemaStore:
        return _SchemaStore({**self.schemas, uri: schema})

    def validator(self, uri: str) -> SchemaValidator:
        """Compiled on first use, then cached for the life of this store (the
        bundled store lives as long as the process)."""
        with self._lock:
            found = self._validators.get(uri)
            if found is None:
                found = self._validators[uri] = SchemaValidator(uri, self)
            return found

    @functools.cached_property
    def py_registry(self) -> referencing.Registry[Any]:
        spec = referencing.jsonschema.DRAFT202012
        return referencing.Registry().with_resources(
            (uri, spec.create_resource(schema)) for uri, schema in self.schemas.items()
        )

    @functools.cached_property
    def rs_registry(self) -> Any:
        return _fast_lib.Registry(list(self.schemas.items())) if _fast_lib is not None else None


def _check_schema(path: Path | str, schema: Any) -> None:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise SpecError(f"{path}: not a valid JSON Schema 2020-12: {_pointer(exc.absolute_path)}: {_short(exc.message)}") from exc


@functools.cache
def _bundled_store() -> _SchemaStore:
    return _SchemaStore.load(specs_dir())


class SchemaValidator:
    """One compiled schema: ``is_valid`` is the fast path, ``errors`` the detailed one."""

    #: instance -> bool; the Rust validator's own bound method when available
    #: (no Python frame of ours on the per-chunk path: it halves the cost)
    is_valid: Callable[[Any], bool]

    def __init__(self, uri: str, store: _SchemaStore) -> None:
        self.uri = uri
        schema = store.schemas[uri]
        self._slow = jsonschema.Draft202012Validator(schema, registry=store.py_registry)
        self.is_valid = self._slow.is_valid
        if _fast_lib is not None:
            try:
                self.is_valid = _fast_lib.validator_for(schema, registry=store.rs_registry).is_valid
            except Exception as exc:  # a reference the Rust side cannot resolve is a spec bug
                raise SpecError(f"{uri}: cannot compile: {exc}") from exc

    def errors(self, instance: Any) -> list[SchemaError]:
        if self.is_valid(instance):
            return []
        found = _to_schema_errors(self._slow.iter_errors(instance))
        if not found:  # the two validators disagree: say so rather than call it valid
            return [SchemaError("schema.disagreement", "", "", f"{self.uri}: the fast validator rejects what jsonschema accepts")]
        return found


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Auth:
    header: str
    scheme: str | None
    required: bool
    status: int | None = None  # the documented status for a missing / wrong key (None: undocumented)

    def header_value(self, key: str) -> str:
        return f"{self.scheme} {key}" if self.scheme else key


@dataclass(frozen=True)
class Framing:
    data_event: str | None
    error_event: str | None
    wrapper: str | None
    terminator: str | None
    terminator_required: bool
    keepalive_comments: bool
    usage_in_stream: Literal["on_request", "always", "never"]
    # chunks: every data event is one chunk; typed: events named by their data's `type`,
    # checked by the state machine chatprobe.typed.<machine> (Anthropic's Messages, OpenAI's Responses)
    kind: Literal["chunks", "typed"] = "chunks"
    machine: str | None = None


@dataclass(frozen=True)
class Profile:
    """A validated dialect profile (see specs/profile.schema.json for each field)."""

    dialect: str
    description: str
    source: str
    origin: Path  # the YAML file it came from
    method: str
    path: str  # template with {placeholders}
    path_params: Mapping[str, Mapping[str, Any]]
    query_params: Mapping[str, Mapping[str, Any]]
    body: Literal["chat", "completion", "messages", "responses"]
    model_in: Literal["body", "path", "none"]
    model_field: str
    model_required: bool
    model_path_param: str | None
    content_parts: bool
    stop_forms: tuple[str, ...]
    tools_shape: Literal["function", "toggle", "anthropic", "flat"]
    auth: Auth
    streaming_mode: Literal["body_flag", "always"]
    stream_flag: str | None
    framing: Framing
    schemas: Mapping[str, str | None]  # kind -> schema URI (None: the dialect has no such kind)
    max_tokens_field: str | None
    finish_reasons: tuple[str, ...]
    features: Mapping[str, FeatureLevel]
    raw: Mapping[str, Any] = field(repr=False)
    _store: _SchemaStore = field(repr=False, compare=False)
    stop_field: str | None = "stop"  # the body field of stop sequences (None: the dialect has none)
    finish_map: Mapping[str, str] = field(default_factory=dict)  # native stop reason -> canonical
    stop_finish: str | None = None  # the native stop reason of an answer a stop sequence ended (Messages)
    # (prompt, completion, total) field names of the usage object (total None: it has none)
    usage_names: tuple[str, str, str | None] = ("prompt_tokens", "completion_tokens", "total_tokens")
    preview: bool = False  # left out of bundled_dialects() until complete

    def feature(self, name: str) -> FeatureLevel:
        return self.features.get(name, "absent")

    @property
    def typed(self) -> bool:
        """Whether the stream is typed events under a state machine (framing.kind typed)."""
        return self.framing.kind == "typed"

    @property
    def models_path(self) -> str | None:
        """GET path of the dialect's model list (``request.models_path``; an OpenAI-style
        ``.../chat/completions`` path's ``.../models``); None: the dialect has none."""
        found = self.raw.get("request", {}).get("models_path")
        if isinstance(found, str):
            return found
        return self.path.removesuffix("chat/completions") + "models" if self.path.endswith("/chat/completions") else None

    @property
    def headers(self) -> dict[str, str]:
        """Headers the dialect's document requires on every request (``request.headers``)."""
        found = self.raw.get("request", {}).get("headers")
        return dict(found) if isinstance(found, Mapping) else {}

    @property
    def prompt_also(self) -> tuple[str, ...]:
        """Usage fields counted into the prompt besides ``usage_names.prompt`` (Anthropic's cache fields)."""
        names = self.raw.get("usage_names", {}).get("prompt_also")
        return tuple(str(n) for n in names) if isinstance(names, list) else ()

    def bound(self, name: str | None, which: Literal["minimum", "maximum"]) -> float | None:
        """The request schema's published ``minimum`` / ``maximum`` of the top-level field ``name``
        (None: it publishes none)."""
        uri = self.schemas.get("request")
        schema = self._store.schemas.get(uri) if uri else None
        props = schema.get("properties") if isinstance(schema, Mapping) else None
        entry = props.get(name) if isinstance(props, Mapping) and name else None
        value = entry.get(which) if isinstance(entry, Mapping) else None
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def max_tokens_minimum(self) -> int:
        """The smallest output cap the request schema allows (1 where it says nothing; OpenAI's
        Responses API documents 16): checks that want the cap hit send at least this."""
        minimum = self.bound(self.max_tokens_field, "minimum")
        return max(1, int(minimum)) if minimum is not None else 1

    def canonical_finish(self, native: str | None) -> str | None:
        """The canonical finish reason (stop, length, tool_calls, content_filter) of a native one."""
        if native is None:
            return None
        return self.finish_map.get(native, native)

    def has(self, name: str) -> bool:
        return self.feature(name) != "absent"

    def lowered(self, rule: str) -> str | None:
        """Why a broken ``rule`` earns only a warning in this dialect (specs/SEVERITY.md: the
        profile's ``severity`` entry, where its document leaves the behaviour unspecified);
        None when it stays an error."""
        entry = _by_rule(self.raw.get("severity"), rule)
        if isinstance(entry, Mapping) and entry.get("level") == "warning":
            return str(entry.get("why", ""))
        return None

    def section(self, rule: str) -> str:
        """Where this dialect's document specifies what ``rule`` checks (the profile's
        ``sections``, most specific rule or layer first); empty when the profile says nothing."""
        found = _by_rule(self.raw.get("sections"), rule)
        return found if isinstance(found, str) else ""

    @property
    def unknown_model_status(self) -> int | None:
        """The status the dialect's document gives for an unknown model (None: it gives none)."""
        errors = self.raw.get("errors")
        status = errors.get("unknown_model") if isinstance(errors, Mapping) else None
        return status if isinstance(status, int) else None

    def query_param_errors(self, name: str, value: str) -> list[str]:
        """Why ``value`` is not a valid value of the query parameter ``name`` (empty: valid,
        or the profile gives the parameter no schema)."""
        ref = (self.query_params.get(name) or {}).get("schema")
        if not isinstance(ref, str):
            return []
        return _query_param_errors(self._store, ref, value)

    def schema_uri(self, kind: str) -> str:
        if kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
        uri = self.schemas.get(kind)
        if uri is None:
            raise UsageError(f"dialect {self.dialect} has no {kind} (it always streams)")
        return uri

    def validator(self, kind: str) -> SchemaValidator:
        return self._store.validator(self.schema_uri(kind))

    def render_path(self, params: Mapping[str, str] | None = None) -> str:
        values = {name: str(spec["default"]) for name, spec in self.path_params.items()}
        values.update(params or {})
        try:
            return self.path.format(**values)
        except KeyError as exc:
            raise UsageError(f"profile {self.dialect}: path {self.path} needs parameter {exc}") from exc


def _query_param_errors(store: _SchemaStore, ref: str, value: str) -> list[str]:
    uri = ref if ref.startswith(("http://", "https://")) else SCHEMA_BASE + ref
    checker = jsonschema.Draft202012Validator({"$ref": uri}, registry=store.py_registry)
    try:
        return [_short(err.message) for err in checker.iter_errors(value)]
    except referencing.exceptions.Unresolvable as exc:
        raise SpecError(f"query parameter schema {ref} cannot be resolved: {exc}") from exc


def _by_rule(table: Any, rule: str) -> Any:
    """``table[rule]``, else ``table[<layer>]`` (``stream`` for ``stream.id_changed``), else None."""
    if not isinstance(table, Mapping):
        return None
    if rule in table:
        return table[rule]
    return table.get(rule.split(".", 1)[0])


def _profiles_dir() -> Path:
    return specs_dir() / "profiles"


def bundled_dialects(*, preview: bool = False) -> list[str]:
    """The bundled dialects' names; ``preview`` True includes those marked ``status: preview``
    (loadable by name, left out of every listing and parametrisation until complete)."""
    names = sorted(p.stem for p in _profiles_dir().glob("*.yaml"))
    return [n for n in names if preview or not _load_bundled(n).preview]


def _read_yaml(path: Path) -> dict[str, Any]:
    # chatprobe.inputs: a regular file of at most 1 MiB, no alias bomb, no duplicate key
    try:
        data = inputs.load_yaml(path, "profile").data
    except inputs.YamlInputError as exc:
        where = f" (line {exc.line}, column {exc.column})" if exc.column else f" (line {exc.line})" if exc.line else ""
        detail = exc.detail
        if detail.startswith("not valid YAML: "):
            raise SpecError(f"profile {path}: not valid YAML{where}: {detail.removeprefix('not valid YAML: ')}") from None
        raise SpecError(f"profile {path}: {detail}{where}") from None
    if not isinstance(data, dict):
        raise SpecError(f"profile {path}: must be a YAML mapping, got {type(data).__name__}")
    return data


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_MAX_EXTENDS = 16


def _resolve_raw(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise SpecError(f"profile {path}: `extends` loops back to itself")
    if len(seen) >= _MAX_EXTENDS:
        raise SpecError(f"profile {path}: `extends` chains more than {_MAX_EXTENDS} profiles")
    data = _read_yaml(path)
    base_ref = data.pop("extends", None)
    if base_ref is None:
        return data
    if not isinstance(base_ref, str):
        raise SpecError(f"profile {path}: `extends` must be a dialect name or a file path")
    base_path = _profile_path(base_ref, relative_to=path.parent)
    return _merge(_resolve_raw(base_path, (*seen, path)), data)


def _profile_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    text = str(name_or_path)
    bundled = _profiles_dir() / f"{text}.yaml"
    if isinstance(name_or_path, str) and "/" not in text and not text.endswith((".yaml", ".yml")):
        if bundled.is_file():
            return bundled
        raise UsageError(f"unknown dialect {text!r} (bundled: {', '.join(bundled_dialects())}; or pass a profile file)")
    path = Path(text)
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    return path


@functools.cache
def _profile_schema_validator() -> jsonschema.Draft202012Validator:
    schema = _read_json(specs_dir() / _PROFILE_SCHEMA)
    _check_schema(_PROFILE_SCHEMA, schema)
    return jsonschema.Draft202012Validator(schema)


def _check_profile(path: Path, data: Mapping[str, Any]) -> None:
    errors = sorted(_profile_schema_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        problems = "; ".join(
            f"{_pointer(err.absolute_path) or '/'}: {_short(err.message)}"
            for raw in errors[:3]
            for err in _most_specific(raw)[:1]
        )
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise SpecError(f"profile {path}: {problems}{more}")


def _schema_uri(ref: str, profile_path: Path, store: _SchemaStore) -> tuple[str, _SchemaStore]:
    """A profile names a schema relative to specs/ (bundled) or, starting with
    ./ or ../ or /, a file of the user's (relative to the profile file)."""
    if ref.startswith(("./", "../", "/")):
        path = (profile_path.parent / ref).resolve()
        if not path.is_file():
            raise SpecError(f"profile {profile_path}: schema file {ref} not found")
        schema = _read_json(path)
        _check_schema(path, schema)
        declared = schema.get("$id") if isinstance(schema, dict) else None
        uri = declared if isinstance(declared, str) else path.as_uri()
        return uri, store.with_schema(uri, schema)
    uri = SCHEMA_BASE + ref
    if uri not in store.schemas:
        raise SpecError(f"profile {profile_path}: schema {ref} is not in specs/ (known: {', '.join(sorted(u.removeprefix(SCHEMA_BASE) for u in store.schemas))})")
    return uri, store


def _build_profile(path: Path, data: dict[str, Any]) -> Profile:
    _check_profile(path, data)
    store = _bundled_store()
    schemas: dict[str, str | None] = {}
    for kind in KINDS:
        ref = data["schemas"].get(kind)
        if ref is None:
            schemas[kind] = None
        else:
            schemas[kind], store = _schema_uri(ref, path, store)
    request = data["request"]
    if request["model_in"] == "path" and request.get("model_path_param") not in request.get("path_params", {}):
        raise SpecError(f"profile {path}: /request/model_path_param must name one of /request/path_params")
    placeholders = {name for name in request.get("path_params", {})}
    for name in placeholders:
        if "{" + name + "}" not in request["path"]:
            raise SpecError(f"profile {path}: path parameter {name!r} does not appear in /request/path {request['path']!r}")
    for name, spec in request.get("query_params", {}).items():
        for example in spec.get("examples", []):
            ref = spec.get("schema")
            problems = _query_param_errors(store, ref, example) if isinstance(ref, str) else []
            if problems:
                raise SpecError(f"profile {path}: query parameter {name} example {example!r} breaks its schema: {problems[0]}")
    framing = data["framing"]
    if framing.get("kind") == "typed" and not framing.get("machine"):
        raise SpecError(f"profile {path}: /framing/kind typed needs /framing/machine (the stream's state machine)")
    auth = data["auth"]
    return Profile(
        dialect=data["dialect"],
        description=data["description"],
        source=data.get("source", ""),
        origin=path,
        method=request["method"],
        path=request["path"],
        path_params=request.get("path_params", {}),
        query_params=request.get("query_params", {}),
        body=request["body"],
        model_in=request["model_in"],
        model_field=request.get("model_field", "model"),
        model_required=bool(request.get("model_required", request["model_in"] == "body")),
        model_path_param=request.get("model_path_param"),
        content_parts=bool(request.get("content_parts", False)),
        stop_forms=tuple(request.get("stop_forms", ["array"])),
        tools_shape=request.get("tools_shape", "function"),
        auth=Auth(auth["header"], auth["scheme"], auth["required"], auth.get("status")),
        streaming_mode=data["streaming"]["mode"],
        stream_flag=data["streaming"].get("flag"),
        framing=Framing(
            framing["data_event"],
            framing["error_event"],
            framing["wrapper"],
            framing["terminator"],
            framing["terminator_required"],
            framing["keepalive_comments"],
            framing["usage_in_stream"],
            framing.get("kind", "chunks"),
            framing.get("machine"),
        ),
        schemas=schemas,
        max_tokens_field=data["max_tokens_field"],
        finish_reasons=tuple(data["finish_reasons"]),
        features=dict(data["features"]),
        raw=data,
        _store=store,
        stop_field=request.get("stop_field", "stop"),
        finish_map=dict(data.get("finish_map", {})),
        stop_finish=data.get("stop_finish"),
        usage_names=(
            data.get("usage_names", {}).get("prompt", "prompt_tokens"),
            data.get("usage_names", {}).get("completion", "completion_tokens"),
            data.get("usage_names", {}).get("total", "total_tokens") if "usage_names" in data else "total_tokens",
        ),
        preview=data.get("status") == "preview",
    )


@functools.cache
def _load_bundled(name: str) -> Profile:
    path = _profile_path(name)
    return _build_profile(path, _resolve_raw(path))


def load_profile(name_or_path: str | Path | Profile) -> Profile:
    """A bundled dialect by name (``openai``; cached), or a profile YAML file."""
    if isinstance(name_or_path, Profile):  # lenient: callers may pass one through
        return name_or_path
    if isinstance(name_or_path, str) and (_profiles_dir() / f"{name_or_path}.yaml").is_file():
        return _load_bundled(name_or_path)
    path = _profile_path(name_or_path)
    return _build_profile(path, _resolve_raw(path))


def validator(dialect_or_profile: str | Path | Profile, kind: str) -> SchemaValidator:
    """The compiled validator of one dialect's kind (compiled once, then cached)."""
    return load_profile(dialect_or_profile).validator(kind)


def validate(dialect_or_profile: str | Path | Profile, kind: str, instance: Any) -> list[SchemaError]:
    """Every rule ``instance`` breaks (empty list: valid)."""
    return validator(dialect_or_profile, kind).errors(instance)


def iter_bundled_schemas() -> Iterator[tuple[str, Any]]:
    """(``$id``, schema) of every bundled schema."""
    yield from _bundled_store().schemas.items()
