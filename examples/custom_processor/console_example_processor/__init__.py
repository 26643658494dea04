"""An example handler plug-in for the console (see README.md)."""
from .handlers import CustomDataProcessor

__all__ = ["CustomDataProcessor"]
