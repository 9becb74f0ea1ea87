"""Tests for retrofit.generate."""
