"""Thin routers: parse with a schema, call one function, return a schema."""
