"""Settings of the smallest Django project that serves pages: no database, no apps."""

SECRET_KEY = "only-for-brim-tests"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "djangoproj.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
# Django sets the process's TZ to TIME_ZONE (America/Chicago unless told), and brimd
# imports the app in the master: keep every log line's clock in UTC.
TIME_ZONE = "UTC"
