"""``ganrun <subcommand> [hydra overrides]``: take the subcommand, then hand the rest to Hydra.

Every Hydra feature works after the subcommand (overrides, ``-m``, ``--cfg job``, ``--info``,
``hydra.run.dir=...``, ``+key=value``) because Hydra parses ``sys.argv`` exactly as it would for
a script of its own. Errors in the user's input end as one line on stderr and exit code 2;
``ganrun --debug <subcommand> ...`` (or ``GANRUN_DEBUG=1``) shows the full traceback instead.
"""

from __future__ import annotations

import ast
import contextlib
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganrun import __version__
from ganrun.errors import GanrunError

# subcommand -> (primary config name, summary); each runs ganrun.commands.<subcommand>.run
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a model (Hydra overrides; -m for sweeps)"),
    "eval": ("eval", "score a checkpoint, a run or a whole sweep"),
    "sample": ("sample", "draw a grid of new samples from a checkpoint"),
    "report": ("report", "tables and plots over a run or a sweep"),
}

USAGE = """usage: ganrun [--debug] [--version] <subcommand> [overrides ...]

subcommands:
{table}

Each subcommand takes Hydra overrides (key=value, group=option, -m for sweeps, --cfg job).
`ganrun <subcommand> --help` shows its config groups and options."""


def _usage() -> str:
    table = "\n".join(f"  {name:<8}{summary}" for name, (_, summary) in SUBCOMMANDS.items())
    return USAGE.format(table=table)


# Lines of Hydra/OmegaConf messages that locate an error for developers, not users.
_NOISE = ("full_key:", "reference_type", "object_type", "Config search path", "provider=")


class _UserError(BaseException):
    """Carries a GanrunError out of a Hydra job: Hydra's job runner catches only Exception and
    would log it as a failed job with a traceback first."""

    def __init__(self, error: GanrunError) -> None:
        super().__init__(str(error))
        self.error = error


def _one_line(exc: BaseException | None) -> str:
    """Fold an exception (and the OmegaConf error behind a Hydra one) into a single line."""
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        lines = [line.strip() for line in str(exc).splitlines()]
        text = " ".join(line for line in lines if line and not line.startswith(_NOISE))
        if text and text not in parts:
            parts.append(text)
        exc = exc.__cause__
    return ": ".join(parts) or "unknown error"


