"""CLI: ``phongdich keys init`` and ``phongdich keys rotate-signer`` for certificate signing keys.

They join the core's ``keys`` group (API keys) so that all key management
sits under one command.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import click

from core import dcc


def register(cli: click.Group) -> None:
    keys = cli.commands.get("keys")
    if not isinstance(keys, click.Group):
        keys = click.Group("keys", help="Keys.")
        cli.add_command(keys)
    keys.add_command(keys_init)
    keys.add_command(keys_rotate)


def _folder(obj: Any, directory: str | None) -> tuple[Path, Any]:
    settings = obj.platform.plugin_config("vaccination")
    return Path(directory or settings.keys_dir), settings


@click.command("init")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Key folder (default: keys_dir setting).")
@click.pass_obj
def keys_init(obj: Any, directory: str | None) -> None:
    """Create the certificate signing keys: a country signing CA and a document signer (X.509)."""
    folder, settings = _folder(obj, directory)
    try:
        signer = dcc.KeyStore(folder).init(country=settings.country, organisation=settings.issuer)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created certificate signing keys in {folder}/ (private keys readable by this user only):")
    click.echo(f"  {dcc.CSCA_CERT}, {dcc.CSCA_KEY}: country signing CA ({settings.country})")
    click.echo(
        f"  {dcc.DSC_CERT}, {dcc.DSC_KEY}: document signer, "
        f"valid until {signer.certificate.not_valid_after_utc:%Y-%m-%d}"
    )
    click.echo(f"  kid {base64.b64encode(signer.kid).decode()} ({signer.kid.hex()})")
    click.echo(
        f"Keep {dcc.CSCA_KEY} offline once signers are issued; publish the trust list at /api/vaccination/trust-list."
    )


@click.command("rotate-signer")
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Key folder (default: keys_dir setting).")
@click.pass_obj
def keys_rotate(obj: Any, directory: str | None) -> None:
    """Issue a new document signer; the old one stays in the trust list until it expires."""
    folder, _settings = _folder(obj, directory)
    store = dcc.KeyStore(folder)
    if not store.exists():
        raise click.ClickException(f"no keys in {folder}: run `phongdich keys init` first")
    try:
        signer = store.rotate_signer()
    except dcc.KeysMissing as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"New document signer, kid {base64.b64encode(signer.kid).decode()}; the previous one stays trusted.")
