"""tako.toml is read exactly as Tako reads it: its key allow-list at every level, its types and
rules, in its order, with its texts (tako/src/config/tako_toml/{parse,validation}.rs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.primitives.names import app_name_problem
from tako_backups.project.tako_toml import load_project, resolve_config_path

S3 = '[storages.r2]\nbucket = "b"\nendpoint = "https://s3.example.com"\nregion = "auto"\n'
ENV = '[envs.production]\nroute = "a.example.com"\n'
ENV_FIELDS = ("`route`, `routes`, `servers`, `storages`, `backup`, `source_ip`, `ssl`, `idle_timeout`, "
              "`release`")
STORAGE_FIELDS = "`provider`, `bucket`, `endpoint`, `region`, `force_path_style`, `public_base_url`"
SETTINGS = ("Tako refuses keys it does not know; tako-backups' own settings live in tako-backups.toml next "
            "to tako.toml, which Tako never reads.")


def write(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tako.toml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str, *, extensions: bool = True) -> str:
    with pytest.raises(ConfigError) as caught:
        load_project(write(tmp_path / "app", text), extensions=extensions)
    return str(caught.value)


def test_loads_envs_storages_and_backup(tmp_path: Path) -> None:
    project = load_project(write(
        tmp_path / "app",
        'name = "demo"\nruntime = "bun"\nstart = ["bun", "run", "{main}"]\n[build]\nrun = "x"\n' + S3
        + '[envs.production]\nroute = "a.example.com"\nservers = ["la-1", "la-2"]\n'
        'storages = { uploads = "r2", cache = "local" }\nbackup = { storage = "r2" }\nidle_timeout = 60\n'
        'source_ip = "cloudflare-proxy"\nssl = "cloudflare"\n[envs.development]\n[vars]\nA = 1\n'
        '[vars.production]\nB = true\n[workflows]\nworkers = 1\n[workflows.mail]\nrun = ["bun", "mail.ts"]\n'
        '[servers.la-1.workflows]\nconcurrency = 4\n[images]\nsizes = [640]\n'))
    env = project.env("production")
    assert (project.name, project.start) == ("demo", ("bun", "run", "{main}"))
    assert env.servers == ("la-1", "la-2")
    assert env.storages == {"uploads": "r2", "cache": "local"}
    assert env.backup_storage == "r2" and env.backup_enabled and env.idle_timeout == 60
    r2 = project.storages["r2"]
    assert (r2.provider, r2.bucket, r2.endpoint, r2.region, r2.force_path_style) == (
        "s3", "b", "https://s3.example.com", "auto", False)
    assert project.secrets_path == tmp_path / "app" / ".tako" / "secrets.json"


def test_a_missing_name_is_refused_where_the_app_name_is_needed(tmp_path: Path) -> None:
    """Tako's backups and deploy take the name from tako.toml only: no folder-name fallback."""
    project = load_project(write(tmp_path / "my-app", ENV))
    assert project.declared_name is None
    with pytest.raises(ConfigError) as caught:
        project.name  # noqa: B018
    assert str(caught.value) == (
        "Could not determine app name: tako.toml must have a `name` field. Run `tako init` to set it.")


def test_the_app_name_is_sanitized_as_tako_does(tmp_path: Path) -> None:
    assert load_project(write(tmp_path / "app", 'name = "my--app"\n')).name == "my-app"


def test_an_empty_file_loads(tmp_path: Path) -> None:
    project = load_project(write(tmp_path / "app", ""))
    assert (project.declared_name, project.envs, project.storages) == (None, {}, {})


@pytest.mark.parametrize("name", ["", "1app", "app-", "my.app", "a" * 64])
def test_app_name_rules_are_takos_raw_name_checks(tmp_path: Path, name: str) -> None:
    problem = app_name_problem(name)
    assert problem is not None
    assert load_error(tmp_path, f'name = "{name}"\n') == f"Validation error: {problem}"


def test_missing_file_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path / "tako.toml")
    assert str(caught.value) == (
        f"Config file not found: {tmp_path / 'tako.toml'}\nRun this in your app folder or pass -c PATH.")


def test_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    assert load_error(tmp_path, 'name = "demo"\n[envs.production\n') == (
        f"{tmp_path / 'app' / 'tako.toml'} is not valid TOML: Unexpected character: '\\n' at line 2, column "
        f"17.")


