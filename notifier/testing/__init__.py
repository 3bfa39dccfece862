"""The shipped offline harness (simulator, previews, wording review); only the CLI and tests import it."""
