"""`aibridged login` and `aibridged providers ...` against a real gateway and its management API:
what they print, what they send, and that API keys and tokens never reach the output."""

from __future__ import annotations

import getpass
import io
import json
import socket
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio

from aibridged.cli import main
from aibridged.errors import InvalidInput
from aibridged.remote.inputs import parse_settings
from aibridged.safe import mask_secret
from aibridged.store import Store
from aibridged.store import users as u
from tests.gateway import Gateway, start_gateway
from tests.logs import LogWatch, watch_logs

KEY_ENV = "sk-test-from-env-aaaaaaaaaaaa1111"
KEY_FILE_1 = "sk-test-from-file-bbbbbbbbbbb2222"
KEY_FILE_2 = "sk-test-from-file-ccccccccccc3333"
KEY_STDIN = "sk-test-from-stdin-dddddddddd4444"
ALL_KEYS = (KEY_ENV, KEY_FILE_1, KEY_FILE_2, KEY_STDIN)
PROVIDERS = "/api/v2/ai/providers"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


class _Stdin(io.StringIO):
    def __init__(self, text: str, tty: bool) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


class Cli:
    """Runs `aibridged.cli.main` in a worker thread (it blocks on HTTP while the gateway runs in
    this trio loop) with the given stdin, and returns what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self._capsys = capsys
        self._monkeypatch = monkeypatch

    async def __call__(self, *argv: str, stdin: str = "", tty: bool = False) -> Result:
        self._capsys.readouterr()
        self._monkeypatch.setattr(sys, "stdin", _Stdin(stdin, tty))
        code = await trio.to_thread.run_sync(main, list(argv))
        captured = self._capsys.readouterr()
        assert "Traceback" not in captured.err
        return Result(code, captured.out, captured.err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    # Never the developer's own login: a config home of the test's, and no URL/token variables.
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("AIBRIDGED_URL", raising=False)
    monkeypatch.delenv("AIBRIDGED_TOKEN", raising=False)
    return Cli(capsys, monkeypatch)


@pytest.fixture
def logs() -> Iterator[LogWatch]:
    # The gateway runs in this process and would log to stdout, where the CLI's output is read.
    with watch_logs() as watch:
        yield watch


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, database_url: str, tmp_path: Path, logs: LogWatch
) -> Gateway:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    return await start_gateway(nursery, database_url=database_url, state_dir=state_dir)


@pytest.fixture
async def remote(gateway: Gateway, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The CLI pointed at the gateway by the environment, as its first owner (`admin`)."""
    monkeypatch.setenv("AIBRIDGED_URL", gateway.url)
    monkeypatch.setenv("AIBRIDGED_TOKEN", gateway.token)
    return cli


def _saved_login(tmp_path: Path) -> Path:
    return tmp_path / "config" / "aibridged" / "credentials.json"


def _token_file(tmp_path: Path, token: str) -> str:
    path = tmp_path / "token"
    path.write_text(token + "\n")
    return str(path)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _hints(provider: dict[str, Any]) -> list[str]:
    return [key["hint"] for key in provider["api_keys"]]


def _key_ids(provider: dict[str, Any]) -> list[str]:
    return [key["id"] for key in provider["api_keys"]]


def _assert_no_plaintext(*results: Result) -> None:
    for result in results:
        for key in ALL_KEYS:
            assert key not in result.out + result.err


async def _create(remote: Cli, *args: str, stdin: str = "", tty: bool = False) -> dict[str, Any]:
    result = await remote("providers", "create", "--format", "json", *args, stdin=stdin, tty=tty)
    assert result.code == 0, result.err
    _assert_no_plaintext(result)
    provider: dict[str, Any] = json.loads(result.out)
    return provider


# login


async def test_login_checks_the_token_saves_it_private_and_later_commands_use_it(
    gateway: Gateway, cli: Cli, tmp_path: Path
) -> None:
    result = await cli(
        "login", gateway.url + "/", "--token-file", _token_file(tmp_path, gateway.token)
    )
    assert result.code == 0, result.err
    assert result.out == f"logged in to {gateway.url} as admin (owner)\n"
    assert gateway.token not in result.out + result.err
    saved = _saved_login(tmp_path)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    assert json.loads(saved.read_text()) == {"url": gateway.url, "token": gateway.token}
    assert list(saved.parent.iterdir()) == [saved]  # no temporary file left behind
    listed = await cli("providers", "list")
    assert listed.code == 0, listed.err
    assert "switched-off" in listed.out


