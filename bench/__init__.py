"""colorbench: train, score and compare image colourisation methods side by side."""

__version__ = "0.1.0"
