"""Code that runs inside AWS (Lambda handlers, scoring entrypoint). Never imports pulumi."""
