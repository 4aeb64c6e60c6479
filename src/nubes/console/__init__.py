"""The web console at ``/_nubes/console``: a single page (static HTML, CSS and JS
modules) and the small JSON API it reads (``nubes.console.api``)."""
