"""The ``abflow`` command line: thin commands that call the library and print."""
