"""soilcast: daily surface soil-moisture forecasts over India's river basins."""

__version__ = "0.1.0"
