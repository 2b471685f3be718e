"""The options every command shares (management/options.py)."""

from __future__ import annotations

import argparse

import pytest
from django.core.management import CommandError

from django_tasks_db.management.options import backend_option, non_negative, positive_int


def test_positive_int() -> None:
    assert positive_int("3") == 3
    for text, message in (("0", "at least 1"), ("x", "not a whole number"), ("1.5", "whole")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            positive_int(text)


def test_non_negative() -> None:
    assert non_negative("0") == 0.0 and non_negative("2.5") == 2.5
    for text in ("-1", "nan", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            non_negative(text)


def test_backend_option_names_what_is_wrong() -> None:
    assert backend_option("default").alias == "default"
    with pytest.raises(CommandError, match="nope"):
        backend_option("nope")
