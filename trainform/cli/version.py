"""``trainform version``: the version and the installed providers."""

from __future__ import annotations

import click

from trainform import __version__


@click.command()
@click.option("--json", "as_json", is_flag=True)
def version(as_json: bool) -> None:
    """Print the version and installed providers."""
    import json as _json

    from trainform.providers.registry import provider_names

    if as_json:
        click.echo(_json.dumps({"trainform_version": __version__, "providers": provider_names()}))
    else:
        click.echo(f"trainform v{__version__}")
        click.echo("providers: " + ", ".join(provider_names()))
