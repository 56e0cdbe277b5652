"""Model definitions (one small module per family) and the registry that builds them."""
