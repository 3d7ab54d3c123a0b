"""Swagger UI assets served from the swagger-ui-bundle package (no CDN)."""

from __future__ import annotations

from flask import Blueprint
from swagger_ui_bundle import swagger_ui_path


def make_docs_assets_blueprint(url_path: str) -> Blueprint:
    """A blueprint serving the bundled Swagger UI files under url_path (e.g. /docs/assets)."""
    return Blueprint(
        "docs_assets",
        __name__,
        static_folder=swagger_ui_path,
        static_url_path=url_path.rstrip("/"),
    )
