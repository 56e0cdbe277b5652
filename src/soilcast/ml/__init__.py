"""Machine-learning code: windows, scaling, models, training."""
