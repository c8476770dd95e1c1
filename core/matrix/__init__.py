"""The compatibility matrix: planning cells, running them, and the journal they land in."""
