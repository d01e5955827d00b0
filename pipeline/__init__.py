"""The study as a library: importable and testable, with no knowledge of DVC."""
