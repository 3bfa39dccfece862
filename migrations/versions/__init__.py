"""Migration revisions, oldest first by revision chain."""