def _hydra_flag_error(exc: BaseException) -> bool:
    """Hydra checks its command-line flags (e.g. --cfg with -m) with plain ValueErrors."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return (
        isinstance(exc, ValueError)
        and tb is not None
        and "hydra" in Path(tb.tb_frame.f_code.co_filename).parts
    )


def _run_folder_error(exc: BaseException) -> bool:
    """Whether ``exc`` is the file system refusing a folder Hydra's own code was making (the
    run or sweep folder): an OSError about a path, raised on Hydra's way, not a missing config
    (Hydra's is an OSError too) nor a closed pipe."""
    from hydra.errors import HydraException

    if not isinstance(exc, OSError) or isinstance(exc, BrokenPipeError | HydraException):
        return False
    if not exc.filename:
        return False
    tb = exc.__traceback__
    while tb is not None:
        if "hydra" in Path(tb.tb_frame.f_code.co_filename).parts:
            return True
        tb = tb.tb_next
    return False


def _flag_error(args: list[str]) -> str | None:
    """What is wrong with the flags in ``args``, checked with Hydra's own parser before Hydra
    runs: for a bad flag it would print its whole usage text instead of one line."""
    import argparse

    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    parser.exit_on_error = False  # raise ArgumentError instead of printing usage and exiting
    try:
        _, unknown = parser.parse_known_args(args)
    except argparse.ArgumentError as exc:
        return str(exc)
    return f"unknown option {unknown[0]!r}" if unknown else None


def _job_failure(exc: BaseException) -> str:
    """One line for a sweep job that failed or ended early under submitit: the job's own error
    (the last line of its traceback) and where its logs are."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    rules = [i for i, line in enumerate(lines) if set(line) == {"-"}]
    if len(rules) >= 2:  # "failed during processing with trace: ---- <traceback> ----"
        reason = lines[rules[1] - 1]
        reason = reason.removeprefix("ganrun.errors.GanrunError: ")
    logs = [line[2:] for line in lines if line.startswith("- ") and line.endswith(".err")]
    return f"a sweep job failed: {reason}" + (f" (its log: {logs[0]})" if logs else "")


class _StderrWithoutJobLine:
    """sys.stderr without the line Hydra writes straight to it before re-raising a failed
    multirun job's error ("Error executing job with overrides: [...]"; submitit jobs, whose errors
    come back as values): ganrun names the job in its own one-line error instead."""

    PREFIX = "Error executing job with overrides: "

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.overrides: list[str] | None = None

    def write(self, text: str) -> int:
        if not text.startswith(self.PREFIX):
            return self._stream.write(text)
        try:
            self.overrides = [str(o) for o in ast.literal_eval(text[len(self.PREFIX) :].strip())]
        except (ValueError, SyntaxError):
            return self._stream.write(text)
        return len(text)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding, ...
        return getattr(self._stream, name)


def _load(target: str) -> Callable[[Any], Any]:
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _fail(message: str, code: int = 2, label: str = "error") -> int:
    print(f"ganrun: {label}: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:
        # The reader went away (`ganrun train --help | head`): stop quietly, as Unix tools do,
        # and keep Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a process killed by it


def _main(args: list[str]) -> int:
    debug = os.environ.get("GANRUN_DEBUG", "") not in ("", "0")
    while args and args[0] in ("--debug", "--version", "-V"):
        flag = args.pop(0)
        if flag == "--debug":
            debug = True
        else:
            print(f"ganrun {__version__}")
            return 0
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in SUBCOMMANDS:
        return _fail(f"unknown subcommand {command!r}; choose one of: {', '.join(SUBCOMMANDS)}")

    config_name, _ = SUBCOMMANDS[command]
    flag_error = _flag_error(rest) or _unset_data_error(command, rest)
    if flag_error:
        return _fail(f"{flag_error} (run `ganrun {command} --help` for the options)")
    # Hydra re-raises instead of printing its multi-line report, so errors come back to us.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        run = _load(f"ganrun.commands.{command}:run")
        return _run_hydra(config_name, run, [f"ganrun {command}", *rest], debug)
    except (GanrunError, _UserError) as exc:
        error = exc.error if isinstance(exc, _UserError) else exc
        if debug:
            raise error from None
        return _fail(str(error), error.exit_code, error.label)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:
        import yaml
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if not debug and type(exc).__module__.startswith("submitit"):
            return _fail(_job_failure(exc), 1)
        if not debug and _run_folder_error(exc):
            # Hydra makes the run (or sweep) folder before ganrun sees the config.
            return _fail(
                f"cannot create {exc.filename} ({exc.strerror or exc}); choose another "  # type: ignore[attr-defined]
                "hydra.run.dir (hydra.sweep.dir with -m)"
            )
        user_errors = (HydraException, OmegaConfBaseException, yaml.YAMLError)
        if debug or not (isinstance(exc, user_errors) or _hydra_flag_error(exc)):
            raise
        return _fail(_config_error(exc, f"ganrun {command}"))


def _unset_data_error(command: str, rest: list[str]) -> str | None:
    """``ganrun eval`` has a ``data`` group only with ``samples=``: a ``data.<key>=`` override
    without ``data=<name>`` would reach OmegaConf as an update of an unset node (an assertion,
    not an error message)."""
    keys = [a.split("=", 1)[0].lstrip("+~") for a in rest if "=" in a]
    if command != "eval" or "data" in keys or not any(k.startswith("data.") for k in keys):
        return None
    first = next(k for k in keys if k.startswith("data."))
    return (
        f"{first}= needs data=<name> (scoring samples=); a checkpoint is scored on the data of "
        "its saved config: say where that data lives now with data_root=<folder>"
    )


def _refusal_behind(exc: BaseException) -> GanrunError | None:
    """The GanrunError a resolver (``${ganrun_required:...}``) raised, which OmegaConf wraps in
    its own errors; None when there is none."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GanrunError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _config_error(exc: BaseException, usage: str) -> str:
    """One line for a config the schemas or an interpolation rejected."""
    message = _one_line(exc)
    override = getattr(exc, "override", None)  # set on Hydra's OverrideParseException
    if override:
        message = f"cannot parse override {override!r}: {message}"
    return f"{message} (run `{usage} --help` for the options)"


def _run_hydra(config_name: str, run: Callable[[Any], Any], argv: list[str], debug: bool) -> int:
    import hydra
    from omegaconf.errors import OmegaConfBaseException

    import ganrun.config.schema  # noqa: F401  (registers the command schemas in Hydra's ConfigStore)
    from ganrun.models import all_families

    all_families()  # registers every model family's schema

    @hydra.main(config_path="configs", config_name=config_name, version_base=None)
    def task(cfg: Any) -> Any:
        # Runs once per job (many times in a multirun); its return value is the sweep objective.
        try:
            return run(cfg)
        except (GanrunError, OmegaConfBaseException) as exc:
            # A submitit job runs in another process: the error has to travel back in its result
            # file, which submitit writes only for an Exception.
            if debug or os.environ.get("SUBMITIT_EXECUTOR"):
                raise
            behind = _refusal_behind(exc)
            if behind is not None:  # a resolver's own refusal says it all
                exc = behind
            elif not isinstance(exc, GanrunError):  # a `${...}` that fails once the job reads it
                exc = GanrunError(_config_error(exc, argv[0]))
            raise _UserError(exc) from exc

    multirun = "-m" in argv or "--multirun" in argv
    stderr = _StderrWithoutJobLine(sys.stderr) if multirun and not debug else None
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stderr(stderr) if stderr else contextlib.nullcontext():
            task()
    except GanrunError as exc:
        if stderr and stderr.overrides is not None:
            exc.args = (f"sweep job {' '.join(stderr.overrides) or '(no overrides)'}: {exc}",)
        raise
    finally:
        sys.argv = saved
    return 0
