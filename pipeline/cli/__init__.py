"""The command line: argv in, text out. The only importer of click."""
