"""Command line: ``python -m musicscale run --profile default`` runs the stages and builds the report."""

from __future__ import annotations

import argparse
import json
import logging

from .pipeline import PROFILES, STAGES, build_book, run_pipeline


def _override(text: str) -> tuple[str, str, object]:
    """Parse ``STAGE.NAME=VALUE`` (VALUE is JSON, or a plain string)."""
    try:
        key, value = text.split("=", 1)
        stage, name = key.split(".", 1)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"-p expects STAGE.NAME=VALUE, got {text!r}") from err
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return stage, name, parsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="musicscale", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the stage notebooks with papermill and build the book")
    run.add_argument("--profile", default="default", choices=list(PROFILES))
    run.add_argument("--workdir", default=None, help="artifact folder (default: work/<profile>)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset, run in order")
    run.add_argument("-p", "--param", action="append", type=_override, default=[], metavar="STAGE.NAME=VALUE",
                     help='override a notebook parameter, e.g. -p 03_train.sizes=\'["tiny","small"]\'')
    run.add_argument("--no-book", action="store_true", help="skip the jupyter-book build")
    run.add_argument("--no-strict", action="store_true", help="do not treat book warnings as errors")
    book = sub.add_parser("book", help="build the book from the executed notebooks in book/stages")
    book.add_argument("--no-strict", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "book":
        try:
            print(build_book(strict=not args.no_strict))
        except (ValueError, FileNotFoundError) as err:  # no executed stages, or a page citing what is not glued
            parser.exit(2, f"musicscale: error: {err}\n")
        return
    # papermill logs each executed cell and the notebooks' own output (runs, ETA) at INFO
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("papermill").setLevel(logging.INFO)
    overrides: dict[str, dict] = {}
    for stage, name, value in args.param:
        overrides.setdefault(stage, {})[name] = value
    try:
        run_pipeline(args.profile, args.workdir, seed=args.seed, stages=tuple(args.stages.split(",")),
                     overrides=overrides, book=not args.no_book, strict=not args.no_strict)
    except (ValueError, FileNotFoundError, NotADirectoryError) as err:  # bad input, found before any work
        parser.exit(2, f"musicscale: error: {err}\n")


if __name__ == "__main__":
    main()
