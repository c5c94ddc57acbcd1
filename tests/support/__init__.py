"""Test support shared by several test folders (no tests here)."""
