from __future__ import annotations

from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.primitives.names import app_name_problem
from tako_backups.project.tako_toml import load_project, resolve_config_path

S3 = '[storages.r2]\nbucket = "b"\nendpoint = "https://s3.example.com"\nregion = "auto"\n'


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tako.toml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_project(write(tmp_path / "app", text))
    return str(caught.value)


def test_loads_envs_storages_and_backup(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path / "app",
            'name = "demo"\nruntime = "bun"\n[build]\nrun = "x"\n'
            + S3
            + '[envs.production]\nroute = "a.example.com"\nservers = ["la-1", "la-2"]\n'
            'storages = { uploads = "r2", cache = "local" }\nbackup = { storage = "r2" }\n'
            "idle_timeout = 60\n",
        )
    )
    env = project.env("production")
    assert project.name == "demo"
    assert env.servers == ("la-1", "la-2")
    assert env.storages == {"uploads": "r2", "cache": "local"}
    assert env.backup_storage == "r2" and env.backup_enabled and env.idle_timeout == 60
    r2 = project.storages["r2"]
    assert (r2.provider, r2.bucket, r2.endpoint, r2.region, r2.force_path_style) == (
        "s3",
        "b",
        "https://s3.example.com",
        "auto",
        False,
    )
    assert project.secrets_path == tmp_path / "app" / ".tako" / "secrets.json"


def test_name_defaults_to_the_folder_name(tmp_path: Path) -> None:
    assert load_project(write(tmp_path / "my-app", "")).name == "my-app"


def test_folder_name_that_is_not_a_dns_label_asks_for_a_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(write(tmp_path / "My_App", ""))
    assert str(caught.value) == (
        "Validation error: App name must start with a lowercase letter (the app name 'My_App' was taken "
        'from the folder name; set name = "<app>" in tako.toml)'
    )


@pytest.mark.parametrize("name", ["", "1app", "app-", "my.app"])
def test_app_name_rules_are_takos_raw_name_checks(tmp_path: Path, name: str) -> None:
    problem = app_name_problem(name)
    assert problem is not None
    assert load_error(tmp_path, f'name = "{name}"\n') == f"Validation error: {problem}"


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path / "tako.toml")
    assert str(caught.value) == (
        f"No tako.toml found at {tmp_path / 'tako.toml'}. Run this in your app folder or pass -c PATH."
    )


