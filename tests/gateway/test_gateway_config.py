"""Gateway settings refuse values that would make it misbehave."""

import pytest

from advex.gateway.config import GatewayConfig


def test_defaults_and_environment():
    config = GatewayConfig.from_env(
        {"ADVEX_GATEWAY_ADDR": "0.0.0.0:6000", "ADVEX_LEASE_SECONDS": "30", "ADVEX_POLL_SECONDS": "2",
         "ADVEX_MAX_ATTEMPTS": "5"}
    )
    assert (config.address, config.lease_seconds, config.poll_seconds, config.max_attempts) == ("0.0.0.0:6000", 30, 2, 5)
    assert GatewayConfig.from_env({}).database_url == "sqlite:///var/gateway.db"


@pytest.mark.parametrize(
    "environ, phrase",
    [
        ({"ADVEX_LEASE_SECONDS": "nan"}, "ADVEX_LEASE_SECONDS must be a finite number"),
        ({"ADVEX_POLL_SECONDS": "0"}, "ADVEX_POLL_SECONDS (0) must be > 0"),
        ({"ADVEX_LEASE_SECONDS": "1", "ADVEX_POLL_SECONDS": "1"}, "at most a third of ADVEX_LEASE_SECONDS"),
        ({"ADVEX_GATEWAY_WORKERS": "0"}, "ADVEX_GATEWAY_WORKERS must be >= 1"),
        ({"ADVEX_MAX_ATTEMPTS": "two"}, "ADVEX_MAX_ATTEMPTS must be a whole number"),
    ],
)
def test_bad_values_name_the_variable(environ, phrase):
    with pytest.raises(ValueError) as error:
        GatewayConfig.from_env(environ)
    assert phrase in str(error.value)


def test_retry_backoff_doubles_per_failed_run_and_is_capped():
    config = GatewayConfig.from_env({"ADVEX_RETRY_BACKOFF_SECONDS": "5"})
    assert [config.retry_backoff(attempt) for attempt in (1, 2, 3)] == [5, 10, 20]
    assert config.retry_backoff(30) == 300  # not 5 * 2**29 s
    assert GatewayConfig(retry_backoff_seconds=0).retry_backoff(3) == 0
