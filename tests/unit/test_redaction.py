"""A password never reaches a terminal, an error or metadata, in any form Postgres accepts it."""

import pytest

from gateway_pipelines import settings
from gateway_pipelines.lib.warehouse import redact_url

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (f"postgresql://gw:{SECRET}@db.example:5432/gateway", "postgresql://gw:***@db.example:5432/gateway"),
        (f"postgresql+psycopg2://gw:{SECRET}@[::1]:5432/dagster", "postgresql+psycopg2://gw:***@[::1]:5432/dagster"),
        (f"postgresql://gw@db/gateway?sslmode=require&password={SECRET}",
         "postgresql://gw@db/gateway?sslmode=require&password=***"),
        (f"host=db port=5432 password={SECRET} dbname=gateway", "host=db port=5432 password=*** dbname=gateway"),
        (f"host=db PASSWORD = '{SECRET} with \\' quote' user=gw", "host=db PASSWORD = *** user=gw"),
    ],
)
def test_every_password_form_is_masked(dsn, expected):
    assert redact_url(dsn) == expected
    assert SECRET not in settings.mask("DATABASE_URL", dsn)


@pytest.mark.parametrize("dsn", ["postgresql:///gateway?host=/tmp/gw-socket", "postgresql://db/gateway", "host=db dbname=x"])
def test_a_dsn_without_a_password_is_unchanged(dsn):
    assert redact_url(dsn) == dsn
