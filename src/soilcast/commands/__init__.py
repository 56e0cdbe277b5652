"""CLI command groups, one module per area; each registers its commands on ``soilcast.commands.common.app``."""