@pytest.mark.parametrize(("text", "message"), [
    # the top-level allow-list and types (parse.rs)
    ('name = "a"\nbackups = { every = "1h" }\n',
     "Validation error: Unknown key 'backups'\n`backups` is a tako-backups setting: put it under "
     "[envs.<env>] in tako-backups.toml."),
    ('name = "a"\nreplicas = 2\n', f"Validation error: Unknown key 'replicas'\n{SETTINGS}"),
    ("name = 5\n", "Validation error: 'name' must be a string"),
    ('dev = "vite"\n', "Validation error: 'dev' must be an array of strings"),
    ('runtime = "bun@"\n', "Validation error: runtime version cannot be empty"),
    ('start = "python app.py"\n', "Validation error: 'start' must be a non-empty array of strings\n"
                                  'Write the command as an array, e.g. start = ["python", "app.py"].'),
    ("start = []\n", "Validation error: 'start' must be a non-empty array of strings"),
    ('start = ["python", " "]\n', "Validation error: 'start' entries cannot be empty"),
    ('build = "x"\n', "Validation error: 'build' must be a table ([build])"),
    ('[build]\nscript = "x"\n', "Validation error: Unknown key 'build.script'"),
    ("[build]\nrun = 1\n", "Validation error: 'run' must be a string"),
    ('[[build_stages]]\nname = "a"\n', "Validation error: 'build_stages[0].run' is required"),
    ('[[build_stages]]\nrun = "x"\nimage = "y"\n', "Validation error: Unknown key 'build_stages[0].image'"),
    ('[workflows.mail]\nrun = []\n',
     "Validation error: 'workflows.mail.run' must be a non-empty array of strings"),
    ("[workflows]\nworkers = -1\n", "Validation error: 'workflows.workers' must be between 0 and 4294967295"),
    ("[workflows.mail]\nretries = 1\n", "Validation error: Unknown key 'workflows.mail.retries'"),
    ('[servers.la]\nhost = "h"\n', "Validation error: Unknown key 'servers.<name>.host'"),
    ("[images]\nwidths = [1]\n", "Failed to parse TOML: unknown field `widths`, expected one of "
                                 "`local_patterns`, `remote_patterns`, `sizes`, `qualities`, `formats`"),
    ('[vars]\nA = [1]\n', "Validation error: [vars].A must be a string, number, boolean, or datetime"),
    ("storages = 1\n", "Validation error: 'storages' must be a table"),
    # [storages.*] and [envs.*] are read with serde (deny_unknown_fields)
    (S3 + 'acl = "x"\n', f"Failed to parse TOML: unknown field `acl`, expected one of {STORAGE_FIELDS}"),
    (S3 + 'force_path_style = "yes"\n',
     'Failed to parse TOML: invalid type: string "yes", expected a boolean'),
    (S3 + 'provider = "gcs"\n', "Failed to parse TOML: unknown variant `gcs`, expected `local` or `s3`"),
    (ENV + "replicas = 2\n", f"Failed to parse TOML: unknown field `replicas`, expected one of {ENV_FIELDS}"),
    (ENV + 'every = "1h"\n', f"Failed to parse TOML: unknown field `every`, expected one of {ENV_FIELDS}\n"
                             "`every` is a tako-backups setting: put it under [envs.production] in "
                             "tako-backups.toml."),
    (ENV + 'servers = "la-1"\n', 'Failed to parse TOML: invalid type: string "la-1", expected a sequence'),
    (ENV + "idle_timeout = -1\n", "Failed to parse TOML: invalid value: integer `-1`, expected u32"),
    (ENV + 'ssl = "acme"\n', "Failed to parse TOML: unknown variant `acme`, expected `letsencrypt` or "
                             "`cloudflare`"),
    (S3 + ENV + 'backup = { storage = "r2", retention_days = 7 }\n',
     "Failed to parse TOML: unknown field `retention_days`, expected `storage`\n`retention_days` is a "
     "tako-backups setting: put it under [envs.production] in tako-backups.toml."),
    (ENV + "backup = {}\n", "Failed to parse TOML: missing field `storage`"),
    # then the rules (validation.rs)
    ('main = " "\n', "Validation error: main cannot be empty"),
    ('runtime = "python"\n', "Validation error: runtime must be one of: bun, node, go"),
    ('preset = "github:x/y"\n', "Validation error: github preset references are not supported; use "
                                "official aliases only."),
    ('container = "Dockerfile"\nstart = ["x"]\n', "Validation error: container releases cannot set start; "
                                                  "the image command starts the app"),
    ('assets = ["../x"]\n', "Validation error: assets entry '../x' must not contain '..'"),
    ('app_root = "/src"\n', "Validation error: 'app_root' must be a relative path"),
    ('[build]\nrun = "x"\n[[build_stages]]\nrun = "y"\n',
     "Validation error: Cannot use both [build] with 'run' and [[build_stages]]; they are mutually "
     "exclusive."),
    ('[envs.production]\nroute = "a"\nroutes = ["b"]\n',
     "Validation error: Environment 'production' cannot have both 'route' and 'routes'"),
    ("[envs.production]\nservers = []\n",
     "Validation error: Environment 'production' must define either 'route' or 'routes'"),
    ("[envs.production]\nroutes = []\n",
     "Validation error: Environment 'production' has empty 'routes'; define at least one route"),
    ('[envs.production]\nroute = "a b"\n', "Invalid route pattern: Invalid character in route pattern: ' '"),
    ('[envs.production]\nroute = "a*.b"\n',
     "Invalid route pattern: Wildcard in hostname must be at the start (e.g., *.example.com)"),
    (ENV + "idle_timeout = 0\n", "Validation error: Environment 'production' has invalid idle_timeout 0"),
    (ENV + 'servers = ["LA"]\n', "Validation error: Server name must start with a lowercase letter"),
    (ENV + 'storages = { Up = "r2" }\n', "Validation error: Storage name can only contain lowercase "
                                         "letters, numbers, hyphens, and underscores. Found: 'U'"),
    (ENV + 'storages = { uploads = "r9" }\n',
     "Validation error: Environment 'production' storage 'uploads' references missing storage resource 'r9'"),
    (ENV + 'backup = { storage = "" }\n', "Validation error: Environment 'production' backup.storage cannot "
                                          "be empty"),
    (ENV + 'backup = { storage = "local" }\n', "Validation error: Environment 'production' backup uses "
                                               "local storage, but backups require S3-compatible storage"),
    (ENV + 'backup = { storage = "r9" }\n',
     "Validation error: Environment 'production' backup references missing storage resource 'r9'"),
    (S3 + 'public_base_url = "https://cdn.example.com"\n' + ENV + 'backup = { storage = "r2" }\n',
     "Validation error: Environment 'production' backup storage resource 'r2' must be private; remove "
     "public_base_url or use a separate private storage resource"),
    ('[storages.local]\nbucket = "b"\n',
     "Validation error: Storage resource 'local' is built in and cannot be declared; use storages = "
     '{ <binding> = "local" } to select local storage'),
    ('[storages.files]\nprovider = "local"\n',
     "Validation error: Storage resource 'files' cannot set provider 'local'; use storages = "
     '{ <binding> = "local" } to select built-in local storage'),
    ('[storages.r2]\nbucket = "b"\nregion = "auto"\n',
     "Validation error: Storage resource 'r2' with provider 's3' must set 'endpoint'"),
    ('[storages.R2]\nbucket = "b"\n', "Validation error: Storage name can only contain lowercase letters, "
                                      "numbers, hyphens, and underscores. Found: 'R'"),
    ('[storages.r2]\nbucket = "b"\nendpoint = "s3.example.com"\nregion = "auto"\n',
     "Validation error: 'storages.r2.endpoint' must be a valid URL: relative URL without a base"),
    ('[storages.r2]\nbucket = "b"\nendpoint = "http://s3.example.com"\nregion = "auto"\n',
     "Validation error: 'storages.r2.endpoint' must use https\ntako-backups also accepts http:// for "
     "loopback hosts such as 127.0.0.1 (Tako does not)."),
])
def test_takos_rules_and_texts(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, text) == message


