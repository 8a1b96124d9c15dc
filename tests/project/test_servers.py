from __future__ import annotations

from pathlib import Path

import pytest

from tako_backups.errors import ConfigError
from tako_backups.project.model import Project
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
        'unknown = "ignored, as Tako ignores it"\n[[servers]]\nname = "b"\nhost = "10.0.0.2"\n'
        "management_port = 19844\n"
    )
    servers = load_servers(extensions=False)
    assert servers.get("prod") == ServerEntry(name="prod", host="10.0.0.1")
    assert servers.get("b") == ServerEntry(name="b", host="10.0.0.2", management_port=19844)


def test_the_table_form_is_our_extension(tako_home: Path) -> None:
    path = write_config(tako_home, '[servers.a]\nhost = "h"\nusername = "ignored"\n')
    assert load_servers().get("a") == ServerEntry(name="a", host="h")
    with pytest.raises(ConfigError) as caught:
        load_servers(extensions=False)
    assert str(caught.value) == (
        f"{path} lists servers as [servers.<name>] tables, which Tako ignores; write each as a [[servers]] "
        'entry with name = "<name>" and its host.')


def test_one_host_twice_needs_distinct_management_ports(tako_home: Path) -> None:
    text = ('[[servers]]\nname = "a"\nhost = "127.0.0.1"\nmanagement_port = 1001\n'
            '[[servers]]\nname = "b"\nhost = "127.0.0.1"\nmanagement_port = 1002\n')
    write_config(tako_home, text)
    assert len(load_servers()) == 2
    with pytest.raises(ConfigError) as caught:
        load_servers(extensions=False)
    assert str(caught.value) == "Duplicate server host: 127.0.0.1"
    write_config(tako_home, text.replace("1002", "1001"))
    with pytest.raises(ConfigError) as caught:
        load_servers()
    assert str(caught.value) == "Duplicate server host: 127.0.0.1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[servers]]\nhost = "h"\n', "Validation error: Server entry must have a 'name' field"),
        ('[[servers]]\nname = "a"\n', "Validation error: Server 'a' must have a 'host' field"),
        ('[[servers]]\nname = "a"\nhost = "h"\nport = "22"\n',
         "Validation error: Server 'a' field 'port' must be an integer"),
        ('[[servers]]\nname = "a"\nhost = "h"\nhttp_port = 70000\n',
         "Validation error: Server 'a' field 'http_port' must be between 0 and 65535"),
        ('[[servers]]\nname = "a"\nhost = "h"\nkey_path = 1\n',
         "Validation error: Server 'a' field 'key_path' must be a string"),
        ('[[servers]]\nname = "a"\nhost = "h"\narch = "x86_64"\n',
         "Validation error: Server 'a' must set both `arch` and `libc` together inside [[servers]]"),
        ('[[servers]]\nname = "a"\nhost = "h"\narch = "riscv"\nlibc = "musl"\n',
         "Validation error: Invalid target metadata for server 'a': Unsupported server target architecture "
         "'riscv'"),
        ('[[servers]]\nname = "a"\nhost = "h"\n[[servers]]\nname = "a"\nhost = "i"\n',
         "Duplicate server name: a"),
        ('[[servers]]\nname = "A"\nhost = "h"\n', "Validation error: Server name must start with a lowercase "
                                                  "letter"),
        ('[[servers]]\nname = "a"\nhost = ""\n', "Validation error: Server 'a' has empty host"),
        ('[[servers]]\nname = "a"\nhost = "h"\nport = 0\n',
         "Validation error: Server 'a' has invalid port 0"),
        ('[[servers]]\nname = "a"\nhost = "h"\nhttp_port = 8080\nhttps_port = 8080\n',
         "Validation error: Server 'a' HTTP and HTTPS ports must differ"),
        (
            '[servers.a]\nhost = "h"\ntls_fingerprint = "sha256:abc"\n',
            "Server 'a' field 'tls_fingerprint' (in {path}): A TLS fingerprint must be sha256: followed by "
            "64 "
            "hex digits, as `tako-server identity` prints it.",
        ),
        ("[servers.a]\nport = 22\n", "Validation error: Server 'a' must have a 'host' field"),
        (
            '[servers.a]\nhost = "h"\nmanagement_port = 70000\n',
            "Server 'a' field 'management_port' must be a port number from 1 to 65535 (in {path}).",
        ),
        ("[servers.a\n", "{path} is not valid TOML: Unexpected character: '\\n' at line 1, column 11."),
    ],
)
def test_bad_config_is_reported_as_tako_does(tako_home: Path, text: str, message: str) -> None:
    path = write_config(tako_home, text)
    with pytest.raises(ConfigError) as caught:
        load_servers()
    assert str(caught.value) == message.format(path=path)


def project_with(tmp_path: Path, servers: str) -> Project:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "tako.toml").write_text(f'[envs.production]\nroute = "a"\nservers = {servers}\n'
                                      '[envs.staging]\nroute = "b"\n')
    return load_project(folder / "tako.toml")


def test_servers_for_env_resolves_entries_sorted_and_only(tmp_path: Path, tako_home: Path) -> None:
    write_config(tako_home, '[[servers]]\nname = "a"\nhost = "10.0.0.1"\n[[servers]]\nname = "b"\n'
                            'host = "10.0.0.2"\n')
    project = project_with(tmp_path, '["b", "a", "b"]')
    servers = load_servers()
    assert [s.name for s in servers_for_env(project, servers, "production")] == ["a", "b"]
    assert [s.name for s in servers_for_env(project, servers, "production", only="b")] == ["b"]


def test_servers_for_env_errors_are_takos(tmp_path: Path, tako_home: Path) -> None:
    project = project_with(tmp_path, '["a", "ghost"]')
    empty = load_servers()
    hint = ("tako-backups has no `tako servers add`: add a [[servers]] entry with name = \"{name}\" and its "
            "host to {path}.")
    path = tako_home / "config.toml"
    with pytest.raises(ConfigError) as caught:
        servers_for_env(project, empty, "staging")
    assert str(caught.value) == (
        "No servers have been added. Run 'tako servers add <host>' first, then add it under "
        "[envs.staging].servers in tako.toml.\n" + hint.format(name="<name>", path=path))
    write_config(tako_home, '[[servers]]\nname = "a"\nhost = "10.0.0.1"\n')
    servers = load_servers()
    with pytest.raises(ConfigError) as caught:
        servers_for_env(project, servers, "staging")
    assert str(caught.value) == (
        "No servers configured for environment 'staging'. Add "
        '`servers = ["<name>"]` under [envs.staging] in tako.toml.'
    )
    with pytest.raises(ConfigError) as caught:
        servers_for_env(project, servers, "production")
    assert str(caught.value) == ("Server 'ghost' not found in config.toml\n"
                                 + hint.format(name="ghost", path=path))
    with pytest.raises(ConfigError) as caught:
        servers_for_env(project, servers, "production", only="nope")
    assert str(caught.value) == ("Server 'nope' not found in config.toml\n"
                                 + hint.format(name="nope", path=path))


def test_unreadable_config_is_reported(tako_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tako_home, '[servers.a]\nhost = "h"\n')

    def denied(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError) as caught:
        load_servers()
    assert str(caught.value) == f"Cannot read {path}: Permission denied."
