"""The `fvq-*` commands: argument parsing and error reporting only; each calls the library function it names."""