def test_tako_does_not_check_env_names_in_tako_toml(tmp_path: Path) -> None:
    project = load_project(write(tmp_path / "app", '[envs.Prod]\nroute = "a"\n'))
    assert list(project.envs) == ["Prod"]


def test_http_endpoint_is_our_extension_for_loopback_hosts(tmp_path: Path) -> None:
    text = ('[storages.r2]\nbucket = "b"\nendpoint = "http://127.0.0.1:8333/"\nregion = "us-east-1"\n'
            "force_path_style = true\n")
    project = load_project(write(tmp_path / "app", text))
    assert project.storages["r2"].endpoint == "http://127.0.0.1:8333"
    assert project.storages["r2"].force_path_style is True
    assert load_error(tmp_path, text, extensions=False) == (
        "Validation error: 'storages.r2.endpoint' must use https")


def test_development_may_bind_undeclared_resources_and_needs_no_route(tmp_path: Path) -> None:
    text = '[envs.development]\nstorages = { uploads = "uploads" }\n'
    project = load_project(write(tmp_path / "app", text))
    assert project.envs["development"].storages == {"uploads": "uploads"}


def test_undeclared_env_is_reported_with_the_declared_ones(tmp_path: Path) -> None:
    text = '[envs.production]\nroute = "a"\n[envs.staging]\nroute = "b"\n'
    project = load_project(write(tmp_path / "app", text))
    with pytest.raises(ConfigError) as caught:
        project.env("qa")
    assert str(caught.value) == (
        "Environment 'qa' not found in tako.toml.\nDeclared: production, staging; add an [envs.qa] table for "
        "another.")


@pytest.mark.parametrize(("option", "expected"), [
    (None, "tako.toml"),
    ("staging", "staging.toml"),
    ("apps/web.toml", "apps/web.toml"),
    ("apps/web", "apps/web.toml"),
    ("folder", "folder/tako.toml"),
])
def test_config_option_resolution(tmp_path: Path, option: str | None, expected: str) -> None:
    (tmp_path / "folder").mkdir()
    assert resolve_config_path(option, cwd=tmp_path) == tmp_path / expected
