"""The results page: the papers' claims as data, the headline, the diagnostics, the rendering."""
