"""Data preparation: readers, validation, regridding, clipping, stacking, ingest (the demo generator is `soilcast.demo`)."""
