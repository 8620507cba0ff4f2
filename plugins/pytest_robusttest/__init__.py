"""pytest plugin for robusttest (thin adapter over the library)."""
