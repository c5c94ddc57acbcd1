"""The HTML of ``--report``: Jinja2 templates in ``replay/templates/``, autoescaped.

One environment for every page part, so escaping is the template engine's job and never a
forgotten ``escape()`` in an f-string; an undefined name in a template is an error, not an
empty string. Callers pass plain values (strings, numbers, precomputed chart geometry).
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

_ENV = Environment(
    loader=PackageLoader("replay", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=False,
)


def render(template: str, **values: Any) -> Markup:
    """``template`` rendered with ``values``: markup, safe to embed in another template."""
    return Markup(_ENV.get_template(template).render(**values))
