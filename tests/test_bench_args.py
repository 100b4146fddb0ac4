"""The bench's command line: `--quick` shrinks the defaults, never what the command line gives."""

from __future__ import annotations

from bench.run import QUICK_DEFAULTS, parse_args


def test_quick_uses_the_smoke_sizes_where_nothing_is_given() -> None:
    args = parse_args(["--quick"])
    for name, value in QUICK_DEFAULTS.items():
        assert getattr(args, name) == value, name


def test_quick_keeps_the_values_the_command_line_names() -> None:
    args = parse_args(["--quick", "--streams", "0", "--profile-seconds", "10"])
    assert (args.streams, args.profile_seconds) == (0, 10)
    assert args.latency_requests == QUICK_DEFAULTS["latency_requests"]


def test_without_quick_the_full_sizes_apply() -> None:
    args = parse_args([])
    assert args.streams == 5000 and args.latency_requests == 2000
