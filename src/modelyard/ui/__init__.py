"""The dashboard (``yard ui``, or ``yard serve --ui``): server-rendered pages under ``/ui`` over the
same service functions as the CLI."""
