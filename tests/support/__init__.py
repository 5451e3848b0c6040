"""Helpers the tests share: child processes, HTTP clients, the MongoDB stand-in, the proxy, the Node peer."""