async def test_login_with_a_bad_token_saves_nothing_and_keeps_the_old_login(
    gateway: Gateway, cli: Cli, tmp_path: Path
) -> None:
    bad = await cli(
        "login", gateway.url, "--token-file", _token_file(tmp_path, "a" * 10 + "-" + "b" * 22)
    )
    assert bad.code == 1
    assert len(bad.err_lines) == 1 and "did not accept the token" in bad.err
    assert "nothing saved" in bad.err
    assert not _saved_login(tmp_path).exists()

    assert (await cli("login", gateway.url, stdin=gateway.token)).code == 0
    before = _saved_login(tmp_path).read_text()
    again = await cli("login", gateway.url, stdin="nope")
    assert again.code == 1
    assert _saved_login(tmp_path).read_text() == before


async def test_login_reads_stdin_and_on_a_terminal_asks_without_echo(
    gateway: Gateway, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    piped = await cli("login", gateway.url, stdin=gateway.token + "\n")
    assert piped.code == 0, piped.err
    _saved_login(tmp_path).unlink()

    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return gateway.token

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    # The terminal's stdin is empty: a token read from it instead of getpass would fail.
    typed = await cli("login", gateway.url, tty=True)
    assert typed.code == 0, typed.err
    assert prompts == [f"token for {gateway.url}: "]
    assert json.loads(_saved_login(tmp_path).read_text())["token"] == gateway.token


@pytest.mark.parametrize(
    "url", ["ftp://gateway.example.com", "gateway.example.com:8080", "http://", "http://h/?a=1"]
)
async def test_login_refuses_a_url_that_is_not_http(cli: Cli, tmp_path: Path, url: str) -> None:
    result = await cli("login", url, stdin="a" * 10 + "-" + "b" * 22)
    assert result.code == 1
    assert result.err_lines == [result.err_lines[0]] and "invalid URL" in result.err
    assert not _saved_login(tmp_path).exists()


async def test_login_takes_no_token_argument(cli: Cli) -> None:
    with pytest.raises(SystemExit) as exit_:
        await cli("login", "http://127.0.0.1:1", "a" * 10 + "-" + "b" * 22)
    assert exit_.value.code == 2


# where the URL and token come from


async def test_without_a_login_or_the_variables_the_user_is_told_what_to_do(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nothing = await cli("providers", "list")
    assert nothing.code == 1
    assert nothing.err_lines == [
        "aibridged: not logged in: run `aibridged login URL`, or set AIBRIDGED_URL and "
        "AIBRIDGED_TOKEN"
    ]
    monkeypatch.setenv("AIBRIDGED_URL", "http://127.0.0.1:1")
    half = await cli("providers", "list")
    assert half.err_lines == [
        "aibridged: AIBRIDGED_URL is set but AIBRIDGED_TOKEN is not: set both, or neither"
    ]
    monkeypatch.delenv("AIBRIDGED_URL")
    monkeypatch.setenv("AIBRIDGED_TOKEN", "x" * 40)
    lone = await cli("providers", "list")
    assert lone.err_lines == [
        "aibridged: AIBRIDGED_TOKEN is set but AIBRIDGED_URL is not: set both, or neither"
    ]
    monkeypatch.delenv("AIBRIDGED_TOKEN")
    saved = _saved_login(tmp_path)
    saved.parent.mkdir(parents=True)
    saved.write_text("{not json")
    broken = await cli("providers", "list")
    assert broken.code == 1 and f"{saved} is not a saved login" in broken.err


async def test_the_variables_win_over_the_saved_login(
    gateway: Gateway, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved = _saved_login(tmp_path)
    saved.parent.mkdir(parents=True)
    saved.write_text(json.dumps({"url": f"http://127.0.0.1:{_closed_port()}", "token": "x"}))
    monkeypatch.setenv("AIBRIDGED_URL", gateway.url)
    monkeypatch.setenv("AIBRIDGED_TOKEN", gateway.token)
    result = await cli("providers", "list")
    assert result.code == 0, result.err


async def test_a_token_alone_leaves_the_saved_login_in_charge_and_says_so(
    gateway: Gateway, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's banner exports AIBRIDGED_TOKEN for Codex; `aibridged login` saved the rest.
    login = await cli("login", gateway.url, "--token-file", _token_file(tmp_path, gateway.token))
    assert login.code == 0, login.err
    monkeypatch.setenv("AIBRIDGED_TOKEN", "a-token-meant-for-some-client")
    result = await cli("providers", "list", "--format", "json")
    assert result.code == 0, result.err
    assert result.err_lines == [
        f"aibridged: AIBRIDGED_URL is not set: using the saved login for {gateway.url} "
        "(AIBRIDGED_TOKEN is ignored)"
    ]


# list and show


async def test_list_and_show_in_table_and_json(
    remote: Cli, api: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KEY", KEY_ENV)
    created = await _create(remote, "--type", "openai", "--name", "alpha", "--key-env", "TEST_KEY")

    table = await remote("providers", "list")
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "STATUS", "BASE", "URL", "KEYS", "REASON"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["alpha"] == [
        "alpha",
        "openai",
        "enabled",
        "https://api.openai.com/v1",
        mask_secret(KEY_ENV),
    ]
    assert rows["switched-off"][2] == "disabled"
    assert list(rows) == sorted(rows)

    as_json = await remote("providers", "list", "--format", "json")
    assert json.loads(as_json.out) == (await api.get(PROVIDERS)).json()
    assert as_json.out.startswith("[\n  {")

    shown = await remote("providers", "show", "alpha")
    fields = dict(line.split(":", 1) for line in shown.out.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["name"] == "alpha" and fields["type"] == "openai"
    assert fields["enabled"] == "true" and fields["status"] == "enabled"
    assert fields["effective_base_url"] == "https://api.openai.com/v1"
    assert fields["api_keys"] == f"{mask_secret(KEY_ENV)} ({_key_ids(created)[0]})"

    by_id = await remote("providers", "show", created["id"], "--format", "json")
    assert json.loads(by_id.out) == (await api.get(f"{PROVIDERS}/alpha")).json()
    _assert_no_plaintext(table, as_json, shown, by_id)


async def test_show_of_an_unknown_provider_fails_and_names_stay_one_path_segment(
    remote: Cli,
) -> None:
    missing = await remote("providers", "show", "nope")
    assert missing.code == 1
    assert len(missing.err_lines) == 1 and missing.err.startswith("aibridged: ")
    # Unquoted, this would be /api/v2/ai/providers/../../users/me, an object that is not one.
    sneaky = await remote("providers", "show", "../../users/me")
    assert sneaky.code == 1 and sneaky.out == ""


# create


async def test_create_reads_keys_from_env_file_and_stdin_in_order_and_never_prints_them(
    remote: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, logs: LogWatch
) -> None:
    monkeypatch.setenv("TEST_KEY", KEY_ENV)
    key_file = tmp_path / "keys"
    key_file.write_text(f"{KEY_FILE_1}\n\n  {KEY_FILE_2}\n")
    result = await remote(
        "providers", "create", "--type", "openai", "--name", "ordered",
        "--key-file", str(key_file), "--key-env", "TEST_KEY", "--key-stdin",
        stdin=f"{KEY_STDIN}\n",
    )  # fmt: skip
    assert result.code == 0, result.err
    _assert_no_plaintext(result)
    shown = await remote("providers", "show", "ordered", "--format", "json")
    provider = json.loads(shown.out)
    expected = [KEY_FILE_1, KEY_FILE_2, KEY_ENV, KEY_STDIN]
    assert _hints(provider) == [mask_secret(k) for k in expected]
    assert provider["source"] == "api"
    assert logs.matching("provider.created", provider="ordered")
    assert not [key for key in ALL_KEYS if key in repr(logs.entries)]


async def test_create_on_a_terminal_asks_for_keys_without_echo(
    remote: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": f"{KEY_STDIN} {KEY_ENV}")
    provider = await _create(remote, "--type", "openai", "--name", "typed", "--key-stdin", tty=True)
    assert _hints(provider) == [mask_secret(KEY_STDIN), mask_secret(KEY_ENV)]


async def test_create_sends_display_name_base_url_settings_and_disabled(remote: Cli) -> None:
    provider = await _create(
        remote, "--type", "copilot", "--name", "copilot-biz", "--display-name", "Copilot (biz)",
        "--setting", "plan=business", "--disabled",
    )  # fmt: skip
    assert provider["display_name"] == "Copilot (biz)"
    assert provider["settings"] == {"plan": "business"}
    assert provider["enabled"] is False and provider["status"] == "disabled"
    assert provider["effective_base_url"] == "https://api.business.githubcopilot.com"
    compat = await _create(
        remote, "--type", "openai-compat", "--name", "local", "--base-url", "http://127.0.0.1:9/v1"
    )
    assert compat["base_url"] == "http://127.0.0.1:9/v1" and compat["api_keys"] == []


async def test_unreadable_key_sources_are_named_and_nothing_is_sent(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Nothing listens there: a request would fail with "cannot reach" instead.
    monkeypatch.setenv("AIBRIDGED_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AIBRIDGED_TOKEN", "a" * 10 + "-" + "b" * 22)
    monkeypatch.setenv("TEST_EMPTY_KEY", "")
    create = ("providers", "create", "--type", "openai", "--name", "x")
    cases = [
        (("--key-env", "TEST_MISSING_KEY"), "", "--key-env TEST_MISSING_KEY"),
        (("--key-env", "TEST_EMPTY_KEY"), "", "--key-env TEST_EMPTY_KEY"),
        (("--key-file", str(tmp_path / "absent")), "", f"--key-file {tmp_path / 'absent'}"),
        (("--key-stdin",), " \n", "--key-stdin: no key"),
        (("--key-stdin", "--key-stdin"), KEY_STDIN, "--key-stdin can be given once"),
        (("--setting", "s3cr3t-value"), "", "--setting takes KEY=VALUE"),
    ]
    for extra, stdin, expected in cases:
        result = await cli(*create, *extra, stdin=stdin)
        assert result.code == 1
        assert len(result.err_lines) == 1 and expected in result.err, result.err
        assert "s3cr3t" not in result.err and KEY_STDIN not in result.err


def test_setting_values_are_strings_and_secret_ones_never_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = ["n=42", "model=null", "s=business", "e=", "eq=a=b"]
    assert parse_settings(pairs, ["gone"]) == {
        "n": "42", "model": "null", "s": "business", "e": "", "eq": "a=b", "gone": None,
    }  # fmt: skip
    with pytest.raises(InvalidInput, match="both set and unset"):
        parse_settings(["plan=x"], ["plan"])
    with pytest.raises(InvalidInput, match="is secret: use --setting-env") as refused:
        parse_settings(["access_key_secret=wJalr-s3cr3t"])
    assert "s3cr3t" not in str(refused.value)
    monkeypatch.setenv("AWS_SECRET", "wJalr-from-env")
    secret_file = tmp_path / "secret"
    secret_file.write_text("AKIA-from-file\n")
    found = parse_settings(
        [], from_env=["access_key_secret=AWS_SECRET"], from_files=[f"access_key={secret_file}"]
    )
    assert found == {"access_key_secret": "wJalr-from-env", "access_key": "AKIA-from-file"}
    with pytest.raises(InvalidInput, match="AWS_UNSET is not set"):
        parse_settings([], from_env=["access_key_secret=AWS_UNSET"])


# update


async def test_update_replaces_keeps_and_removes_keys(
    remote: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TEST_KEY", KEY_ENV)
    key_file = tmp_path / "keys"
    key_file.write_text(KEY_FILE_1)
    first = await _create(remote, "--type", "openai", "--name", "rotating", "--key-env", "TEST_KEY")

    async def update(*args: str, stdin: str = "") -> dict[str, Any]:
        result = await remote(
            "providers", "update", "rotating", "--format", "json", *args, stdin=stdin
        )
        assert result.code == 0, result.err
        _assert_no_plaintext(result)
        provider: dict[str, Any] = json.loads(result.out)
        return provider

    replaced = await update("--key-file", str(key_file))
    assert _hints(replaced) == [mask_secret(KEY_FILE_1)]
    assert _key_ids(first)[0] not in _key_ids(replaced)

    kept = await update("--keep-keys", "--key-stdin", stdin=KEY_STDIN)
    assert _hints(kept) == [mask_secret(KEY_FILE_1), mask_secret(KEY_STDIN)]
    assert _key_ids(kept)[0] == _key_ids(replaced)[0]

    removed = await update("--remove-key", _key_ids(kept)[0])
    assert _key_ids(removed) == [_key_ids(kept)[1]]

    swapped = await update("--remove-key", _key_ids(removed)[0], "--key-env", "TEST_KEY")
    assert _hints(swapped) == [mask_secret(KEY_ENV)]

    unknown = await remote("providers", "update", "rotating", "--remove-key", "no-such-key")
    assert unknown.code == 1 and "provider rotating has no key no-such-key" in unknown.err
    alone = await remote("providers", "update", "rotating", "--keep-keys")
    assert alone.code == 1 and "--keep-keys goes with" in alone.err
    nothing = await remote("providers", "update", "rotating")
    assert nothing.code == 1 and "nothing to change" in nothing.err


async def test_update_sends_only_the_fields_given(
    remote: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KEY", KEY_ENV)
    created = await _create(
        remote, "--type", "openai", "--name", "alpha", "--key-env", "TEST_KEY", "--disabled"
    )
    renamed = await remote(
        "providers", "update", "alpha", "--name", "beta", "--display-name", "Beta",
        "--base-url", "http://127.0.0.1:9/v1", "--format", "json",
    )  # fmt: skip
    assert renamed.code == 0, renamed.err
    beta = json.loads(renamed.out)
    assert (beta["id"], beta["name"], beta["display_name"]) == (created["id"], "beta", "Beta")
    assert beta["effective_base_url"] == "http://127.0.0.1:9/v1"
    # Left out, so unchanged: the keys and the enabled flag.
    assert beta["api_keys"] == created["api_keys"] and beta["enabled"] is False
    assert (await remote("providers", "show", "alpha")).code == 1

    reset = await remote("providers", "update", "beta", "--base-url", "", "--format", "json")
    assert json.loads(reset.out)["effective_base_url"] == "https://api.openai.com/v1"


async def test_update_merges_and_unsets_settings(remote: Cli) -> None:
    await _create(remote, "--type", "copilot", "--name", "copilot", "--setting", "plan=business")
    unset = await remote(
        "providers", "update", "copilot", "--unset-setting", "plan", "--format", "json"
    )
    assert unset.code == 0, unset.err
    provider = json.loads(unset.out)
    assert provider["settings"] == {}
    assert provider["effective_base_url"] == "https://api.individual.githubcopilot.com"


# enable, disable, delete


async def test_enable_and_disable_say_what_they_did(remote: Cli, api: httpx2.AsyncClient) -> None:
    await _create(remote, "--type", "copilot", "--name", "toggled")
    disabled = await remote("providers", "disable", "toggled")
    assert (disabled.code, disabled.out) == (0, "provider toggled is disabled\n")
    assert (await api.get(f"{PROVIDERS}/toggled")).json()["enabled"] is False
    enabled = await remote("providers", "enable", "toggled")
    assert (enabled.code, enabled.out, enabled.err) == (0, "provider toggled is enabled\n", "")
    assert (await api.get(f"{PROVIDERS}/toggled")).json()["status"] == "enabled"


async def test_enabling_a_provider_that_cannot_serve_warns_why(remote: Cli) -> None:
    later = ("--type", "bedrock", "--name", "later", "--base-url", "https://bedrock.example.com")
    await _create(remote, *later, "--disabled")
    enabled = await remote("providers", "enable", "later")
    assert enabled.code == 0 and enabled.out == "provider later is enabled\n"
    assert enabled.err.startswith("aibridged: warning: provider later cannot serve: ")


async def test_delete_needs_yes_or_the_name_typed_on_a_terminal(
    remote: Cli, api: httpx2.AsyncClient
) -> None:
    await _create(remote, "--type", "copilot", "--name", "doomed")
    refused = await remote("providers", "delete", "doomed")
    assert refused.code == 1 and "not deleting provider doomed without --yes" in refused.err
    wrong = await remote("providers", "delete", "doomed", stdin="doom\n", tty=True)
    assert wrong.code == 1 and "provider doomed not deleted" in wrong.err
    assert "type its name" in wrong.err and wrong.out == ""
    assert (await api.get(f"{PROVIDERS}/doomed")).status_code == 200

    typed = await remote("providers", "delete", "doomed", stdin="doomed\n", tty=True)
    assert (typed.code, typed.out) == (0, "provider doomed deleted\n")
    assert (await api.get(f"{PROVIDERS}/doomed")).status_code == 404

    await _create(remote, "--type", "copilot", "--name", "doomed")
    forced = await remote("providers", "delete", "doomed", "--yes")
    assert (forced.code, forced.out) == (0, "provider doomed deleted\n")
    assert (await api.get(f"{PROVIDERS}/doomed")).status_code == 404


# errors


async def test_an_api_validation_error_is_printed_field_by_field(
    remote: Cli, api: httpx2.AsyncClient
) -> None:
    result = await remote("providers", "create", "--type", "openai", "--name", "Not Valid")
    assert result.code == 1 and result.out == ""
    answer = (await api.post(PROVIDERS, json={"type": "openai", "name": "Not Valid"})).json()
    assert answer["validations"], answer
    assert result.err_lines == [
        f"aibridged: {answer['message']}: {answer['detail']}",
        *(f"  {v['field']}: {v['detail']}" for v in answer["validations"]),
    ]
    assert any(line.startswith("  name: ") for line in result.err_lines)


async def test_a_taken_name_is_an_error_naming_the_field(
    remote: Cli, api: httpx2.AsyncClient
) -> None:
    result = await remote("providers", "create", "--type", "copilot", "--name", "openai")
    assert result.code == 1 and result.out == ""
    answer = await api.post(PROVIDERS, json={"type": "copilot", "name": "openai"})
    assert answer.status_code == 409
    body = answer.json()
    assert result.err_lines == [
        f"aibridged: {body['message']}: {body['detail']}",
        *(f"  {v['field']}: {v['detail']}" for v in body["validations"]),
    ]


async def test_an_unreachable_gateway_is_one_line_naming_the_url(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("AIBRIDGED_URL", url)
    monkeypatch.setenv("AIBRIDGED_TOKEN", "a" * 10 + "-" + "b" * 22)
    listed = await cli("providers", "list")
    assert listed.code == 1
    assert listed.err_lines == [f"aibridged: cannot reach {url}{PROVIDERS}: connection refused"]
    login = await cli("login", url, stdin="a" * 10 + "-" + "b" * 22)
    assert login.code == 1 and login.err_lines == [
        f"aibridged: cannot reach {url}/api/v2/users/me: connection refused"
    ]
    assert not _saved_login(tmp_path).exists()


async def test_tls_to_a_plain_http_gateway_is_one_line(
    remote: Cli, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = gateway.url.replace("http://", "https://")
    monkeypatch.setenv("AIBRIDGED_URL", url)
    result = await remote("providers", "list")
    assert result.code == 1 and len(result.err_lines) == 1
    assert result.err.startswith(f"aibridged: cannot reach {url}{PROVIDERS}: TLS failed")


async def test_a_members_token_gets_the_403_message(
    gateway: Gateway, cli: Cli, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await u.create_user(store, username="mia", role="member")
    _, token = await u.create_token(store, "mia")
    logged_in = await cli("login", gateway.url, stdin=token)
    assert logged_in.out == f"logged in to {gateway.url} as mia (member)\n"
    monkeypatch.setenv("AIBRIDGED_URL", gateway.url)
    monkeypatch.setenv("AIBRIDGED_TOKEN", token)
    async with httpx2.AsyncClient() as http:
        answer = await http.get(
            gateway.url + PROVIDERS, headers={"authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 403
    body = answer.json()
    result = await cli("providers", "list")
    assert result.code == 1
    expected = f"aibridged: {body['message']}" + (f": {body['detail']}" if body["detail"] else "")
    assert result.err_lines == [expected]


async def test_an_unknown_token_is_told_to_log_in_again(
    remote: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIBRIDGED_TOKEN", "a" * 10 + "-" + "b" * 22)
    result = await remote("providers", "list")
    assert result.code == 1 and len(result.err_lines) == 2
    assert "aibridged login URL" in result.err_lines[1]
