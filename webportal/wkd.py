"""Web Key Directory for the hosted domains (filled in by the keystore work)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("wkd", __name__)
