"""The project's views: a greeting, a body echo, request facts as JSON, a failure."""

from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse, JsonResponse


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello from django pid={os.getpid()}\n", content_type="text/plain")


def echo(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    return HttpResponse(request.body, content_type="application/octet-stream")


def info(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"path": request.path, "query": request.GET.dict(),
                         "script_name": request.META.get("SCRIPT_NAME", ""),
                         "pid": os.getpid()})


def fail(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the Django view failed on purpose")
