"""``liteport images``: build and list the environments' Docker images, and the local base images."""

from __future__ import annotations

import argparse
import glob
import json
import time
from typing import Any

from liteport.cli.common import EXIT_FAILED, EXIT_OK, console, pick_environments, plugins, side_by_side
from liteport.errors import LiteportError, UsageError
from liteport.runtimes.docker import connect
from liteport.runtimes.images import (
    BASE_SUITES,
    build_base,
    build_image,
    image_status,
    image_tag,
    local_base_tag,
    write_dockerfiles,
)
from liteport.types import EnvironmentSpec


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("images", parents=[common], help="Docker images of the environments (docker runtime)")
    images_sub = p.add_subparsers(metavar="ACTION")
    i = images_sub.add_parser(
        "build", parents=[common], help="build images (all environments when none is named)"
    )
    i.add_argument("names", nargs="*", metavar="ENV")
    i.add_argument("--force", action="store_true", help="rebuild even when the image is up to date")
    i.add_argument(
        "--base", help="BASE image (default: the local liteport/base one when built, else official)"
    )
    i.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="images built at once (default 2: one build's layer commit overlaps another's pip install)",
    )
    i.set_defaults(func=cmd_images_build)
    i = images_sub.add_parser("list", parents=[common], help="environments, image tags, built or not, sizes")
    i.add_argument("--json", action="store_true", help="print a JSON document")
    i.set_defaults(func=cmd_images_list)
    i = images_sub.add_parser(
        "base",
        parents=[common],
        help="build local base images without a registry (debootstrap + docker import)",
    )
    i.add_argument(
        "--suite",
        action="append",
        choices=("bookworm", "bullseye"),
        help="bookworm (Python 3.11) and/or bullseye (3.9); default: those the environments need",
    )
    i.add_argument(
        "--ca-cert",
        action="append",
        default=None,
        metavar="FILE",
        help="extra CA certificate to trust inside (default: /usr/local/share/ca-certificates/*.crt)",
    )
    i.add_argument("--force", action="store_true", help="rebuild a base that already exists")
    i.set_defaults(func=cmd_images_base)


def _environments(args: argparse.Namespace) -> list[Any]:
    return pick_environments(plugins(args), getattr(args, "names", []))


def cmd_images_build(args: argparse.Namespace) -> int:
    specs = _environments(args)
    connect()  # one clear error before any build when no engine is reachable
    err = console()
    for path in write_dockerfiles(specs):
        err.print(f"  wrote {path} from the template")

    def build(spec: EnvironmentSpec, label: str) -> bool:
        try:
            client = connect()  # a client per build: the SDK does not promise to be thread-safe
            status, image = image_status(client, spec)
            if status == "built" and not args.force:
                err.print(f"[green]✓[/green] {spec.name}: {image_tag(spec)} is up to date ({image.short_id})")
                return True
            image_id, seconds = build_image(
                client,
                spec,
                lambda m: err.print(f"  {label}{m}", markup=False, soft_wrap=True),
                base=args.base,
                steps=True,
            )
            size = client.images.get(image_id).attrs.get("Size", 0)
        except LiteportError as exc:
            err.print(f"[red]✗[/red] {spec.name}: {exc}", soft_wrap=True)
            return False
        err.print(
            f"[green]✓[/green] {spec.name}: {image_tag(spec)} {image_id[:19]} "
            f"{size / 1e9:.2f} GB in {seconds:.0f} s",
            soft_wrap=True,
        )
        return True

    built = side_by_side(specs, args.jobs, "image", build)
    return EXIT_OK if all(built) else EXIT_FAILED


def cmd_images_list(args: argparse.Namespace) -> int:

    specs = _environments(args)
    client = connect()
    rows = []
    for spec in specs:
        status, image = image_status(client, spec)
        attrs = image.attrs if image is not None else {}
        rows.append(
            {
                "environment": spec.name,
                "python": spec.python,
                "tag": image_tag(spec),
                "status": status,
                "id": image.id if image is not None else None,
                "size_bytes": attrs.get("Size"),
                "created": attrs.get("Created"),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    for row in rows:
        size = f"{row['size_bytes'] / 1e9:.2f} GB" if row["size_bytes"] else "-"
        ident = (row["id"] or "")[7:19] or "-"
        print(f"{row['environment']:<24} {row['tag']:<48} {row['status']:<8} {size:>8}  {ident}")
    return EXIT_OK


def cmd_images_base(args: argparse.Namespace) -> int:

    client = connect()
    suites = args.suite
    if not suites:
        pythons = {spec.python for spec in _environments(args)}
        unknown = sorted(p for p in pythons if p not in BASE_SUITES)
        if unknown:
            raise UsageError(f"no local base recipe for Python {', '.join(unknown)}", hint="pass --suite")
        suites = sorted({BASE_SUITES[p] for p in pythons})
    certs = (
        args.ca_cert
        if args.ca_cert is not None
        else sorted(glob.glob("/usr/local/share/ca-certificates/*.crt"))
    )
    by_suite = {suite: python for python, suite in BASE_SUITES.items()}
    for suite in suites:
        tag = local_base_tag(by_suite[suite])
        assert tag is not None
        if not args.force and client.images.list(name=tag):
            print(f"{tag} exists (--force to rebuild)")
            continue
        started = time.perf_counter()
        build_base(suite, certs, print, tag=tag)
        print(f"{tag}: {time.perf_counter() - started:.0f} s")
    return EXIT_OK
