"""Readers for source products and atomic writers."""
