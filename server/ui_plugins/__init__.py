"""Datasette plugins loaded by `concertmaster ui` (`--plugins-dir`); nothing here is imported by concertmaster."""
