"""Demo data: a deterministic generator of ERA5-like raw files and basin outlines.

Kept apart from the production data stages (``soilcast.data``): nothing in the pipeline
imports it except the ``demo-data`` / ``demo-delivery`` commands and the Kubeflow ingest step
when no raw data is given. ``generate`` writes a whole period, ``generate_delivery`` new days.
Modules: ``generate`` (files, CF attributes), ``weather`` (monsoon weather model),
``bucket`` (soil-water model), ``geography`` (land/sea, orography), ``regions`` (basins).
"""
