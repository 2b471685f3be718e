"""Django's generic classes, subscriptable as bases: ``class TaskAdmin(ModelAdmin[Task])``.

django-stubs make ``ModelAdmin``, ``ModelForm`` and ``Paginator`` generic, but the classes
are not subscriptable at runtime (django-stubs-ext's ``monkeypatch()`` makes them so,
for the whole process). Type checkers see the generic classes here; at runtime
``ModelAdmin[Task]`` is Django's ``ModelAdmin`` itself, so the admin's classes have
exactly Django's bases.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin
    from django.core.paginator import Paginator
    from django.forms import ModelForm
else:
    from django.contrib import admin
    from django.core import paginator
    from django.forms import models

    class _Subscriptable:
        """``proxy[...]`` is the class it stands for."""

        def __init__(self, cls: type) -> None:
            self._cls = cls

        def __getitem__(self, params: object) -> type:
            return self._cls

    ModelAdmin = _Subscriptable(admin.ModelAdmin)
    ModelForm = _Subscriptable(models.ModelForm)
    Paginator = _Subscriptable(paginator.Paginator)

__all__ = ["ModelAdmin", "ModelForm", "Paginator"]
