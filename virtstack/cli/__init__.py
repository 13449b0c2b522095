"""The `virtstack` command (click): one module per command group, each a thin layer over virtstack.ops."""
