from __future__ import annotations

from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.project.servers import ServerEntry, load_servers, servers_for_env
from tako_backups.project.tako_toml import load_project


def write_config(home: Path, text: str) -> Path:
    path = home / "config.toml"
    path.write_text(text)
    return path


def test_missing_config_means_no_servers(tako_home: Path) -> None:
    servers = load_servers()
    assert servers.path == tako_home / "config.toml"
    assert len(servers) == 0


def test_table_form_with_defaults_and_extension(tako_home: Path) -> None:
    write_config(
        tako_home,
        '[servers.la-1]\nhost = "203.0.113.10"\ndescription = "LA"\n'
        'key_path = "keys/id_ed25519"\n\n[servers.local]\nhost = "127.0.0.1"\n'
        "port = 2222\nhttp_port = 8080\nhttps_port = 8443\nmanagement_port = 19844\n",
    )
    servers = load_servers()
    assert servers.get("la-1") == ServerEntry(
        name="la-1", host="203.0.113.10", description="LA", key_path=tako_home / "keys" / "id_ed25519"
    )
    local = servers.get("local")
    assert local is not None
    assert (local.port, local.http_port, local.https_port, local.management_port) == (2222, 8080, 8443, 19844)
    assert local.management_url == "http://127.0.0.1:19844/rpc"


def test_a_tls_fingerprint_pins_the_server_and_switches_to_https(tako_home: Path) -> None:
    digest = "AB:" + "0f" * 30 + "1e"
    write_config(tako_home, f'[servers.la]\nhost = "203.0.113.10"\ntls_fingerprint = "SHA256:{digest}"\n')
    la = load_servers().get("la")
    assert la is not None
    assert la.tls_fingerprint == "sha256:ab" + "0f" * 30 + "1e"
    assert la.management_url == "https://203.0.113.10:9844/rpc"


def test_takos_list_form_is_read_too(tako_home: Path) -> None:
    write_config(
        tako_home, '[[servers]]\nname = "prod"\nhost = "10.0.0.1"\narch = "x86_64"\nlibc = "glibc"\n'
    )
    assert load_servers().get("prod") == ServerEntry(name="prod", host="10.0.0.1")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[servers.a]\nhost = "h"\nusername = "root"\n',
            "Unknown key 'username' in [servers.a] in {path}. Known keys: host, port, http_port, https_port, "
            "description, key_path, management_port, tls_fingerprint.",
        ),
        (
            '[servers.a]\nhost = "h"\ntls_fingerprint = "sha256:abc"\n',
            "'tls_fingerprint' in [servers.a] in {path}: A TLS fingerprint must be sha256: followed by 64 "
            "hex digits, as `tako-server identity` prints it.",
        ),
        ("[servers.a]\nport = 22\n", '[servers.a] in {path} needs a host, e.g. host = "203.0.113.10".'),
        (
            '[servers.a]\nhost = "h"\nmanagement_port = 70000\n',
            "'management_port' in [servers.a] in {path} must be a port number from 1 to 65535.",
        ),
        ("[servers.a\n", "{path} is not valid TOML: Unexpected character: '\\n' at line 1, column 11."),
    ],
)
def test_bad_config_is_reported_with_its_path(tako_home: Path, text: str, message: str) -> None:
    path = write_config(tako_home, text)
    with pytest.raises(ConfigError) as caught:
        load_servers()
    assert str(caught.value) == message.format(path=path)


def project_with(tmp_path: Path, servers: str) -> object:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "tako.toml").write_text(f"[envs.production]\nservers = {servers}\n[envs.staging]\n")
    return load_project(folder / "tako.toml")


def test_servers_for_env_resolves_entries_and_only(tmp_path: Path, tako_home: Path) -> None:
    write_config(tako_home, '[servers.a]\nhost = "10.0.0.1"\n[servers.b]\nhost = "10.0.0.2"\n')
    project = project_with(tmp_path, '["a", "b"]')
    servers = load_servers()
    assert [s.name for s in servers_for_env(project, servers, "production")] == ["a", "b"]  # type: ignore[arg-type]
    assert [s.name for s in servers_for_env(project, servers, "production", only="b")] == ["b"]  # type: ignore[arg-type]


def test_servers_for_env_errors_say_how_to_fix(tmp_path: Path, tako_home: Path) -> None:
    project = project_with(tmp_path, '["a", "ghost"]')
    empty = load_servers()
    with pytest.raises(ConfigError) as caught:
        servers_for_env(project, empty, "staging")  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"No servers have been added. Add a [servers.<name>] table with a host to "
        f"{tako_home / 'config.toml'}, then list it under [envs.staging].servers in "
        "tako.toml."
    )
    write_config(tako_home, '[servers.a]\nhost = "10.0.0.1"\n')
    servers = load_servers()
    with pytest.raises(ConfigError) as caught:
        servers_for_env(project, servers, "staging")  # type: ignore[arg-type]
    assert str(caught.value) == (
        "No servers configured for environment 'staging'. Add "
        '`servers = ["<name>"]` under [envs.staging] in tako.toml.'
    )
    with pytest.raises(ConfigError) as caught:
        servers_for_env(project, servers, "production")  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"Server 'ghost' not found in config.toml ({tako_home / 'config.toml'}). "
        "Add a [servers.ghost] table with its host there."
    )


def test_unreadable_config_is_reported(tako_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tako_home, '[servers.a]\nhost = "h"\n')

    def denied(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError) as caught:
        load_servers()
    assert str(caught.value) == f"Cannot read {path}: Permission denied."
