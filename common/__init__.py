"""Shared code for the trainers."""
