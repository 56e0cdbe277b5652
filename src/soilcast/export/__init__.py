"""Export of the blessed model to a versioned TF Serving SavedModel."""