def test_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    message = load_error(tmp_path, 'name = "demo"\n[envs.production\n')
    assert message == (
        f"{tmp_path / 'app' / 'tako.toml'} is not valid TOML: Unexpected character: "
        "'\\n' at line 2, column 17."
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[envs.production]\nroute = "a"\nroutes = ["b"]\n',
            "Environment 'production' cannot have both 'route' and 'routes' in tako.toml; keep one of them.",
        ),
        (
            "[envs.production]\nidle_timeout = 0\n",
            "Environment 'production' has invalid idle_timeout 0 in tako.toml; use a number of "
            "seconds above 0 "
            "(default 300).",
        ),
        (
            "[envs.production]\nreplicas = 2\n",
            "Unknown key 'replicas' in [envs.production] of tako.toml. Allowed keys: route, routes, servers, "
            "storages, backup, idle_timeout, ssl, source_ip, release.",
        ),
        (
            '[envs.Prod]\nroute = "a"\n',
            "Validation error: Environment name can only contain lowercase letters, numbers, and hyphens. "
            "Found: 'P' ([envs.Prod] in tako.toml)",
        ),
        (
            '[envs.production]\nservers = "la-1"\n',
            "tako.toml key 'servers' in [envs.production] must be a list of server names, e.g. "
            "servers = [\"web-1\"].",
        ),
        (
            '[storages.local]\nbucket = "b"\n',
            "Storage resource 'local' is built in and cannot be declared; remove [storages.local] and use "
            'storages = { <binding> = "local" } to select built-in local storage.',
        ),
        (
            '[storages.files]\nprovider = "local"\n',
            "Storage resource 'files' cannot set provider 'local'; use storages = "
            "{ <binding> = \"local\" } to select "
            "built-in local storage.",
        ),
        (
            '[storages.r2]\nbucket = "b"\nregion = "auto"\n',
            "Storage resource 'r2' with provider 's3' must set 'endpoint' in [storages.r2] of tako.toml.",
        ),
        (
            '[storages.r2]\nbucket = "b"\nendpoint = "https://s3.example.com"\nregion = "auto"\nacl = "x"\n',
            "Unknown key 'acl' in [storages.r2] of tako.toml. Allowed keys: provider, bucket, "
            "endpoint, region, "
            "force_path_style, public_base_url.",
        ),
        (
            '[storages.R2]\nbucket = "b"\n',
            "Validation error: Storage name can only contain lowercase letters, numbers, hyphens, and "
            "underscores. Found: 'R' ([storages.R2] in tako.toml)",
        ),
        (
            '[storages.r2]\nbucket = "b"\nendpoint = "http://s3.example.com"\nregion = "auto"\n',
            "Storage resource 'r2' endpoint 'http://s3.example.com' must use https:// (http:// is "
            "allowed only for "
            "loopback hosts such as 127.0.0.1).",
        ),
        (
            S3 + '[envs.production]\nstorages = { uploads = "r9" }\n',
            "Environment 'production' storage 'uploads' references missing storage resource 'r9'; declare "
            "[storages.r9] in tako.toml.",
        ),
        (
            S3 + '[envs.production]\nbackup = { storage = "r2", retention = 7 }\n',
            "Unknown key 'retention' in [envs.production].backup of tako.toml; only 'storage' is allowed.",
        ),
        (
            S3 + '[envs.production]\nbackup = { storage = "" }\n',
            "Environment 'production' backup.storage must name an S3 storage resource declared "
            "under [storages], "
            'e.g. backup = { storage = "backups" }.',
        ),
        (
            S3 + '[envs.production]\nbackup = { storage = "local" }\n',
            "Environment 'production' cannot back up to the built-in 'local' storage; set "
            "backup.storage to an S3 "
            "resource declared under [storages].",
        ),
        (
            S3 + '[envs.production]\nbackup = { storage = "r9" }\n',
            "Environment 'production' backup.storage references missing storage resource 'r9'; declare "
            "[storages.r9] in tako.toml.",
        ),
        (
            S3
            + 'public_base_url = "https://cdn.example.com"\n[envs.production]\nbackup = { storage = "r2" }\n',
            "Environment 'production' backs up to storage resource 'r2', which has a public_base_url; backup "
            "storage must be private. Remove public_base_url or use another resource.",
        ),
    ],
)
def test_rules_name_the_key_and_the_fix(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, text) == message


def test_http_endpoint_is_allowed_for_loopback_hosts(tmp_path: Path) -> None:
    project = load_project(
        write(
            tmp_path / "app",
            '[storages.r2]\nbucket = "b"\nendpoint = "http://127.0.0.1:8333/"\n'
            'region = "us-east-1"\nforce_path_style = true\n',
        )
    )
    assert project.storages["r2"].endpoint == "http://127.0.0.1:8333"
    assert project.storages["r2"].force_path_style is True


def test_development_may_bind_undeclared_resources(tmp_path: Path) -> None:
    project = load_project(
        write(tmp_path / "app", '[envs.development]\nstorages = { uploads = "uploads" }\n')
    )
    assert project.envs["development"].storages == {"uploads": "uploads"}


def test_undeclared_env_is_reported_with_the_declared_ones(tmp_path: Path) -> None:
    project = load_project(write(tmp_path / "app", "[envs.production]\n[envs.staging]\n"))
    with pytest.raises(ConfigError) as caught:
        project.env("qa")
    assert str(caught.value) == (
        "Environment 'qa' not found in tako.toml (declared: production, staging). Add an [envs.qa] table."
    )


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (None, "tako.toml"),
        ("staging", "staging.toml"),
        ("apps/web.toml", "apps/web.toml"),
        ("apps/web", "apps/web.toml"),
        ("folder", "folder/tako.toml"),
    ],
)
def test_config_option_resolution(tmp_path: Path, option: str | None, expected: str) -> None:
    (tmp_path / "folder").mkdir()
    assert resolve_config_path(option, cwd=tmp_path) == tmp_path / expected
