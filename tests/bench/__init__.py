"""Tests of bench helpers that run without external checkouts."""
