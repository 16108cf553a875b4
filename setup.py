"""Packaging for the emergency dispatch backend.

Runtime dependencies are pinned to major versions whose APIs the code uses
(paho-mqtt 2 callback API, SQLAlchemy 2 typed ORM, APScheduler 3).
"""

from setuptools import find_namespace_packages, setup

setup(
    name="probolinggo-dispatch",
    version="0.1.0",
    description="Emergency dispatch and panic-button backend (MQTT, Twilio, escalation)",
    python_requires=">=3.11",
    # Namespace packages too: the data directories (templates, static files, migrations) are then
    # packages of their own, which is what setuptools expects of a directory holding package data.
    packages=find_namespace_packages(
        include=["foundation*", "devices*", "responders*", "dispatch*"], exclude=["*__pycache__*"]
    ),
    include_package_data=True,
    package_data={
        "dispatch": [
            "migrations/*.py",
            "migrations/*.mako",
            "migrations/versions/*.py",
            "web/templates/*",
            "web/static/*",
            "web/static/console/*",
            "web/static/vendor/leaflet/*",  # Leaflet 1.9.4 with its LICENSE: no CDN at run time
            "web/static/vendor/leaflet/images/*",
            "console/templates/console/*",
            "translations/*/LC_MESSAGES/*",  # .po and their compiled .mo (committed, see README)
        ],
        "responders": ["sandbox/templates/*"],
    },
    install_requires=[
        "flask>=3.0,<4",
        "flask-babel>=4,<5",  # gettext catalogues (dispatch/translations/*.po) for the console and link page
        "twilio>=9,<10",
        "android-sms-gateway>=4.3,<5",  # SMS Gateway for Android: two-way SMS through a local SIM (+62)
        "paho-mqtt>=2.1,<3",
        "geopy>=2.4,<3",
        "geographiclib>=2,<3",  # geopy's own geodesic engine, called directly by the matcher
        "sqlalchemy>=2.0,<3",
        "apscheduler>=3.10,<4",
        "alembic>=1.13,<2",
        "click>=8.1,<9",
        "pydantic>=2.6,<3",
        "pyyaml>=6,<7",
        "psycopg[binary]>=3.1,<4",
        "waitress>=3,<4",
        "numpy>=1.26",
        "prometheus-client>=0.20,<1",
        "spectree>=1.2,<4",
        "requests>=2.31,<3",
        "amqtt>=0.11,<0.13",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            # Fuzzes the whole HTTP API from its own OpenAPI document (no 500, documented statuses).
            "schemathesis>=4,<5",
            "ruff>=0.6",
            "mypy>=1.10",
            "types-PyYAML",
            "types-requests",
            # Browser tests drive Debian's /usr/bin/chromium (installed by .ci/run); Playwright's
            # own browser download (playwright install) is never used.
            "pytest-playwright>=0.5",
            "playwright>=1.45",
        ],
    },
    entry_points={"console_scripts": ["dispatch=dispatch.cli:main"]},
)
