"""The report tests reuse the loopback DNS server and the DSN maker of the other suites."""

from tests.dns.conftest import dns_server  # noqa: F401  (fixture)
from tests.rules_admin.conftest import dsn_file  # noqa: F401  (fixture)
