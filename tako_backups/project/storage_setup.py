"""What ``tako storages add`` changes in tako.toml, worked out before anything is written."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..primitives.names import LOCAL_STORAGE, env_name_problem, storage_name_problem, validation_error
from .model import Project, StorageResource
from .toml_edit import with_storage_binding
from .toml_rules import LOOPBACK_HINT, url_parse_problem


@dataclass(frozen=True)
class S3Options:
    """The S3 flags of ``tako storages add`` (None / False when not given)."""

    bucket: str | None = None
    endpoint: str | None = None
    region: str | None = None
    force_path_style: bool = False
    public_base_url: str | None = None

    def any_set(self) -> bool:
        return any(v is not None for v in (self.bucket, self.endpoint, self.region, self.public_base_url)) \
            or self.force_path_style


@dataclass(frozen=True)
class BindingEdit:
    """A checked tako.toml edit: the new text and the project it describes."""

    binding: str
    resource_name: str
    provider: str
    resource: StorageResource | None
    new_text: str
    project: Project


def check_names(env: str, binding: str) -> None:
    """Raises ConfigError for an invalid env or binding name."""
    problem = env_name_problem(env)
    if problem:
        raise validation_error(problem)
    problem = storage_name_problem(binding)
    if problem:
        raise validation_error(problem)


def _required(value: str | None, label: str, flag: str) -> str:
    if value is None or not value.strip():
        raise ConfigError(f"{label} is required for S3 storage.\nPass {flag}.")
    return value


def check_url(url: str, what: str) -> str:
    """A URL given to ``tako storages add`` checked as Tako checks it (the URL parser's text,
    ``Storage endpoints must use https.``, ``Storage endpoint must include a host.``; plain http is
    our extension for loopback hosts), then normalized by our endpoint rules (no trailing ``/``).
    Raises ConfigError."""
    from urllib.parse import urlsplit

    from ..storage.endpoints import check_endpoint, is_loopback_host

    problem = url_parse_problem(url)
    if problem is not None:
        raise ConfigError(problem)
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and is_loopback_host(parts.hostname or "")):
        hint = f"\n{LOOPBACK_HINT}" if scheme == "http" else ""
        raise ConfigError(f"Storage endpoints must use https.{hint}")
    if not parts.hostname:
        raise ConfigError("Storage endpoint must include a host.")
    return check_endpoint(url, what)


def s3_resource(project: Project, name: str, options: S3Options) -> StorageResource | None:
    """The resource ``name`` as it should be declared: a new one from the flags (bucket and endpoint
    required, region ``auto`` by default), or the declared one with the given flags applied (our
    extension: Tako always needs every flag). None when it is declared and no flag changes it.

    Raises ConfigError (Tako's texts) for a missing bucket/endpoint, a bad name or a URL that is
    not https.
    """
    problem = storage_name_problem(name)
    if problem:
        raise validation_error(problem)
    if name == LOCAL_STORAGE:
        raise ConfigError("Storage resource 'local' is built in; use --provider local for local storage.")
    existing = project.storages.get(name)
    if existing is not None and not options.any_set():
        return None
    public = options.public_base_url or (existing.public_base_url if existing else None)
    if public is not None:
        public = check_url(public, f"resource '{name}' public_base_url")
    bucket = _required(options.bucket or (existing.bucket if existing else None), "Bucket", "--bucket")
    endpoint = _required(options.endpoint or (existing.endpoint if existing else None), "Endpoint",
                         "--endpoint")
    return StorageResource(
        name=name, bucket=bucket, endpoint=check_url(endpoint, f"resource '{name}' endpoint"),
        region=options.region or (existing.region if existing else None) or "auto",
        force_path_style=options.force_path_style or (existing.force_path_style if existing else False),
        public_base_url=public,
    )


def plan_binding(project: Project, text: str, env: str, binding: str, provider: str,
                 resource_name: str | None, options: S3Options) -> BindingEdit:
    """Work out the tako.toml edit of ``tako storages add`` (nothing is written).

    ``local`` binds the built-in local storage and takes no S3 flags; ``s3`` binds ``resource_name``
    (default: the binding name), declaring or updating it. Raises ConfigError when a rule is broken.
    """
    check_names(env, binding)
    if provider == LOCAL_STORAGE:
        if resource_name is not None and resource_name != LOCAL_STORAGE:
            raise ConfigError("Local storage uses the built-in resource name 'local'.")
        if options.any_set():
            raise ConfigError("S3 storage options cannot be used with local storage.")
        new_text, new_project = with_storage_binding(text, project.path, env, binding, LOCAL_STORAGE, None)
        return BindingEdit(binding, LOCAL_STORAGE, provider, None, new_text, new_project)
    if provider != "s3":
        raise ConfigError(f"Unknown storage provider '{provider}'; use s3 or local.")
    name = resource_name or binding
    resource = s3_resource(project, name, options)
    new_text, new_project = with_storage_binding(text, project.path, env, binding, name, resource)
    return BindingEdit(binding, name, provider, resource, new_text, new_project)
