"""The ``yard`` command line: command definitions only; the work happens in the services."""
