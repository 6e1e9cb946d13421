"""Pulumi ComponentResources of mlserve, one module per concern (see docs/architecture.md)."""
