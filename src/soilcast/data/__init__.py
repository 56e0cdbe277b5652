"""Data preparation: demo generator, validation, regridding, clipping, stacking."""
